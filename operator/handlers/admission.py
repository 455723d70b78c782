"""The validating admission webhooks for MLJobs and MemberClusters: the same checks the
reconcile makes, at apply.

The CRD's schema and CEL rules already refuse most bad specs; the webhook adds what needs the
Python models or other objects, such as whether the named Tenant exists and admits the
namespace. Its failure policy is Ignore: with the operator down, applies still go through, and
the scheduling cycle refuses the job with the same message in its Admitted condition.

It judges specs only. An update that leaves the spec as it was (a finalizer taken off, a label
added) or a job being deleted always goes through, and the Tenant is checked only when the job
names it anew: a job whose Tenant was deleted since must still be deletable, and suspendable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import kopf

from continuum.operator.api import (
    GROUP,
    VERSION,
    MemberCluster,
    MLJob,
    Resource,
    Tenant,
    validate_resource,
)
from continuum.operator.api.validation import format_errors
from continuum.operator.controller.context import OperatorContext
from continuum.operator.reconcile.admission import tenant_refusal

UNPROCESSABLE = 422


@kopf.on.validate(
    GROUP, VERSION, "mljobs", id="mljob-spec", operations=["CREATE", "UPDATE"],
    ignore_failures=True, side_effects=False,
)  # fmt: skip
def validate_mljob(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    context: OperatorContext = memo.context
    job = _changed_spec(MLJob, body, kwargs)
    if job is None:
        return
    earlier: Mapping[str, Any] = kwargs.get("old") or {}
    if (
        kwargs.get("operation") == "UPDATE"
        and (earlier.get("spec") or {}).get("tenant") == job.spec.tenant
    ):
        return
    refusal = tenant_refusal(job, context.mirror.list(Tenant).valid)
    if refusal is not None:
        # The mirror may not have seen a Tenant applied a moment ago: refuse only on the
        # hub's own word.
        refusal = tenant_refusal(job, context.hub.list(Tenant).valid)
    if refusal is not None:
        raise kopf.AdmissionError(refusal.message, code=UNPROCESSABLE)


@kopf.on.validate(
    GROUP, VERSION, "memberclusters", id="membercluster-spec", operations=["CREATE", "UPDATE"],
    ignore_failures=True, side_effects=False,
)  # fmt: skip
def validate_membercluster(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """A MemberCluster whose kubeconfig Secret is in a namespace the operator does not read
    from is refused at apply; the probe says the same in Reachable if it got in all the same."""
    context: OperatorContext = memo.context
    member = _changed_spec(MemberCluster, body, kwargs)
    if member is None:
        return
    refusal = context.members.secret_namespace_refusal(member)
    if refusal is not None:
        raise kopf.AdmissionError(refusal.message, code=UNPROCESSABLE)


R = TypeVar("R", bound=Resource)


def _changed_spec(kind: type[R], body: kopf.Body, request: Mapping[str, Any]) -> R | None:
    """The object as its model when its spec is to be judged: None for an update that leaves
    the spec as it was, or of an object being deleted; AdmissionError naming the fields when
    the models refuse it."""
    earlier: Mapping[str, Any] = request.get("old") or {}
    if request.get("operation") == "UPDATE" and (
        earlier.get("spec") == body.get("spec")
        or "deletionTimestamp" in (body.get("metadata") or {})
    ):
        return None
    found = validate_resource(body)
    if isinstance(found, list):
        raise kopf.AdmissionError(format_errors(found), code=UNPROCESSABLE)
    if not isinstance(found, kind):
        raise kopf.AdmissionError(f"expected kind {kind.__name__}, got {body.get('kind')}")
    return found
