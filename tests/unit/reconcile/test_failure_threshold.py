"""Failure is declared after N probes in a row go unanswered: until then a member is a suspect
(Reachable and Ready Unknown, ProbesMissed), counted in status.missedProbes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from continuum.operator.api import MemberCluster, MemberClusterStatus
from continuum.operator.api.probe import ProbeResult
from continuum.operator.reconcile.membership import PROBES_MISSED, is_usable, probed_status
from tests.wrappers import MemberClusterWrapper

pytestmark = pytest.mark.unit
T0 = datetime(2026, 12, 6, 9, tzinfo=UTC)
ANSWER = ProbeResult(kubernetes_version="v1.37.2", latency_ms=3.0)
TIMEOUT = ProbeResult(failure_reason="Timeout", message="no answer within the timeout")


def conditions(status: MemberClusterStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def probed(
    member: MemberCluster, probe: ProbeResult, at: datetime, threshold: int
) -> MemberCluster:
    """The member as the hub holds it after the probe's status is written."""
    status = probed_status(member, probe, at, threshold)
    return member.model_copy(update={"status": status})


def answered_member() -> MemberCluster:
    return probed(MemberClusterWrapper().obj(), ANSWER, T0, 3)


def test_an_answer_counts_no_missed_probes() -> None:
    member = answered_member()
    assert member.status is not None and member.status.missed_probes == 0
    assert member.status.to_dict()["missedProbes"] == 0  # applied, so a 0 replaces a count
    assert conditions(member.status) == {
        "Reachable": ("True", "APIServerAnswered"),
        "Ready": ("True", "CapacityKnown"),
    }


def test_fewer_missed_probes_than_the_threshold_make_a_suspect_whose_shards_stay() -> None:
    member = answered_member()
    for missed in (1, 2):
        member = probed(member, TIMEOUT, T0 + timedelta(seconds=2 * missed), 3)
        assert member.status is not None
        assert member.status.missed_probes == missed
        assert conditions(member.status) == {
            "Reachable": ("Unknown", PROBES_MISSED),
            "Ready": ("Unknown", PROBES_MISSED),
        }
        reachable = next(c for c in member.status.conditions if c.type == "Reachable")
        assert reachable.message.startswith(f"{missed} of 3 probes in a row unanswered (Timeout:")
        # Its first miss is when it turned suspect.
        assert reachable.last_transition_time == T0 + timedelta(seconds=2)
        # Kept what its last answer said.
        assert member.status.last_heartbeat_time == T0
        assert not is_usable(member)


def test_the_threshold_th_missed_probe_declares_the_failure_with_the_probes_reason() -> None:
    member = answered_member()
    for missed in (1, 2, 3):
        member = probed(member, TIMEOUT, T0 + timedelta(seconds=2 * missed), 3)
    assert member.status is not None and member.status.missed_probes == 3
    assert conditions(member.status) == {
        "Reachable": ("False", "Timeout"),
        "Ready": ("False", "Unreachable"),
    }
    reachable = next(c for c in member.status.conditions if c.type == "Reachable")
    assert reachable.message == "no answer within the timeout (3 probes in a row unanswered)"
    assert reachable.last_transition_time == T0 + timedelta(seconds=6)
    # It stays failed, counting, until it answers.
    member = probed(member, TIMEOUT, T0 + timedelta(seconds=8), 3)
    assert member.status is not None and member.status.missed_probes == 4
    assert conditions(member.status)["Reachable"] == ("False", "Timeout")


def test_an_answer_before_the_threshold_clears_the_suspicion() -> None:
    member = answered_member()
    member = probed(member, TIMEOUT, T0 + timedelta(seconds=2), 3)
    member = probed(member, TIMEOUT, T0 + timedelta(seconds=4), 3)
    member = probed(member, ANSWER, T0 + timedelta(seconds=6), 3)
    assert member.status is not None and member.status.missed_probes == 0
    assert conditions(member.status) == {
        "Reachable": ("True", "APIServerAnswered"),
        "Ready": ("True", "CapacityKnown"),
    }
    # The count starts again: one miss is a suspect again, not a failure.
    member = probed(member, TIMEOUT, T0 + timedelta(seconds=8), 3)
    assert member.status is not None and member.status.missed_probes == 1
    assert conditions(member.status)["Reachable"] == ("Unknown", PROBES_MISSED)


def test_the_count_is_read_from_status_so_a_restarted_operator_goes_on_counting() -> None:
    member = answered_member()
    member = probed(member, TIMEOUT, T0 + timedelta(seconds=2), 3)
    member = probed(member, TIMEOUT, T0 + timedelta(seconds=4), 3)
    # What a new operator reads from the hub: the status as written, nothing in memory.
    reread = MemberCluster.model_validate(member.to_dict())
    after = probed(reread, TIMEOUT, T0 + timedelta(seconds=6), 3)
    assert after.status is not None
    assert conditions(after.status)["Reachable"] == ("False", "Timeout")


def test_a_member_that_never_answered_fails_at_once() -> None:
    status = probed_status(MemberClusterWrapper().obj(), TIMEOUT, T0, 3)
    assert conditions(status) == {
        "Reachable": ("False", "Timeout"),
        "Ready": ("False", "Unreachable"),
    }


def test_a_threshold_of_one_declares_the_first_missed_probe_a_failure() -> None:
    member = probed(answered_member(), TIMEOUT, T0 + timedelta(seconds=2), 1)
    assert member.status is not None
    assert conditions(member.status)["Reachable"] == ("False", "Timeout")
