"""A member cluster's probe result turned into its status. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from continuum.operator.api import (
    CapacitySource,
    Condition,
    ConditionStatus,
    MemberCluster,
    MemberClusterConditionType,
    MemberClusterStatus,
    ResourceAmounts,
    upsert_condition,
)


@dataclass(frozen=True)
class ProbeResult:
    """What one probe saw. `failure_reason` is None when the API server answered."""

    failure_reason: str | None = None
    message: str = ""
    kubernetes_version: str | None = None
    node_allocatable: ResourceAmounts | None = None
    node_count: int = 0
    latency_ms: float | None = None

    @property
    def answered(self) -> bool:
        return self.failure_reason is None


def probed_status(member: MemberCluster, probe: ProbeResult, now: datetime) -> MemberClusterStatus:
    status = member.status or MemberClusterStatus()
    generation = member.metadata.generation
    conditions: Sequence[Condition] = status.conditions
    reachable = probe.answered
    if reachable:
        latency = f" in {probe.latency_ms:.0f} ms" if probe.latency_ms is not None else ""
        message = f"kube-apiserver {probe.kubernetes_version} answered{latency}"
        reason = "APIServerAnswered"
    else:
        message, reason = probe.message, probe.failure_reason or "Unknown"
    conditions = upsert_condition(
        conditions, MemberClusterConditionType.REACHABLE,
        ConditionStatus.TRUE if reachable else ConditionStatus.FALSE, reason, message,
        observed_generation=generation, now=now,
    )  # fmt: skip

    if probe.node_count and probe.node_allocatable is not None:
        allocatable, source = probe.node_allocatable, CapacitySource.NODES
    elif member.spec.capacity is not None:
        allocatable, source = member.spec.capacity, CapacitySource.DECLARED
    else:
        allocatable, source = None, None
    if not reachable:
        ready, ready_reason, ready_message = False, "Unreachable", message
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
    conditions = upsert_condition(
        conditions, MemberClusterConditionType.READY,
        ConditionStatus.TRUE if ready else ConditionStatus.FALSE, ready_reason, ready_message,
        observed_generation=generation, now=now,
    )  # fmt: skip
    updates: dict[str, object] = {"conditions": conditions, "observed_generation": generation}
    if reachable:
        updates.update(
            last_heartbeat_time=now,
            kubernetes_version=probe.kubernetes_version,
            allocatable=allocatable,
            allocatable_source=source,
        )
    return status.model_copy(update=updates)
