"""Whether an MLJob may be scheduled, beyond what its schema says. Pure.

The same checks run in the admission webhook and in the reconcile, so an install without the
webhook still refuses what the webhook would have.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from continuum.operator.api import (
    ConditionStatus,
    MLJob,
    MLJobConditionType,
    MLJobPhase,
    MLJobStatus,
    Tenant,
    TenantStatus,
    upsert_condition,
)
from continuum.operator.api.validation import FieldError, format_errors


@dataclass(frozen=True)
class Refusal:
    reason: str
    message: str


def refusal_of_spec(errors: Sequence[FieldError]) -> Refusal:
    return Refusal("InvalidSpec", format_errors(errors))


def tenant_refusal(job: MLJob, tenants: Sequence[Tenant]) -> Refusal | None:
    tenant = next((t for t in tenants if t.metadata.name == job.spec.tenant), None)
    if tenant is None:
        return Refusal("TenantNotFound", f"spec.tenant: no Tenant named {job.spec.tenant!r}")
    allowed = tenant.spec.namespaces
    if allowed and job.metadata.namespace not in allowed:
        return Refusal(
            "NamespaceNotAllowed",
            f"spec.tenant: Tenant {job.spec.tenant!r} does not admit namespace "
            f"{job.metadata.namespace!r} (it admits {', '.join(allowed)})",
        )
    return None


def refused_status(
    current: Mapping[str, Any] | None, generation: int | None, refusal: Refusal, now: datetime
) -> MLJobStatus:
    """The status of a job that may not be scheduled: Pending, Admitted=False with the reason.
    `current` is the raw status, since an invalid job's status may not parse either."""
    try:
        status = MLJobStatus.model_validate(current or {})
    except ValueError:
        status = MLJobStatus()
    conditions = upsert_condition(
        status.conditions,
        MLJobConditionType.ADMITTED,
        ConditionStatus.FALSE,
        refusal.reason,
        refusal.message[:32768],
        observed_generation=generation,
        now=now,
    )
    return status.model_copy(
        update={"phase": MLJobPhase.PENDING, "conditions": conditions,
                "observed_generation": generation}
    )  # fmt: skip


TENANT_ACTIVE = "Active"


def tenant_status(
    current: Mapping[str, Any] | None,
    generation: int | None,
    tenant: Tenant | None,
    errors: Sequence[FieldError],
    now: datetime,
) -> TenantStatus:
    """A Tenant's Active condition: True when its spec is valid (its jobs may be admitted),
    False with the field errors when the models refuse it. `current` is the raw status."""
    try:
        status = TenantStatus.model_validate(current or {})
    except ValueError:
        status = TenantStatus()
    if tenant is None:
        active, reason, message = ConditionStatus.FALSE, "InvalidSpec", format_errors(errors)
    else:
        allowed = tenant.spec.namespaces
        where = f"namespaces {', '.join(allowed)}" if allowed else "every namespace"
        active, reason, message = ConditionStatus.TRUE, TENANT_ACTIVE, f"admits MLJobs from {where}"
    conditions = upsert_condition(
        status.conditions, TENANT_ACTIVE, active, reason, message[:32768],
        observed_generation=generation, now=now,
    )  # fmt: skip
    return status.model_copy(update={"conditions": conditions, "observed_generation": generation})
