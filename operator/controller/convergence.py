"""Converging the members: each holds exactly the shard resources decided for a job.

Used by the placement controller's passes (the resources a Placement decides) and by a job's
deletion (none). Each write's result goes into the members' mirrors at once, so the next pass
sees it before the watch brings it.

A member that is not usable (not reachable at its last probe, say), or cannot be worked on now
(its Secret gives no client, it does not answer, or every request slot to it is taken), costs
no request for a job that has not, and cannot have, shard resources there, and is reported
Unreachable only for the jobs that have or may have some. A member that never
held the job's shards cannot hold up its deletion; should it hold one after all (a shard written
just before it went away), the orphan sweep removes it once the member is back.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from continuum.operator.adapters.kube import describe_connection_error
from continuum.operator.adapters.member_gate import (
    CONNECTION_ERRORS,
    MemberBusyError,
    MemberUnavailableError,
)
from continuum.operator.adapters.member_mirror import MemberMirrors
from continuum.operator.adapters.member_writes import apply_plan, list_job_resources
from continuum.operator.adapters.workqueue import RetryLater
from continuum.operator.api import ApplyState, MemberCluster, MLJob, Placement
from continuum.operator.api.keys import JobKey
from continuum.operator.api.membercluster import MemberMode
from continuum.operator.api.work import MemberWorkSpec, reported_resources
from continuum.operator.controller.context import CONFLICT_RETRY_S, OperatorContext
from continuum.operator.reconcile.membership import is_duplicate, is_reachable, is_usable
from continuum.operator.reconcile.shards import ClusterOutcome, Manifest, plan_cluster, to_create
from continuum.operator.reconcile.work import (
    is_emptied,
    pull_outcome,
    settled_session,
    spec_differs,
    work_body,
    work_spec,
)

LOG = logging.getLogger(__name__)
# How soon a pass comes back when a member had no free request slot for it: it was busy, or
# its requests look hung (then, within the member timeout, its gate closes and the pass skips
# it at once, or its requests return).
BUSY_RETRY_S = 0.5
SUSPECT_RETRY_S = 1.0
# A Pull member back after its lease expired: the session written into its work (which lets
# its agent resume a fenced shard) waits this many scheduling cycles, so that a move decided
# before its return has been written first.
SESSION_SETTLE_CYCLES = 2


def converge_member(
    api: client.ApiClient,
    namespace: str,
    job: MLJob,
    desired: list[Manifest],
    observed: list[Manifest] | None = None,
    mirrors: MemberMirrors | None = None,
    member: str = "",
) -> list[Manifest]:
    """Creates, replaces and deletes this job's shard resources in one member so that it holds
    exactly `desired`; returns what the member holds afterwards. `observed`, when given, is
    what the member's mirror holds; else it is listed now. Each write's result goes into
    `mirrors`, when given, so that the next pass sees it before the watch brings it."""
    if observed is None:
        observed = list_job_resources(api, namespace, job)
    plan = plan_cluster(desired, observed, finished=job.is_finished)
    if plan.is_empty:
        return observed

    def record(written: Manifest | None, removed: Manifest | None) -> None:
        if mirrors is not None:
            mirrors.record(member, written, removed)

    return apply_plan(
        api, namespace, plan, observed, lambda manifest: to_create(job, manifest), record
    )


def members_of(placement: Placement | None) -> set[str]:
    """Every member the job's Placement ever sent a shard to, as far as it still says: its
    decisions, the moves in its history, and the members its status lists."""
    if placement is None:
        return set()
    named = {decision.cluster for decision in placement.spec.decisions}
    for migration in placement.spec.migrations:
        named.update(
            cluster for cluster in (migration.from_cluster, migration.to_cluster) if cluster
        )
    if placement.status is not None:
        named.update(entry.cluster for entry in placement.status.clusters)
    return named


def converge_pull(
    context: OperatorContext,
    job: MLJob,
    member: MemberCluster,
    wanted: list[Manifest],
    placement_epoch: int,
) -> ClusterOutcome | None:
    """Writes what a Pull member should hold of the job into its MemberWork, for its agent to
    apply; what the agent reported back is the outcome. A work is deleted only once its agent
    says the member holds nothing of the job under its current spec; None when there is no
    work and none is wanted."""
    name = member.metadata.name or ""
    if not context.works.is_synced():
        raise RetryLater(SUSPECT_RETRY_S)
    namespace = job.metadata.namespace or ""
    existing = context.works.work(name, namespace, job.metadata.name or "")
    lease_fresh = is_reachable(member)
    if existing is not None and existing["spec"]["jobRef"]["uid"] != job.metadata.uid:
        # An earlier incarnation's work: its agent empties it first (its uid's resources go).
        spec = MemberWorkSpec.model_validate(existing["spec"])
        if not is_emptied(existing):
            emptied = spec.model_copy(update={"resources": [], "job_deleted": True})
            if spec != emptied:
                _write_work(context, job, emptied, existing)
            return pull_outcome(name, None, lease_fresh)
        context.works.delete(existing)
        existing = None
    if existing is None and not wanted:
        return None
    reported = reported_resources(existing)
    written = int(existing["spec"].get("sessionEpoch", 0)) if existing is not None else 0
    key = JobKey(namespace, job.metadata.name or "")
    session, wait_s = settled_session(
        member, written, context.placement_writes.is_pending(key), context.clock(),
        SESSION_SETTLE_CYCLES * context.config.cycle_interval_s,
    )  # fmt: skip
    if wait_s and context.placements is not None:
        context.placements.add_after(key, wait_s)
    spec = work_spec(job, name, wanted, reported, placement_epoch, session)
    if job.metadata.deletion_timestamp is not None:
        spec = spec.model_copy(update={"job_deleted": True})
    if (
        not wanted
        and existing is not None
        and is_emptied(existing)
        and not existing["spec"].get("resources")
    ):
        context.works.delete(existing)
        return ClusterOutcome(name, ApplyState.APPLIED)
    if spec_differs(existing, spec):
        existing = _write_work(context, job, spec, existing)
    return pull_outcome(name, existing, lease_fresh)


def _write_work(
    context: OperatorContext, job: MLJob, spec: MemberWorkSpec, existing: dict[str, Any] | None
) -> dict[str, Any]:
    written = context.works.write(work_body(job, spec), existing)
    if written is None:
        raise RetryLater(CONFLICT_RETRY_S)
    return written


def converge_all(
    context: OperatorContext,
    job: MLJob,
    desired: Mapping[str, list[Manifest]],
    possibly_held: Collection[str] = (),
    placement_epoch: int = 0,
    members: Sequence[MemberCluster] | None = None,
) -> dict[str, ClusterOutcome]:
    """Converges every member (or `members`: those that may concern the job). Members not in
    `desired` are visited too, so that a shard that moved away, or a job that was suspended,
    leaves nothing behind. `possibly_held` names the members that may hold shard resources of
    the job that their mirrors do not show. A member with no free request slot is retried
    after the others are done (RetryLater)."""
    namespace = job.metadata.namespace or ""
    outcomes: dict[str, ClusterOutcome] = {}
    retry_s = 0.0
    # Only once the works are listed may a missing work say that nothing is there.
    with_work = (
        context.works.members_with_work(namespace, job.metadata.name or "")
        if context.works.is_synced()
        else None
    )
    for member in context.member_clusters() if members is None else members:
        name = member.metadata.name or ""
        wanted = desired.get(name, [])
        if (
            member.spec.mode == MemberMode.PULL
            and not wanted
            and name not in possibly_held
            and with_work is not None
            and name not in with_work
        ):
            # Nothing for its agent, and no work of the job to empty: most of a fleet, for
            # most jobs, and so the cheapest look.
            continue
        if is_duplicate(member) or member.metadata.deletion_timestamp is not None:
            # Another MemberCluster owns this cluster, or its own deletion empties it.
            if wanted:
                why = "is being deleted" if member.metadata.deletion_timestamp else "is a duplicate"
                outcomes[name] = ClusterOutcome(name, ApplyState.UNREACHABLE, f"{name} {why}")
            continue
        if not is_usable(member) and _stake(context, job, name, wanted, possibly_held) is None:
            continue  # never offered to the scheduler, or not now, and nothing of the job there
        if member.spec.mode == MemberMode.PULL:
            pulled = converge_pull(context, job, member, wanted, placement_epoch)
            if pulled is not None:
                outcomes[name] = pulled
            continue
        try:
            api = context.members.for_member(member)
            # Before the mirror: a member that stopped answering may still look in step there.
            api.gate.check()
            context.member_mirrors.follow(name, api.ungated)
            observed = context.member_mirrors.job_resources(name, namespace, job)
            held = converge_member(
                api, namespace, job, wanted, observed, context.member_mirrors, name
            )
        except MemberBusyError as error:
            wait_s = SUSPECT_RETRY_S if error.suspect else BUSY_RETRY_S
            retry_s = max(retry_s, wait_s)
            continue
        except MemberUnavailableError as error:
            outcome = _unavailable(context, job, name, wanted, possibly_held, error.message)
        except ApiException as error:
            body = (error.body or "")[:500] if isinstance(error.body, str) else ""
            message = context.members.redact(name, f"HTTP {error.status}: {error.reason}: {body}")
            outcome = ClusterOutcome(name, ApplyState.FAILED, message)
        except CONNECTION_ERRORS as error:
            message = describe_connection_error(error)
            outcome = _unavailable(context, job, name, wanted, possibly_held, message)
        except Exception as error:  # one member's oddity must not fail every job's pass
            _log_once(name, error)
            message = f"the operator could not work on it ({type(error).__name__})"
            outcome = _unavailable(context, job, name, wanted, possibly_held, message)
        else:
            outcome = ClusterOutcome(name, ApplyState.APPLIED, "", tuple(held))
        if outcome is not None:
            outcomes[name] = outcome
    if retry_s:
        raise RetryLater(retry_s)
    for name in desired:
        if name not in outcomes:
            outcomes[name] = ClusterOutcome(
                name, ApplyState.FAILED, f"no usable MemberCluster {name!r} is registered"
            )
    return outcomes


_logged: set[tuple[str, str]] = set()


def _log_once(member: str, error: Exception) -> None:
    """The traceback the first time a member fails a pass in a way of its own; every pass
    over every job would meet it again."""
    if (member, type(error).__name__) not in _logged:
        _logged.add((member, type(error).__name__))
        # The frames, not the message: it may quote what the member or its Secret said.
        frames = "".join(traceback.format_tb(error.__traceback__))
        LOG.error("converging member %s failed (%s):\n%s", member, type(error).__name__, frames)


def _unavailable(
    context: OperatorContext,
    job: MLJob,
    member: str,
    wanted: list[Manifest],
    possibly_held: Collection[str],
    why: str,
) -> ClusterOutcome | None:
    """A member that cannot be worked on: Unreachable for a job that wants shards there or may
    have some; nothing at all for the others."""
    known = _stake(context, job, member, wanted, possibly_held)
    return None if known is None else ClusterOutcome(member, ApplyState.UNREACHABLE, why, known)


def _stake(
    context: OperatorContext,
    job: MLJob,
    member: str,
    wanted: list[Manifest],
    possibly_held: Collection[str],
) -> tuple[Manifest, ...] | None:
    """What the job has at stake in `member`: the shard resources its mirror last saw there
    (perhaps none), or None when the job neither wants nor may have anything there."""
    known = tuple(context.member_mirrors.last_known(member, job.metadata.namespace or "", job))
    return known if wanted or known or member in possibly_held else None
