"""When a failed member's shards are moved (evicted) and when they stay: failover off, many
members not answering at once (the fleet or a region), one eviction per interval."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from continuum.operator.api import MemberCluster, MemberClusterStatus
from continuum.operator.api.membercluster import MemberMode
from continuum.operator.api.probe import ProbeResult
from continuum.operator.reconcile.eviction import (
    UNREACHABLE_TAINT_KEY,
    EvictionPolicy,
    HoldReason,
    eviction_held,
    eviction_status,
    shards_stay,
)
from continuum.operator.reconcile.membership import probed_status
from continuum.operator.reconcile.snapshot import build_snapshot
from continuum.schedulers.model import Taint
from tests.wrappers import MemberClusterWrapper

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 6, 9, 0, 30, tzinfo=UTC)
TIMEOUT = ProbeResult(failure_reason="Timeout", message="no answer within the timeout")
POLICY = EvictionPolicy()


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, status: str, reason: str, at: datetime) -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": "",
            "lastTransitionTime": _time(at)}  # fmt: skip


def member(
    name: str,
    state: str = "up",
    region: str = "region-1",
    at: datetime = NOW - timedelta(seconds=20),
    ready: tuple[str, str] | None = None,
    ready_at: datetime | None = None,
    risk: float | None = None,
    degraded: str | None = None,
) -> MemberCluster:
    """A member that answered once: `up`, `suspect` (missed probes, fewer than the threshold)
    or `failed` (Reachable=False since `at`; Ready as given, else evicted at `at`); with
    `degraded`, Degraded True with that reason (the link signals' verdict)."""
    reachable = {"up": ("True", "APIServerAnswered"), "suspect": ("Unknown", "ProbesMissed"),
                 "failed": ("False", "Timeout")}[state]  # fmt: skip
    if ready is None:
        ready = {"up": ("True", "CapacityKnown"), "suspect": ("Unknown", "ProbesMissed"),
                 "failed": ("False", "Unreachable")}[state]  # fmt: skip
    status: dict[str, Any] = {
        "lastHeartbeatTime": _time(NOW - timedelta(minutes=5)),
        "missedProbes": {"up": 0, "suspect": 2, "failed": 3}[state],
        "conditions": [
            _condition("Reachable", *reachable, at),
            _condition("Ready", *ready, ready_at or at),
        ],
    }
    if risk is not None:
        status["risk"] = {"score": risk}
    if degraded is not None:
        status["conditions"].append(_condition("Degraded", "True", degraded, at))
    return MemberClusterWrapper(name).region(region).status(status).obj()


def declare(
    before: MemberCluster, others: list[MemberCluster], policy: EvictionPolicy = POLICY
) -> MemberClusterStatus:
    """The suspect `before` misses its threshold-th probe now: its new status."""
    probed = probed_status(before, TIMEOUT, NOW, 3)
    return eviction_status(before, probed, [before, *others], policy, NOW)


def ready(status: MemberClusterStatus) -> tuple[str, str]:
    condition = next(c for c in status.conditions if c.type == "Ready")
    return (condition.status.value, condition.reason)


def with_status(before: MemberCluster, status: MemberClusterStatus) -> MemberCluster:
    return before.model_copy(update={"status": status})


def test_a_lone_failure_is_evicted() -> None:
    me = member("m1", "suspect")
    status = declare(me, [member("m2"), member("m3"), member("m4")])
    assert ready(status) == ("False", "Unreachable")
    after = with_status(me, status)
    assert not shards_stay(after)
    assert eviction_held(after) is None


def test_with_failover_off_the_shards_stay_on_a_failed_member() -> None:
    me = member("m1", "suspect")
    status = declare(me, [member("m2"), member("m3")], EvictionPolicy(failover=False))
    assert ready(status) == ("Unknown", "FailoverDisabled")
    after = with_status(me, status)
    assert shards_stay(after)
    assert eviction_held(after) == HoldReason.FAILOVER_DISABLED


def test_most_of_the_fleet_not_answering_at_once_holds_every_eviction() -> None:
    # The first member to reach the threshold does so while the others are still suspects.
    me = member("m1", "suspect")
    others = [member("m2", "suspect"), member("m3", "suspect"), member("m4")]
    status = declare(me, others)
    assert ready(status) == ("Unknown", "FleetDisrupted")
    message = next(c for c in status.conditions if c.type == "Ready").message
    assert message.startswith("3 of 4 members do not answer at once")


def test_a_whole_fleet_of_two_not_answering_is_a_disruption() -> None:
    assert ready(declare(member("m1", "suspect"), [member("m2", "failed")])) == (
        "Unknown",
        "FleetDisrupted",
    )


def test_two_of_four_failing_are_real_failures_evicted_one_interval_apart() -> None:
    # Two sites failing together is not a hub-side blip: each is evicted, in turn.
    first = member("m1", "failed", at=NOW - timedelta(seconds=4))
    me = member("m2", "suspect")
    status = declare(me, [first, member("m3"), member("m4")])
    assert ready(status) == ("Unknown", HoldReason.RATE_LIMITED.value)
    message = next(c for c in status.conditions if c.type == "Ready").message
    assert message == "evictions are spaced 10 s apart; the last one was 4 s ago"
    # Ten seconds after the first, the second goes too.
    first = member("m1", "failed", at=NOW - timedelta(seconds=10))
    assert ready(declare(me, [first, member("m3"), member("m4")])) == ("False", "Unreachable")


@pytest.mark.parametrize(
    ("reason", "held"),
    [("SiteUnreachable", False), ("UnreachableFromHub", True), ("ProbesUnanswered", True)],
)
def test_sites_the_other_sites_cannot_reach_either_are_failures_not_a_disruption(
    reason: str, held: bool
) -> None:
    # Two of four sites out, a third losing most of its probes (a suspect): three of four do
    # not answer the hub. Only when the other sites see the two as out are they failures.
    first = member("m1", "failed", at=NOW - timedelta(seconds=30), ready=("Unknown",
                   "FleetDisrupted"), degraded=reason)  # fmt: skip
    me = member("m2", "suspect", degraded=reason)
    status = declare(me, [first, member("m3", "suspect"), member("m4")])
    if held:
        assert ready(status) == ("Unknown", "FleetDisrupted")
    else:
        # Not a disruption: m1 failed first and waits its turn, m2 waits for m1's eviction.
        assert ready(status) == ("Unknown", HoldReason.RATE_LIMITED.value)
    # Held either way for now, so its shards stay where they run until the hold ends.
    assert shards_stay(with_status(me, status))


def test_a_site_out_still_keeps_its_shards_for_the_grace_period() -> None:
    """The other sites' verdict changes what counts toward a disruption, not the grace: a
    partition shorter than it is ridden out however the site is seen."""
    me = answered_last(6.0, degraded="SiteUnreachable")
    held = declare(me, [member("m2"), member("m3"), member("m4")])
    assert ready(held) == ("Unknown", HoldReason.GRACE_PERIOD.value)
    assert shards_stay(with_status(me, held))


def test_two_held_past_their_grace_go_in_the_order_they_failed() -> None:
    """Neither evicted yet, both past the grace: the first to fail goes, the other waits for
    it, whichever is probed first (each once waited for the other, and neither ever went)."""

    def held(name: str, failed_s_ago: float) -> MemberCluster:
        found = member(name, "failed", at=NOW - timedelta(seconds=failed_s_ago),
                       ready=("Unknown", "FailoverGracePeriod"))  # fmt: skip
        assert found.status is not None
        status = found.status.model_copy(
            update={"last_heartbeat_time": NOW - timedelta(seconds=40)}
        )
        return found.model_copy(update={"status": status})

    first, second = held("m2", 32.0), held("m1", 30.0)
    fleet = [first, second, member("m3"), member("m4")]
    for me in (second, first):
        probed = probed_status(me, TIMEOUT, NOW, 3)
        status = eviction_status(me, probed, fleet, POLICY, NOW)
        if me is first:
            assert ready(status) == ("False", "Unreachable")
        else:
            assert ready(status) == ("Unknown", HoldReason.RATE_LIMITED.value)
            message = next(c for c in status.conditions if c.type == "Ready").message
            assert message.endswith("m2 failed first")


def test_members_failed_earlier_and_not_evicted_yet_go_first() -> None:
    waiting = member("m9", "failed", at=NOW - timedelta(seconds=5),
                     ready=("Unknown", HoldReason.RATE_LIMITED.value))  # fmt: skip
    status = declare(member("m1", "suspect"), [waiting, member("m3"), member("m4"), member("m5")])
    assert ready(status) == ("Unknown", HoldReason.RATE_LIMITED.value)
    assert next(c for c in status.conditions if c.type == "Ready").message.endswith(
        "m9 failed first"
    )


def test_no_interval_evicts_every_failure_at_once() -> None:
    first = member("m1", "failed", at=NOW - timedelta(seconds=1))
    status = declare(member("m2", "suspect"), [first, member("m3"), member("m4")],
                     EvictionPolicy(interval_s=0))  # fmt: skip
    assert ready(status) == ("False", "Unreachable")


def test_a_region_mostly_not_answering_is_held_while_the_fleet_is_not() -> None:
    region = [member(f"a{i}", "suspect", region="west") for i in range(2)]
    region.append(member("a3", region="west"))
    elsewhere = [member(f"b{i}", region="east") for i in range(6)]
    status = declare(member("a0x", "suspect", region="west"), [*region, *elsewhere])
    # 3 of 4 in west, 3 of 10 in the fleet.
    assert ready(status) == ("Unknown", "RegionDisrupted")


def test_members_never_answered_being_deleted_or_duplicates_do_not_count() -> None:
    never = MemberClusterWrapper("new").reachable(False).obj()
    twin = MemberClusterWrapper("twin").duplicate().obj()
    status = declare(member("m1", "suspect"), [never, twin, member("m2"), member("m3")])
    assert ready(status) == ("False", "Unreachable")


def test_an_evicted_member_stays_evicted_whatever_happens_to_the_others() -> None:
    me = member("m1", "failed", at=NOW - timedelta(seconds=30))
    probed = probed_status(me, TIMEOUT, NOW, 3)
    others = [member("m2", "suspect"), member("m3", "suspect"), member("m4", "suspect")]
    status = eviction_status(me, probed, [me, *others], POLICY, NOW)
    assert ready(status) == ("False", "Unreachable")


def test_a_hold_that_lasts_keeps_its_transition_time() -> None:
    since = NOW - timedelta(seconds=30)
    me = member("m1", "failed", at=since, ready=("Unknown", "FleetDisrupted"), ready_at=since)
    others = [member("m2", "failed", at=since, ready=("Unknown", "FleetDisrupted")),
              member("m3", "suspect"), member("m4")]  # fmt: skip
    probed = probed_status(me, TIMEOUT, NOW, 3)
    status = eviction_status(me, probed, [me, *others], POLICY, NOW)
    held = next(c for c in status.conditions if c.type == "Ready")
    assert (held.status.value, held.reason, held.last_transition_time) == (
        "Unknown",
        "FleetDisrupted",
        since,
    )


def test_a_held_eviction_ends_when_enough_members_answer_again() -> None:
    since = NOW - timedelta(seconds=30)
    me = member("m1", "failed", at=since, ready=("Unknown", "FleetDisrupted"), ready_at=since)
    probed = probed_status(me, TIMEOUT, NOW, 3)
    status = eviction_status(me, probed, [me, member("m2"), member("m3"), member("m4")],
                             POLICY, NOW)  # fmt: skip
    assert ready(status) == ("False", "Unreachable")


def test_an_answering_member_is_left_as_the_probe_said() -> None:
    me = member("m1")
    probed = probed_status(me, ProbeResult(kubernetes_version="v1"), NOW, 3)
    assert eviction_status(me, probed, [me], POLICY, NOW) == probed


# What the scheduler sees


def test_the_snapshot_keeps_shards_on_suspects_and_held_failures_but_sends_none_new() -> None:
    members = [
        member("up"),
        member("suspect", "suspect", risk=0.9),
        member("held", "failed", ready=("Unknown", "FleetDisrupted"), risk=0.9),
        member("evicted", "failed"),
    ]
    clusters = {c.name: c for c in build_snapshot(members, [], [], {}).clusters}
    unreachable = Taint(UNREACHABLE_TAINT_KEY, "", "NoSchedule")
    assert (clusters["up"].healthy, clusters["up"].taints) == (True, ())
    assert (clusters["suspect"].healthy, clusters["suspect"].taints) == (True, (unreachable,))
    assert (clusters["held"].healthy, clusters["held"].taints) == (True, (unreachable,))
    assert clusters["evicted"].healthy is False
    # A suspect's risk may be what a proactive move is for; a held failure's is not a reason
    # to move what the hold keeps.
    assert clusters["suspect"].risk == 0.9
    assert clusters["held"].risk == 0.0


def answered_last(
    seconds_ago: float, state: str = "suspect", degraded: str | None = None
) -> MemberCluster:
    found = member("m1", state, degraded=degraded)
    assert found.status is not None
    status = found.status.model_copy(
        update={"last_heartbeat_time": NOW - timedelta(seconds=seconds_ago)}
    )
    return found.model_copy(update={"status": status})


def test_a_failure_is_ridden_out_for_the_grace_period_then_evicted() -> None:
    """Declared failed 6 s after its last answer, its shards stay until 20 s have passed: a
    partition shorter than that is a blip, and moving them for it would be a false move."""
    others = [member("m2"), member("m3"), member("m4")]
    held = declare(answered_last(6.0), others)
    assert ready(held) == ("Unknown", HoldReason.GRACE_PERIOD.value)
    message = next(c for c in held.conditions if c.type == "Ready").message
    assert message.startswith("no answer for 6 s; its shards move once it has not answered")
    assert shards_stay(with_status(answered_last(6.0), held))
    # A later probe, still unanswered, 20 s after the last answer: evicted.
    later = with_status(
        answered_last(20.0),
        held.model_copy(update={"last_heartbeat_time": NOW - timedelta(seconds=20)}),
    )
    probed = probed_status(later, TIMEOUT, NOW, 3)
    assert ready(eviction_status(later, probed, [later, *others], POLICY, NOW)) == (
        "False",
        "Unreachable",
    )
    assert ready(declare(answered_last(6.0), others, EvictionPolicy(grace_s=0))) == (
        "False",
        "Unreachable",
    )


def pull(found: MemberCluster) -> MemberCluster:
    """`found` as a Pull member: judged from its agent's Lease, which fences its shards."""
    spec = found.spec.model_copy(update={"mode": MemberMode.PULL, "kubeconfig_secret_ref": None})
    return found.model_copy(update={"spec": spec})


def test_pull_members_lost_together_are_each_evicted_without_waiting_for_the_other() -> None:
    # Past its grace (lease, fence and margin: 35 s) the agent has stopped its fenced shards;
    # spacing the eviction would only keep them from being replaced.
    grace_s = POLICY.grace_for(pull(member("m1")))
    first = pull(member("m1", "failed", at=NOW - timedelta(seconds=4)))
    silent = answered_last(grace_s)
    me = pull(
        silent.model_copy(update={"metadata": silent.metadata.model_copy(update={"name": "m2"})})
    )
    status = declare(me, [first, member("m3"), member("m4"), member("m5")])
    assert ready(status) == ("False", "Unreachable")
    # A Push member is still spaced from other Push members, not from the Pull one.
    push = member("m2", "suspect")
    assert ready(declare(push, [first, member("m3"), member("m4")])) == ("False", "Unreachable")
    second = member("m5", "failed", at=NOW - timedelta(seconds=4))
    healthy = [member(f"h{index}") for index in range(4)]
    assert ready(declare(push, [first, second, *healthy])) == (
        "Unknown",
        HoldReason.RATE_LIMITED.value,
    )
