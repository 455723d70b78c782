"""The validating admission webhook for MLJobs: the same checks the reconcile makes, at apply.

The CRD's schema and CEL rules already refuse most bad specs; the webhook adds what needs the
Python models or other objects, such as whether the named Tenant exists and admits the
namespace. Its failure policy is Ignore: with the operator down, applies still go through, and
the scheduling cycle refuses the job with the same message in its Admitted condition.
"""

from __future__ import annotations

from typing import Any

import kopf

from continuum.operator.api import GROUP, VERSION, MLJob, Tenant, validate_resource
from continuum.operator.api.validation import format_errors
from continuum.operator.handlers.context import OperatorContext
from continuum.operator.reconcile.admission import tenant_refusal

UNPROCESSABLE = 422


@kopf.on.validate(
    GROUP, VERSION, "mljobs", id="mljob-spec", operations=["CREATE", "UPDATE"],
    ignore_failures=True, side_effects=False,
)  # fmt: skip
def validate_mljob(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    context: OperatorContext = memo.context
    job = validate_resource(body)
    if isinstance(job, list):
        raise kopf.AdmissionError(format_errors(job), code=UNPROCESSABLE)
    if not isinstance(job, MLJob):
        raise kopf.AdmissionError(f"expected an MLJob, got {body.get('kind')}")
    refusal = tenant_refusal(job, context.mirror.list(Tenant).valid)
    if refusal is not None:
        # The mirror may not have seen a Tenant applied a moment ago: refuse only on the
        # hub's own word.
        refusal = tenant_refusal(job, context.hub.list(Tenant).valid)
    if refusal is not None:
        raise kopf.AdmissionError(refusal.message, code=UNPROCESSABLE)
