from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import urllib3

from continuum.operator.adapters.leader import LeaseElector, LeaseTiming, may_take

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


class BrokenApi:
    """A stand-in for the CoordinationV1Api whose every request fails as a hung or broken
    connection does (the real API server cannot be made to time out on demand)."""

    def __init__(self) -> None:
        self.timeouts: list[float] = []

    def read_namespaced_lease(self, name: str, namespace: str, **kwargs: Any) -> Any:
        self.timeouts.append(kwargs["_request_timeout"])
        raise urllib3.exceptions.ReadTimeoutError(None, "/leases", "timed out")  # type: ignore[arg-type]


def test_a_holder_whose_requests_time_out_is_told_it_lost_within_its_renew_deadline() -> None:
    api = BrokenApi()
    timing = LeaseTiming(duration_s=2, renew_deadline_s=0.4, retry_s=0.1)
    elector = LeaseElector(api, "ns", "lease", "me", timing)  # type: ignore[arg-type]
    assert not elector.try_acquire_or_renew()  # a failed round, not an exception
    lost = threading.Event()
    renewing = threading.Thread(target=elector.keep_leading, args=(lost.set,), daemon=True)
    started = time.monotonic()
    renewing.start()
    assert lost.wait(5)
    assert time.monotonic() - started < 0.4 + 2 * 0.1 + 0.5
    # Every request is bounded, well within the deadline.
    assert api.timeouts and max(api.timeouts) <= 0.5
