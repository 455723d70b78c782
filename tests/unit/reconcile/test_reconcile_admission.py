"""Whether an MLJob may be scheduled beyond its schema (its Tenant, its namespace), and the
statuses of refused jobs and of Tenants."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from continuum.operator.api import MLJobPhase, validate_resource
from continuum.operator.api.validation import FieldError
from continuum.operator.reconcile.admission import (
    TENANT_ACTIVE,
    Refusal,
    refusal_of_spec,
    refused_status,
    tenant_refusal,
    tenant_status,
)
from tests.wrappers import MLJobWrapper, TenantWrapper

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 6, 9, tzinfo=UTC)
EARLIER = datetime(2026, 12, 1, 9, tzinfo=UTC)


# tenant_refusal


def test_a_job_of_an_existing_tenant_that_admits_every_namespace_is_admitted() -> None:
    job = MLJobWrapper().tenant("research").namespace("anywhere").obj()
    tenants = [TenantWrapper("other").obj(), TenantWrapper("research").obj()]
    assert tenant_refusal(job, tenants) is None


def test_a_job_of_a_missing_tenant_is_refused() -> None:
    job = MLJobWrapper().tenant("research").obj()
    assert tenant_refusal(job, [TenantWrapper("production").obj()]) == Refusal(
        "TenantNotFound", "spec.tenant: no Tenant named 'research'"
    )
    assert tenant_refusal(job, []) is not None


def test_a_job_in_a_namespace_its_tenant_does_not_admit_is_refused() -> None:
    tenants = [TenantWrapper("research").namespaces("lab-1", "lab-2").obj()]
    inside = MLJobWrapper().tenant("research").namespace("lab-2").obj()
    outside = MLJobWrapper().tenant("research").namespace("sales").obj()
    assert tenant_refusal(inside, tenants) is None
    assert tenant_refusal(outside, tenants) == Refusal(
        "NamespaceNotAllowed",
        "spec.tenant: Tenant 'research' does not admit namespace 'sales' (it admits lab-1, lab-2)",
    )


# refusal_of_spec


def test_a_spec_the_models_refuse_is_refused_with_every_field_error() -> None:
    body = MLJobWrapper().shards(2, min_available=3).body()
    body["spec"]["priority"] = 5000
    found = validate_resource(body)
    errors = found if isinstance(found, list) else []
    assert len(errors) == 2
    refusal = refusal_of_spec(errors)
    assert refusal.reason == "InvalidSpec"
    assert refusal.message == "; ".join(str(error) for error in errors)
    assert "spec.shards.minAvailable" in refusal.message
    assert "spec.priority" in refusal.message


def test_field_errors_are_joined_in_order() -> None:
    errors = [FieldError("spec.a", "is wrong"), FieldError("spec.b", "too")]
    assert refusal_of_spec(errors) == Refusal("InvalidSpec", "spec.a: is wrong; spec.b: too")


# refused_status


def admitted(status: object) -> tuple[str, str, str, int | None]:
    conditions = getattr(status, "conditions", [])
    found = next(c for c in conditions if c.type == "Admitted")
    return found.status, found.reason, found.message, found.observed_generation


def test_a_refused_job_is_pending_and_not_admitted() -> None:
    refusal = Refusal("TenantNotFound", "spec.tenant: no Tenant named 'x'")
    status = refused_status(None, 4, refusal, NOW)
    assert status.phase == MLJobPhase.PENDING
    assert admitted(status) == ("False", "TenantNotFound", "spec.tenant: no Tenant named 'x'", 4)
    assert status.observed_generation == 4


def test_a_refusal_keeps_the_rest_of_a_status_that_parses() -> None:
    current = MLJobWrapper().phase("Running").condition("Ready", True).body()["status"]
    current["placementRef"] = {"name": "j", "epoch": 2}
    status = refused_status(current, 2, Refusal("InvalidSpec", "bad"), NOW)
    assert status.phase == MLJobPhase.PENDING
    assert [c.type for c in status.conditions] == ["Ready", "Admitted"]
    assert status.placement_ref is not None


def test_a_status_that_does_not_parse_is_started_afresh() -> None:
    current = {"phase": "NotAPhase", "conditions": "not a list"}
    status = refused_status(current, 1, Refusal("InvalidSpec", "bad"), NOW)
    assert [c.type for c in status.conditions] == ["Admitted"]
    assert status.phase == MLJobPhase.PENDING


def test_the_refusals_transition_time_holds_while_it_is_refused() -> None:
    first = refused_status(None, 1, Refusal("InvalidSpec", "bad"), EARLIER)
    again = refused_status(first.to_dict(), 2, Refusal("TenantNotFound", "other"), NOW)
    (condition,) = again.conditions
    assert (condition.reason, condition.last_transition_time) == ("TenantNotFound", EARLIER)


def test_a_long_refusal_is_cut_to_what_a_condition_holds() -> None:
    status = refused_status(None, 1, Refusal("InvalidSpec", "x" * 40000), NOW)
    assert len(status.conditions[0].message) == 32768


# tenant_status


def test_a_valid_tenant_for_every_namespace_is_active() -> None:
    status = tenant_status(None, 3, TenantWrapper().obj(), [], NOW)
    assert [(c.type, c.status, c.reason, c.message) for c in status.conditions] == [
        (TENANT_ACTIVE, "True", "Active", "admits MLJobs from every namespace")
    ]
    assert status.observed_generation == 3
    assert status.conditions[0].observed_generation == 3


def test_a_tenant_the_models_refuse_is_not_active_and_says_why() -> None:
    errors = [FieldError("spec.weight", "must be greater than 0")]
    status = tenant_status({"allocated": {"cpu": "2"}}, 2, None, errors, NOW)
    assert [(c.status, c.reason, c.message) for c in status.conditions] == [
        ("False", "InvalidSpec", "spec.weight: must be greater than 0")
    ]
    assert status.allocated is not None  # the rest of the status is kept


def test_a_tenant_status_that_does_not_parse_is_started_afresh() -> None:
    status = tenant_status({"conditions": [{"type": 1}]}, 1, TenantWrapper().obj(), [], NOW)
    assert [c.type for c in status.conditions] == [TENANT_ACTIVE]


def test_a_tenant_becoming_invalid_moves_its_transition_time() -> None:
    active = tenant_status(None, 1, TenantWrapper().obj(), [], EARLIER).to_dict()
    still = tenant_status(active, 2, TenantWrapper().weight(2).obj(), [], NOW)
    assert still.conditions[0].last_transition_time == EARLIER
    invalid = tenant_status(active, 3, None, [FieldError("spec", "bad")], NOW)
    assert invalid.conditions[0].last_transition_time == NOW
