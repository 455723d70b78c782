"""A member cluster's probe result turned into its status. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from continuum.operator.api import (
    CapacitySource,
    Condition,
    ConditionStatus,
    MemberCluster,
    MemberClusterConditionType,
    MemberClusterStatus,
    upsert_condition,
)
from continuum.operator.api.probe import ProbeResult

DUPLICATE_CLUSTER = "DuplicateCluster"
API_SERVER_ANSWERED = "APIServerAnswered"
# Reachable and Ready Unknown: the member missed probes, fewer than the failure threshold.
PROBES_MISSED = "ProbesMissed"
# Ready False: the member failed (or never answered); its shards are placed elsewhere.
UNREACHABLE = "Unreachable"


def probed_status(
    member: MemberCluster, probe: ProbeResult, now: datetime, failure_threshold: int = 1
) -> MemberClusterStatus:
    """The member's status after one probe. A member that has answered before is declared
    failed (Reachable=False, Ready=False Unreachable) only once `failure_threshold` probes in a
    row went unanswered; until then it is a suspect: Reachable and Ready Unknown, reason
    ProbesMissed, its shards left where they are. The count is `missedProbes`, in the API
    server, so a restarted operator goes on counting. A member that never answered, or had
    failed already, is Reachable=False at once."""
    status = member.status or MemberClusterStatus()
    generation = member.metadata.generation
    conditions: Sequence[Condition] = status.conditions
    reachable = probe.answered
    missed = 0 if reachable else (status.missed_probes or 0) + 1
    suspect = not reachable and _answered_last(member) and missed < failure_threshold
    if reachable:
        latency = f" in {probe.latency_ms:.0f} ms" if probe.latency_ms is not None else ""
        if probe.answered_reason == API_SERVER_ANSWERED:
            message = f"kube-apiserver {probe.kubernetes_version} answered{latency}"
        else:
            # A Pull member's round trip is in its agent's report; in the message it would
            # change the status at every renewal.
            message = probe.message
        reason, reachable_status = probe.answered_reason, ConditionStatus.TRUE
    elif suspect:
        message = (
            f"{missed} of {failure_threshold} probes in a row unanswered "
            f"({probe.failure_reason}: {probe.message})"
        )
        reason, reachable_status = PROBES_MISSED, ConditionStatus.UNKNOWN
    else:
        message, reason = probe.message, probe.failure_reason or "Unknown"
        if missed > 1:
            message = f"{message} ({missed} probes in a row unanswered)"
        reachable_status = ConditionStatus.FALSE
    conditions = upsert_condition(
        conditions, MemberClusterConditionType.REACHABLE, reachable_status, reason, message,
        observed_generation=generation, now=now,
    )  # fmt: skip

    if probe.node_count and probe.node_allocatable is not None:
        allocatable, source = probe.node_allocatable, CapacitySource.NODES
    elif member.spec.capacity is not None:
        allocatable, source = member.spec.capacity, CapacitySource.DECLARED
    else:
        allocatable, source = None, None
    ready_status: ConditionStatus | None = None
    if suspect:
        ready, ready_reason, ready_status = False, PROBES_MISSED, ConditionStatus.UNKNOWN
        ready_message = "its shards stay on it, and no new ones go to it, until it answers"
    elif not reachable:
        ready, ready_reason, ready_message = False, UNREACHABLE, message
    elif probe.duplicate_of is not None:
        ready, ready_reason = False, DUPLICATE_CLUSTER
        ready_message = (
            f"MemberCluster {probe.duplicate_of} registers the same cluster (same cluster ID); "
            "this one takes no shards and is not touched while both exist"
        )
    elif allocatable is None:
        ready, ready_reason = False, "NoCapacity"
        ready_message = "the cluster has no nodes and spec.capacity declares none"
    else:
        ready, ready_reason = True, "CapacityKnown"
        ready_message = (
            f"allocatable from {probe.node_count} nodes"
            if source == CapacitySource.NODES
            else "no nodes report allocatable; using spec.capacity"
        )
    if ready_status is None:
        ready_status = ConditionStatus.TRUE if ready else ConditionStatus.FALSE
    conditions = upsert_condition(
        conditions, MemberClusterConditionType.READY, ready_status, ready_reason, ready_message,
        observed_generation=generation, now=now,
    )  # fmt: skip
    updates: dict[str, object] = {
        "conditions": conditions,
        "observed_generation": generation,
        "missed_probes": missed,
    }
    if reachable:
        updates.update(
            last_heartbeat_time=now,
            kubernetes_version=probe.kubernetes_version,
            allocatable=allocatable,
            allocatable_source=source,
            cluster_id=probe.cluster_id or status.cluster_id,
        )
    return status.model_copy(update=updates)


# What the signals loop owns of a MemberCluster's status (recovery/signals.py); the heartbeat
# applies everything else it sets.
SIGNALS_FIELDS = frozenset({"risk", "latencyToSites"})

SIGNALS_CONDITIONS = frozenset({MemberClusterConditionType.DEGRADED.value})


def heartbeat_fields(status: Mapping[str, Any]) -> dict[str, Any]:
    """The heartbeat's own part of a status in manifest form, for its server-side apply: not
    the signals' fields nor their conditions, which the status read may hold from the other
    writer and the heartbeat must neither own nor set back."""
    fields = {key: value for key, value in status.items() if key not in SIGNALS_FIELDS}
    if "conditions" in fields:
        fields["conditions"] = [
            condition
            for condition in fields["conditions"]
            if condition.get("type") not in SIGNALS_CONDITIONS
        ]
    return fields


def _condition(member: MemberCluster, kind: MemberClusterConditionType) -> Condition | None:
    conditions = member.status.conditions if member.status else []
    return next((condition for condition in conditions if condition.type == kind), None)


def _answered_last(member: MemberCluster) -> bool:
    """Whether the member counted as answering before this probe: it has answered once, and
    was not declared failed since."""
    reachable = _condition(member, MemberClusterConditionType.REACHABLE)
    return (
        member.status is not None
        and member.status.last_heartbeat_time is not None
        and reachable is not None
        and reachable.status != ConditionStatus.FALSE
    )


def is_reachable(member: MemberCluster) -> bool:
    """Only a member the operator has reached counts: a new one waits for its first probe."""
    reachable = _condition(member, MemberClusterConditionType.REACHABLE)
    return reachable is not None and reachable.status == ConditionStatus.TRUE


def is_duplicate(member: MemberCluster) -> bool:
    ready = _condition(member, MemberClusterConditionType.READY)
    return ready is not None and ready.reason == DUPLICATE_CLUSTER


def is_usable(member: MemberCluster) -> bool:
    """Whether shards may go to the member and be converged there: reachable, not a second
    registration of a cluster, and not being deleted (its deletion takes its shards away)."""
    return (
        is_reachable(member)
        and not is_duplicate(member)
        and member.metadata.deletion_timestamp is None
    )


def _registered(member: MemberCluster) -> tuple[str, str]:
    return (member.metadata.creation_timestamp or "", member.metadata.name or "")


def duplicate_of(
    member: MemberCluster, cluster_id: str | None, members: Sequence[MemberCluster]
) -> str | None:
    """The MemberCluster registered before `member` that reports the same cluster ID, if any:
    the older registration keeps the cluster, whichever of the two is probed first."""
    if not cluster_id:
        return None
    older = [
        other
        for other in members
        if other.metadata.name != member.metadata.name
        and other.status is not None
        and other.status.cluster_id == cluster_id
        and _registered(other) < _registered(member)
    ]
    return min(older, key=_registered).metadata.name if older else None


def by_cluster_id(members: Sequence[MemberCluster]) -> dict[str, list[MemberCluster]]:
    """The members that report each cluster ID: the only ones `duplicate_of` need look at, so
    that judging a fleet does not compare every member with every other."""
    found: dict[str, list[MemberCluster]] = {}
    for member in members:
        if member.status is not None and member.status.cluster_id:
            found.setdefault(member.status.cluster_id, []).append(member)
    return found


def also_registered_as(member: MemberCluster, members: Sequence[MemberCluster]) -> str | None:
    """Another MemberCluster, not being deleted, that reports the same cluster as `member`: the
    cluster stays registered under it, and so do the shard resources in it."""
    cluster_id = member.status.cluster_id if member.status else None
    if not cluster_id:
        return None
    others = sorted(
        other.metadata.name or ""
        for other in members
        if other.metadata.name != member.metadata.name
        and other.metadata.deletion_timestamp is None
        and other.status is not None
        and other.status.cluster_id == cluster_id
    )
    return others[0] if others else None


def invalid_status(
    current: Mapping[str, Any] | None, generation: int | None, errors: str, now: datetime
) -> dict[str, Any]:
    """The status of a MemberCluster whose spec the models refuse: neither Reachable nor Ready,
    reason InvalidSpec. `current` is the raw status, since it may not parse either."""
    try:
        status = MemberClusterStatus.model_validate(current or {})
    except ValueError:
        status = MemberClusterStatus()
    conditions: Sequence[Condition] = status.conditions
    for kind in (MemberClusterConditionType.REACHABLE, MemberClusterConditionType.READY):
        conditions = upsert_condition(
            conditions, kind, ConditionStatus.FALSE, "InvalidSpec", errors[:32768],
            observed_generation=generation, now=now,
        )  # fmt: skip
    return status.model_copy(
        update={"conditions": conditions, "observed_generation": generation}
    ).to_dict()


# What changes in a MemberCluster at every heartbeat and that the scheduler does not read: a
# write of these alone does not wake it (a thousand Pull members write one a second or more).
_HEARTBEAT_ONLY_STATUS = frozenset({"lastHeartbeatTime", "agent", "missedProbes"})
_CONDITION_DETAILS = frozenset({"message", "lastTransitionTime", "lastHeartbeatTime"})


def scheduled_view(body: Mapping[str, Any] | None) -> Any:
    """A MemberCluster as the scheduler sees it: all of it but its metadata's bookkeeping,
    its heartbeat times, its agent's report and its conditions' wording."""
    if body is None:
        return None
    metadata = body.get("metadata") or {}
    status = {
        key: value
        for key, value in (body.get("status") or {}).items()
        if key not in _HEARTBEAT_ONLY_STATUS
    }
    status["conditions"] = [
        {key: value for key, value in condition.items() if key not in _CONDITION_DETAILS}
        for condition in status.get("conditions") or []
    ]
    return (
        metadata.get("generation"),
        metadata.get("deletionTimestamp"),
        metadata.get("labels"),
        body.get("spec"),
        status,
    )
