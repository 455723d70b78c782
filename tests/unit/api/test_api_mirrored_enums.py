"""The enums the API and the scheduler both define stay the same values: a drift fails here,
not in a live cycle converting one into the other."""

from __future__ import annotations

from enum import StrEnum

import pytest

from continuum.operator.api import JobMode, MigrationReason, Residency, Tier
from continuum.schedulers import model

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("api", "scheduler"),
    [
        (Tier, model.Tier),
        (JobMode, model.Mode),
        (Residency, model.Residency),
        (MigrationReason, model.MigrationReason),
    ],
)
def test_the_api_and_the_scheduler_mirror_each_others_values(
    api: type[StrEnum], scheduler: type[StrEnum]
) -> None:
    assert [member.value for member in api] == [member.value for member in scheduler]
