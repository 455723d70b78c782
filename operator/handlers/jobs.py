"""MLJob: wake the scheduler on changes, say what is wrong with a bad spec, and on deletion
remove every shard resource from every member before the finalizer is released."""

from __future__ import annotations

from typing import Any

import kopf

from continuum.operator import metrics
from continuum.operator.adapters.kube import MemberUnavailableError
from continuum.operator.api import GROUP, VERSION, MemberCluster, MLJob, validate_resource
from continuum.operator.api.validation import format_errors
from continuum.operator.handlers.context import OperatorContext
from continuum.operator.handlers.placements import UNREACHABLE_ERRORS, converge_member

CLEANUP_RETRY_S = 5.0


@kopf.on.create(GROUP, VERSION, "mljobs")
@kopf.on.update(GROUP, VERSION, "mljobs", field="spec")
@kopf.on.resume(GROUP, VERSION, "mljobs")
def job_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    metrics.RECONCILES.labels("MLJob").inc()
    context: OperatorContext = memo.context
    result = validate_resource(body)
    if isinstance(result, list):
        # The scheduling cycle writes the Admitted=False condition; the Event tells the user now.
        kopf.warn(body, reason="InvalidSpec", message=format_errors(result)[:1024])
    context.wake_scheduler.set()


@kopf.on.delete(GROUP, VERSION, "mljobs")
def job_deleted(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **_: Any) -> None:
    """Runs until every member has been cleaned; an unreachable member keeps the finalizer on
    and is named in status.pendingCleanup, and Kopf retries until it is back."""
    context: OperatorContext = memo.context
    job = validate_resource(body)
    if not isinstance(job, MLJob):
        return  # never valid, so never placed: nothing exists in any member
    pending = []
    for member in context.hub.list(MemberCluster).valid:
        try:
            api = context.members.for_member(member)
            converge_member(api, job.metadata.namespace or "", job, desired=[])
        except (MemberUnavailableError, *UNREACHABLE_ERRORS):
            pending.append(member.metadata.name or "")
    patch.status["pendingCleanup"] = pending
    if pending:
        raise kopf.TemporaryError(
            f"shard resources remain in unreachable members: {', '.join(pending)}",
            delay=CLEANUP_RETRY_S,
        )
    kopf.info(body, reason="CleanedUp", message="removed the shard resources from every member")
