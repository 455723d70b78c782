"""MLJob deletion: remove every shard resource from every member before the finalizer is
released. (The hub's mirror wakes the scheduler on a job's changes, and the scheduling cycle
says what is wrong with a bad spec, in the Admitted condition and an Event.)"""

from __future__ import annotations

from typing import Any

import kopf

from continuum.operator.adapters.kube import MemberUnavailableError
from continuum.operator.api import GROUP, VERSION, MLJob, validate_resource
from continuum.operator.handlers.context import OperatorContext
from continuum.operator.handlers.placements import UNREACHABLE_ERRORS, converge_member

CLEANUP_RETRY_S = 5.0


@kopf.on.delete(GROUP, VERSION, "mljobs")
def job_deleted(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **_: Any) -> None:
    """Runs until every member has been cleaned; an unreachable member keeps the finalizer on
    and is named in status.pendingCleanup, and Kopf retries until it is back."""
    context: OperatorContext = memo.context
    job = validate_resource(body)
    if not isinstance(job, MLJob):
        return  # never valid, so never placed: nothing exists in any member
    pending = []
    for member in context.member_clusters():
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
