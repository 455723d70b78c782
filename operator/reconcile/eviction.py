"""Whether a failed member's shards are moved elsewhere (evicted) or left on it. Pure.

Modelled on the Kubernetes node lifecycle controller: a single member that stops answering
is evicted, but when a large part of the fleet, or of one region, stops answering at once,
the hub's own network is the likelier cause, and moving every shard would cost more than the
outage (the unhealthy-zone threshold, where Kubernetes stops evicting in small clusters).
Unlike a node, a site is also probed by the other sites: one they cannot reach either is out
itself and is not counted as evidence of the hub's network (the link signals' Degraded
reason SiteUnreachable).
Evictions of Push members are also spaced out, at most one every `interval_s` (the node
eviction rate), and can be turned off entirely, as Karmada's failover is by default. The
spacing bounds the harm of a wrong verdict on a member the hub only probes: its shards run on
while their replacements start. A Pull member's verdict is its own Lease's expiry, and its
agent has stopped the shards that must not run twice by the time its grace ends
(`grace_for`): spacing its eviction would only keep stopped shards from being replaced, so
Pull members neither wait in the queue nor hold a place in it.

Everything is read from the MemberClusters' status, so a restarted operator decides the same:
a member's failure time is its Reachable=False transition, an eviction is its Ready=False
(reason Unreachable) transition, and a member whose shards stay has Ready=Unknown with the
reason why (`HoldReason`). The heartbeat writes that decision; the snapshot reads it
(`shards_stay`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from continuum.operator.api import (
    Condition,
    ConditionStatus,
    DegradedReason,
    MemberCluster,
    MemberClusterConditionType,
    MemberClusterStatus,
    upsert_condition,
)
from continuum.operator.api.membercluster import MemberMode
from continuum.operator.reconcile.membership import UNREACHABLE, is_duplicate

# On a member whose shards stay although it does not answer: new shards do not go there.
UNREACHABLE_TAINT_KEY = "continuum.dev/unreachable"


class HoldReason(StrEnum):
    """Ready=Unknown reasons: the member failed, and its shards stay on it."""

    FAILOVER_DISABLED = "FailoverDisabled"
    GRACE_PERIOD = "FailoverGracePeriod"
    FLEET_DISRUPTED = "FleetDisrupted"
    REGION_DISRUPTED = "RegionDisrupted"
    RATE_LIMITED = "EvictionRateLimited"


@dataclass(frozen=True)
class EvictionPolicy:
    # False: a failed member keeps its shards until it answers; nothing moves.
    failover: bool = True
    # A scope (the fleet, or a region) whose members not answering are at least this share
    # of it, and at least `min_unhealthy` of them, is disrupted: none of its members is
    # evicted. Every member of a scope not answering counts too, from two members up.
    unhealthy_threshold: float = 0.55
    min_unhealthy: int = 3
    # The least time between two evictions of Push members (0: no limit).
    interval_s: float = 10.0
    # A failed member's shards move only once it has not answered for this long since its last
    # answer: a partition shorter than that (a blip) is ridden out, its shards left where they
    # run. Detection plus this plus a replacement's start stays within 30 s.
    grace_s: float = 20.0
    # A Pull member's agent stops its fenced shards fenceAfterSeconds after its last renewal;
    # its shards move no sooner than its lease, that, and this margin for the stopping, after
    # the last renewal the hub saw: never two copies at once.
    fence_margin_s: float = 5.0

    def grace_for(self, member: MemberCluster) -> float:
        """How long `member` must have been silent before its shards move."""
        if member.spec.mode != MemberMode.PULL:
            return self.grace_s
        timing = member.spec.timing
        fenced_s = timing.lease_duration_seconds + timing.fence_after_seconds + self.fence_margin_s
        return max(self.grace_s, fenced_s)


@dataclass(frozen=True)
class Hold:
    reason: HoldReason
    message: str


def _condition(status: MemberClusterStatus | None, kind: str) -> Condition | None:
    conditions = status.conditions if status else []
    return next((condition for condition in conditions if condition.type == kind), None)


def _has_status(
    status: MemberClusterStatus | None, kind: str, value: ConditionStatus, reason: str | None
) -> bool:
    condition = _condition(status, kind)
    return (
        condition is not None
        and condition.status == value
        and (reason is None or condition.reason == reason)
    )


def _counted(member: MemberCluster) -> bool:
    """Members that count towards a disruption: answered once, neither a second registration
    of a cluster nor being deleted."""
    return (
        member.status is not None
        and member.status.last_heartbeat_time is not None
        and not is_duplicate(member)
        and member.metadata.deletion_timestamp is None
    )


def _not_answering(member: MemberCluster) -> bool:
    return not _has_status(
        member.status, MemberClusterConditionType.REACHABLE, ConditionStatus.TRUE, None
    )


def _site_out(member: MemberCluster) -> bool:
    """The other sites cannot reach the member's site either (the link signals' Degraded,
    SiteUnreachable): its site is out, not the hub's network."""
    return _has_status(
        member.status,
        MemberClusterConditionType.DEGRADED,
        ConditionStatus.TRUE,
        DegradedReason.SITE_UNREACHABLE,
    )


def _hints_at_hub_network(member: MemberCluster) -> bool:
    """Whether the member counts toward a disruption of the hub's own network. Suspects count
    as well as failures: in a hub-side blip every member misses probes together, but the first
    to reach the threshold does so while the others are suspects. A member whose site is out
    does not: two sites failing together are two failures, whatever the size of the fleet."""
    return _not_answering(member) and not _site_out(member)


def _failed(member: MemberCluster) -> bool:
    return _counted(member) and _has_status(
        member.status, MemberClusterConditionType.REACHABLE, ConditionStatus.FALSE, None
    )


def _evicted(status: MemberClusterStatus | None) -> bool:
    return _has_status(
        status, MemberClusterConditionType.READY, ConditionStatus.FALSE, UNREACHABLE
    ) and _has_status(status, MemberClusterConditionType.REACHABLE, ConditionStatus.FALSE, None)


def is_evicted(member: MemberCluster) -> bool:
    """Whether the member's shards were declared lost (Ready False, Unreachable)."""
    return _evicted(member.status)


def _disrupted(members: Sequence[MemberCluster], policy: EvictionPolicy) -> tuple[int, int] | None:
    """(not answering, total) when the scope is disrupted, else None."""
    total = len(members)
    down = sum(1 for member in members if _hints_at_hub_network(member))
    if total >= 2 and down == total:
        return down, total
    if down >= policy.min_unhealthy and down >= policy.unhealthy_threshold * total:
        return down, total
    return None


NEVER = datetime.min.replace(tzinfo=UTC)


def _transition(member: MemberCluster, kind: str) -> datetime:
    condition = _condition(member.status, kind)
    moment = condition.last_transition_time if condition else None
    return moment if moment is not None else NEVER


def _pulled(member: MemberCluster) -> bool:
    return member.spec.mode == MemberMode.PULL


def _failure_order(member: MemberCluster) -> tuple[datetime, str]:
    return (_transition(member, MemberClusterConditionType.REACHABLE), member.metadata.name or "")


def hold_for(
    member: MemberCluster, members: Sequence[MemberCluster], policy: EvictionPolicy, now: datetime
) -> Hold | None:
    """Why the failed `member` (with its new status) keeps its shards, or None: evict it.
    `members` is every MemberCluster as the hub holds it (`member`'s entry is replaced)."""
    name = member.metadata.name or ""
    fleet = [m for m in members if m.metadata.name != name and _counted(m)]
    fleet.append(member)
    if not policy.failover:
        return Hold(
            HoldReason.FAILOVER_DISABLED,
            "failover is off: its shards stay on it until it answers again",
        )
    down = _disrupted(fleet, policy)
    if down is not None:
        return Hold(
            HoldReason.FLEET_DISRUPTED,
            f"{down[0]} of {down[1]} members do not answer at once: more likely the operator's "
            "own network than as many failures; its shards stay until fewer do",
        )
    region = member.spec.region
    down = _disrupted([m for m in fleet if m.spec.region == region], policy)
    if down is not None:
        return Hold(
            HoldReason.REGION_DISRUPTED,
            f"{down[0]} of {down[1]} members in region {region} do not answer at once; its "
            "shards stay until fewer do",
        )
    last = member.status.last_heartbeat_time if member.status else None
    silent_s = (now - last).total_seconds() if last is not None else math.inf
    grace_s = policy.grace_for(member)
    if silent_s < grace_s:
        why = (
            "so that its agent has fenced them first"
            if grace_s > policy.grace_s
            else "so that a shorter outage is ridden out"
        )
        return Hold(
            HoldReason.GRACE_PERIOD,
            f"no answer for {silent_s:.0f} s; its shards move once it has not answered for "
            f"{grace_s:g} s, {why}",
        )
    if policy.interval_s <= 0 or _pulled(member):
        return None
    # One eviction every interval_s, the members taken in the order they failed; members in a
    # disrupted region wait for it, not in this queue. `member` is in it whatever its Ready
    # says: its new status is the probe's, which reads as evicted until a hold is laid over
    # it, and leaving it out made two members that failed together each wait for the other.
    queue = sorted(
        (
            m
            for m in fleet
            if _failed(m)
            and not _pulled(m)
            and (m.metadata.name == name or not _evicted(m.status))
            and _disrupted([o for o in fleet if o.spec.region == m.spec.region], policy) is None
        ),
        key=_failure_order,
    )
    first = queue[0].metadata.name if queue else name
    if first != name:
        return Hold(
            HoldReason.RATE_LIMITED,
            f"evictions are spaced {policy.interval_s:g} s apart; {first} failed first",
        )
    evictions = [
        _transition(m, MemberClusterConditionType.READY)
        for m in fleet
        if m.metadata.name != name and _evicted(m.status) and not _pulled(m)
    ]
    last = max(evictions, default=NEVER)
    if last > NEVER:
        since_s = (now - last).total_seconds()
        if since_s < policy.interval_s:
            return Hold(
                HoldReason.RATE_LIMITED,
                f"evictions are spaced {policy.interval_s:g} s apart; the last one was "
                f"{since_s:.0f} s ago",
            )
    return None


def eviction_status(
    member: MemberCluster,
    status: MemberClusterStatus,
    members: Sequence[MemberCluster],
    policy: EvictionPolicy,
    now: datetime,
) -> MemberClusterStatus:
    """`status` (the probe's, for `member`) with Ready saying whether the member's shards are
    evicted: a member the probe declared failed is either evicted (Ready=False, Unreachable,
    as the probe said) or held (Ready=Unknown, a `HoldReason`). A member once evicted stays
    so until it answers; any other status is returned as it is."""
    after = member.model_copy(update={"status": status})
    if not _failed(after) or _evicted(member.status):
        return status
    hold = hold_for(after, members, policy, now)
    if hold is None:
        return status
    # Laid over the Ready it had, so that a hold that lasts keeps its transition time.
    ready = MemberClusterConditionType.READY
    previous = _condition(member.status, ready)
    conditions = [
        previous if condition.type == ready and previous is not None else condition
        for condition in status.conditions
    ]
    conditions = upsert_condition(
        conditions, ready, ConditionStatus.UNKNOWN, hold.reason.value, hold.message,
        observed_generation=member.metadata.generation, now=now,
    )  # fmt: skip
    return status.model_copy(update={"conditions": conditions})


def shards_stay(member: MemberCluster) -> bool:
    """Whether the member's shards stay on it although it does not answer now (a suspect, or
    a failure whose eviction is held): the scheduler keeps them there and sends no new ones."""
    return (
        member.metadata.deletion_timestamp is None
        and not is_duplicate(member)
        and _not_answering(member)
        and _has_status(
            member.status, MemberClusterConditionType.READY, ConditionStatus.UNKNOWN, None
        )
    )


def eviction_held(member: MemberCluster) -> HoldReason | None:
    """The reason a failed member's eviction is held, if it is."""
    ready = _condition(member.status, MemberClusterConditionType.READY)
    if ready is None or ready.status != ConditionStatus.UNKNOWN or not _failed(member):
        return None
    try:
        return HoldReason(ready.reason)
    except ValueError:
        return None
