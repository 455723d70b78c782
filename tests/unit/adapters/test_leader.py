from __future__ import annotations

import pytest

from continuum.operator.adapters.leader import LeaseTiming, may_take

pytestmark = pytest.mark.unit


def test_a_candidate_takes_a_lease_nobody_holds_or_one_it_holds() -> None:
    assert may_take(None, "b", unchanged_since=100.0, duration_s=8, now=100.0)
    assert may_take("", "b", unchanged_since=100.0, duration_s=8, now=100.0)
    assert may_take("b", "b", unchanged_since=100.0, duration_s=8, now=100.0)


def test_another_holder_keeps_it_until_its_record_has_not_changed_for_its_duration() -> None:
    # Measured on the candidate's own clock from when it saw the record change.
    assert not may_take("a", "b", unchanged_since=100.0, duration_s=8, now=107.9)
    assert may_take("a", "b", unchanged_since=100.0, duration_s=8, now=108.0)


@pytest.mark.parametrize(
    ("duration", "deadline", "retry"), [(8, 8.0, 1.0), (8, 6.0, 6.0), (8, 6.0, 0.0)]
)
def test_a_timing_that_could_not_hold_the_lease_is_refused(
    duration: int, deadline: float, retry: float
) -> None:
    with pytest.raises(ValueError, match=r"retry|lease duration"):
        LeaseTiming(duration, deadline, retry)
