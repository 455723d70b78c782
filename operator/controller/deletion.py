"""The MLJob's cleanup finalizer, kept by the placement controller: put on before any shard
resource of the job exists, taken off only once every member is clean of them.

The controller owns it, not Kopf: Kopf would watch every MLJob and patch each one twice (its
finalizer and its record of the last handled spec), and each of those patches would make the
controller's next status write conflict.
"""

from __future__ import annotations

from typing import Any

from continuum.operator.adapters.workqueue import RetryLater
from continuum.operator.api import ApplyState, MLJob, Placement, Resource
from continuum.operator.api.keys import JobKey
from continuum.operator.controller.context import CONFLICT_RETRY_S, FINALIZER, OperatorContext
from continuum.operator.controller.convergence import converge_all, members_of
from continuum.operator.controller.status import write_status

# How often a deletion waiting for an unreachable member tries again.
CLEANUP_RETRY_S = 5.0


def _finalizers(body: dict[str, Any]) -> list[str]:
    return list(body.get("metadata", {}).get("finalizers") or [])


def ensure_finalizer(context: OperatorContext, raw_job: dict[str, Any]) -> dict[str, Any]:
    """The job as it is once it carries the finalizer (written now if it did not)."""
    finalizers = _finalizers(raw_job)
    if FINALIZER in finalizers:
        return raw_job
    written = context.mirror.put_finalizers(MLJob, raw_job, [*finalizers, FINALIZER])
    if written is None:
        raise RetryLater(CONFLICT_RETRY_S)
    return written


def take_off_finalizer(
    context: OperatorContext, kind: type[Resource], body: dict[str, Any]
) -> None:
    """Removes the cleanup finalizer from `body`, if it is there."""
    finalizers = _finalizers(body)
    if FINALIZER not in finalizers:
        return
    remaining = [name for name in finalizers if name != FINALIZER]
    if context.mirror.put_finalizers(kind, body, remaining) is None:
        raise RetryLater(CONFLICT_RETRY_S)


def finish_deletion(context: OperatorContext, raw_job: dict[str, Any]) -> None:
    """Removes the job's shard resources from every member, then the finalizer. A member that
    cannot be reached, and that holds or may hold some (its mirror saw one, or the Placement or
    the job's status sent one there), is named in status.pendingCleanup, and the pass comes back
    until it can be reached. A spec the models refuse was never placed, so nothing of it is in
    any member."""
    if FINALIZER not in _finalizers(raw_job):
        return
    key = JobKey.of_body(raw_job)
    pending: list[str] = []
    found = context.mirror.model(MLJob, key)
    if found is not None:
        job, raw_job = found
        assert isinstance(job, MLJob)
        found_placement = context.mirror.model(Placement, key)
        placement = found_placement[0] if found_placement is not None else None
        assert placement is None or isinstance(placement, Placement)
        shards = job.status.shards if job.status else []
        possibly_held = members_of(placement) | {shard.cluster for shard in shards if shard.cluster}
        epoch = placement.spec.epoch if placement is not None else 0
        outcomes = converge_all(context, job, {}, possibly_held, epoch)
        pending = sorted(
            name for name, outcome in outcomes.items() if outcome.state is not ApplyState.APPLIED
        )
    status = dict(raw_job.get("status") or {})
    if status.get("pendingCleanup", []) != pending:
        written = {**status, "pendingCleanup": pending}
        if not write_status(context.mirror, raw_job, written, context.events):
            raise RetryLater(CONFLICT_RETRY_S)
        raw_job = context.mirror.get(MLJob, key) or raw_job
    if pending:
        raise RetryLater(CLEANUP_RETRY_S)
    take_off_finalizer(context, MLJob, raw_job)
    context.events.record_event(
        raw_job, "Normal", "CleanedUp", "removed the shard resources from every member"
    )
