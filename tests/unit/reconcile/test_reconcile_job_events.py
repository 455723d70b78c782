"""Which Events a change of an MLJob's status deserves."""

from __future__ import annotations

from typing import Any

import pytest

from continuum.operator.reconcile.job_events import JobEvent, status_events
from tests.wrappers import condition

pytestmark = pytest.mark.unit


def status(*conditions: dict[str, Any]) -> dict[str, Any]:
    return {"conditions": list(conditions)}


def admitted(ok: bool, reason: str = "Admitted", message: str = "ok") -> dict[str, Any]:
    return condition("Admitted", ok, reason, message)


def scheduled(ok: bool, reason: str = "Placed", message: str = "placed") -> dict[str, Any]:
    return condition("Scheduled", ok, reason, message)


def unavailable(ok: bool, reason: str = "MemberUnreachable", message: str = "m") -> dict[str, Any]:
    return condition("ShardsUnavailable", ok, reason, message)


def test_no_change_no_event() -> None:
    both = status(admitted(True), scheduled(True), unavailable(False, "ShardsReachable"))
    assert status_events(both, both) == []
    assert status_events({}, {}) == []


def test_a_job_placed_is_one_normal_event() -> None:
    events = status_events({}, status(admitted(True), scheduled(True, message="2 of 2 on m1")))
    assert events == [JobEvent("Normal", "Placed", "2 of 2 on m1")]


def test_a_new_placement_message_is_a_new_event() -> None:
    before = status(scheduled(True, message="1 of 2 on m1"))
    after = status(scheduled(True, message="2 of 2 on m1, m2"))
    assert status_events(before, after) == [JobEvent("Normal", "Placed", "2 of 2 on m1, m2")]


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (
            {},
            status(admitted(False, "TenantNotFound", "no Tenant named 'x'")),
            [JobEvent("Warning", "TenantNotFound", "no Tenant named 'x'")],
        ),
        (
            status(scheduled(True)),
            status(scheduled(False, "Unschedulable", "no cluster has 2 cpu free")),
            [JobEvent("Warning", "Unschedulable", "no cluster has 2 cpu free")],
        ),
        (
            status(scheduled(False, "Unschedulable", "full")),
            status(scheduled(False, "PlacementRefused", "frozen by policy")),
            [JobEvent("Warning", "PlacementRefused", "frozen by policy")],
        ),
    ],
    ids=["refused", "unschedulable", "placement-refused"],
)
def test_a_refusal_or_an_unschedulable_job_is_a_warning(
    before: dict[str, Any], after: dict[str, Any], expected: list[JobEvent]
) -> None:
    assert status_events(before, after) == expected


def test_the_same_refusal_again_is_no_new_event_but_a_new_sentence_is() -> None:
    before = status(scheduled(False, "Unschedulable", "full"))
    assert status_events(before, status(scheduled(False, "Unschedulable", "full"))) == []
    assert status_events(before, status(scheduled(False, "Unschedulable", "fuller"))) == [
        JobEvent("Warning", "Unschedulable", "fuller")
    ]


def test_an_admitted_job_is_no_event_of_its_own() -> None:
    assert status_events(status(admitted(False, "InvalidSpec")), status(admitted(True))) == []


def test_suspending_is_no_warning() -> None:
    after = status(admitted(True), scheduled(False, "Suspended", "spec.suspend is true"))
    assert status_events(status(scheduled(True)), after) == []


def test_admission_comes_before_scheduling() -> None:
    after = status(scheduled(False, "Unschedulable", "full"), admitted(False, "InvalidSpec", "bad"))
    assert [event.reason for event in status_events({}, after)] == [
        "InvalidSpec",
        "Unschedulable",
    ]


def test_shards_becoming_unavailable_and_available_again() -> None:
    healthy = status(unavailable(False, "ShardsReachable", "every shard's member answers"))
    down = status(unavailable(True, "MemberUnreachable", "shard 1 on m2: timeout"))
    assert status_events(healthy, down) == [
        JobEvent("Warning", "ShardsUnavailable", "shard 1 on m2: timeout")
    ]
    assert status_events(down, healthy) == [
        JobEvent("Normal", "ShardsAvailable", "every shard's member answers")
    ]
    assert status_events({}, down) == [
        JobEvent("Warning", "ShardsUnavailable", "shard 1 on m2: timeout")
    ]


def test_shards_unavailable_is_said_again_only_when_its_reason_changes() -> None:
    down = status(unavailable(True, "MemberUnreachable", "shard 1 on m2: timeout"))
    more = status(unavailable(True, "MemberUnreachable", "shard 1 on m2; shard 2 on m3"))
    refused = status(unavailable(True, "MemberRefused", "shard 1 on m2: HTTP 422"))
    assert status_events(down, more) == []
    assert status_events(down, refused) == [
        JobEvent("Warning", "ShardsUnavailable", "shard 1 on m2: HTTP 422")
    ]


def test_shards_available_from_the_start_is_no_event() -> None:
    assert status_events({}, status(unavailable(False, "ShardsReachable"))) == []


def test_a_condition_that_disappears_is_no_event() -> None:
    before = status(scheduled(False, "Unschedulable"), unavailable(True))
    assert status_events(before, {}) == []
    assert status_events(before, {"conditions": None}) == []
