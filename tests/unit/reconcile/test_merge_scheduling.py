"""The cycle's part of a job's status laid over the placement controller's (one writer)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from continuum.operator.api import (
    ConditionStatus,
    MLJobConditionType,
    MLJobPhase,
    MLJobStatus,
    upsert_condition,
)
from continuum.operator.reconcile.placement import merge_scheduling

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def status(phase: MLJobPhase | None, **conditions: ConditionStatus) -> MLJobStatus:
    made: list = []
    for kind, value in conditions.items():
        made = upsert_condition(made, kind, value, f"{kind}{value.value}", now=NOW)
    return MLJobStatus(phase=phase, conditions=made)


def test_the_cycles_conditions_replace_theirs_and_the_controllers_stay() -> None:
    current = status(
        MLJobPhase.RUNNING, Ready=ConditionStatus.TRUE, Scheduled=ConditionStatus.FALSE
    )
    scheduled = status(
        MLJobPhase.PLACED, Admitted=ConditionStatus.TRUE, Scheduled=ConditionStatus.TRUE
    )
    merged = merge_scheduling(current, scheduled)
    by_type = {c.type: c.status for c in merged.conditions}
    assert by_type == {
        MLJobConditionType.READY: ConditionStatus.TRUE,
        MLJobConditionType.SCHEDULED: ConditionStatus.TRUE,
        MLJobConditionType.ADMITTED: ConditionStatus.TRUE,
    }
    assert [c.type for c in merged.conditions][:2] == ["Ready", "Scheduled"]  # order kept
    assert merged.phase == MLJobPhase.RUNNING  # a stale "Placed" does not undo Running


@pytest.mark.parametrize(
    ("current", "scheduled", "expected"),
    [
        (None, MLJobPhase.PLACED, MLJobPhase.PLACED),
        (MLJobPhase.PENDING, MLJobPhase.PLACED, MLJobPhase.PLACED),
        (MLJobPhase.PLACED, MLJobPhase.PENDING, MLJobPhase.PENDING),
        (MLJobPhase.RECOVERING, MLJobPhase.PLACED, MLJobPhase.RECOVERING),
        (MLJobPhase.SUCCEEDED, MLJobPhase.PENDING, MLJobPhase.SUCCEEDED),
    ],
)
def test_the_phase_is_the_cycles_only_until_shards_run(
    current: MLJobPhase | None, scheduled: MLJobPhase, expected: MLJobPhase
) -> None:
    assert merge_scheduling(status(current), status(scheduled)).phase == expected
