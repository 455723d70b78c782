from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from continuum.operator.reconcile.progress import with_progress

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 7, 21, 0, tzinfo=UTC)


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


def status(phase: str, **conditions: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "phase": phase,
        "conditions": [
            {"type": kind, "status": value, "reason": reason, "message": message,
             "lastTransitionTime": "2026-12-07T20:00:00Z"}
            for kind, (value, reason, message) in conditions.items()
        ],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("phase", "reconciling", "stalled", "reason"),
    [
        ("Pending", "True", "False", "WaitingForPlacement"),
        ("Placed", "True", "False", "ShardsStarting"),
        ("Recovering", "True", "False", "ShardsRecovering"),
        ("Running", "False", "False", "Settled"),
        ("Succeeded", "False", "False", "Settled"),
        ("Suspended", "False", "False", "Settled"),
        ("Failed", "False", "True", "Stalled"),
    ],
)
def test_the_phase_says_whether_the_job_is_on_its_way_settled_or_stalled(
    phase: str, reconciling: str, stalled: str, reason: str
) -> None:
    written = with_progress(status(phase), 3, NOW)
    assert condition(written, "Reconciling")["status"] == reconciling
    assert condition(written, "Stalled")["status"] == stalled
    assert condition(written, "Reconciling")["reason"] == reason
    assert condition(written, "Stalled")["observedGeneration"] == 3


def test_a_job_refused_at_admission_is_stalled_with_the_refusal() -> None:
    refused = status("Pending", Admitted=("False", "TenantNotFound", "spec.tenant: no Tenant"))
    written = with_progress(refused, 1, NOW)
    stalled = condition(written, "Stalled")
    assert (stalled["status"], stalled["reason"], stalled["message"]) == (
        "True", "TenantNotFound", "spec.tenant: no Tenant",
    )  # fmt: skip
    assert condition(written, "Reconciling")["status"] == "False"


def test_an_unschedulable_job_is_in_progress_with_the_schedulers_sentence() -> None:
    waiting = status("Pending", Scheduled=("False", "Unschedulable", "only 3 fit"))
    reconciling = condition(with_progress(waiting, 1, NOW), "Reconciling")
    assert (reconciling["status"], reconciling["message"]) == ("True", "only 3 fit")


def test_the_transition_time_moves_only_with_the_status_and_a_rewrite_changes_nothing() -> None:
    first = with_progress(status("Placed"), 1, NOW)
    later = datetime(2026, 12, 7, 21, 5, tzinfo=UTC)
    assert with_progress(first, 1, later) == first
    running = with_progress({**first, "phase": "Running"}, 1, later)
    assert condition(running, "Reconciling")["lastTransitionTime"] == "2026-12-07T21:05:00Z"
    assert condition(running, "Stalled")["lastTransitionTime"] == "2026-12-07T21:00:00Z"
    assert with_progress({}, 1, NOW) == {}
