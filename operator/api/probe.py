"""What one probe of a member cluster saw: the adapter that asks the member writes it, and the
reconcile turns it into the MemberCluster's status."""

from __future__ import annotations

from dataclasses import dataclass

from continuum.operator.api.common import ResourceAmounts


@dataclass(frozen=True)
class ProbeResult:
    """What one probe saw. `failure_reason` is None when the API server answered."""

    failure_reason: str | None = None
    message: str = ""
    kubernetes_version: str | None = None
    node_allocatable: ResourceAmounts | None = None
    node_count: int = 0
    latency_ms: float | None = None
    cluster_id: str | None = None
    # an older MemberCluster that registers the same cluster, when there is one
    duplicate_of: str | None = None
    # Reachable's reason when answered: the API server answered the probe, or (a Pull
    # member) its agent renewed its lease
    answered_reason: str = "APIServerAnswered"

    @property
    def answered(self) -> bool:
        return self.failure_reason is None
