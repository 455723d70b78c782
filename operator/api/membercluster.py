"""MemberCluster: a Kubernetes cluster at the edge or in the cloud that runs shards."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from continuum.operator.api.base import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    LABEL_VALUE,
    KubeTime,
    ListMap,
    Rule,
    SpecModel,
    StatusModel,
    immutable,
)
from continuum.operator.api.common import (
    API_VERSION,
    Condition,
    Labels,
    ObjectMeta,
    Resource,
    ResourceAmounts,
    Taint,
    Tier,
)

DEFAULT_SECRET_NAMESPACE = "continuum-system"

Score = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Milliseconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class SecretKeyReference(SpecModel):
    """A key of a Secret holding a kubeconfig for the member cluster."""

    name: str = Field(max_length=253, pattern=DNS_SUBDOMAIN)
    namespace: str = Field(default=DEFAULT_SECRET_NAMESPACE, max_length=63, pattern=DNS_LABEL)
    key: str = Field(default="kubeconfig", max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class MemberMode(StrEnum):
    PUSH = "Push"
    """The operator reaches the member's API server with the kubeconfig in its Secret."""
    PULL = "Pull"
    """The member's agent dials out to the hub: it reads the work decided for its member,
    applies it there, reports back and renews its lease. For members behind NAT."""


class AgentTiming(SpecModel):
    """How a Pull member's agent keeps its lease, and when it fences its shards."""

    lease_duration_seconds: int = Field(default=15, ge=5, le=300)
    """The hub declares the member lost when its lease has not been renewed for this long."""
    renew_interval_seconds: int = Field(default=5, ge=1, le=60)
    fence_after_seconds: int = Field(default=15, ge=5, le=3600)
    """An agent that has not renewed its lease for this long stops the shards of the jobs that
    must not run twice; the hub re-places them only after the lease, this and a margin."""

    rules = (
        Rule(
            "renewIntervalSeconds",
            "renewIntervalSeconds must be at most half of leaseDurationSeconds",
            lambda timing: timing.renew_interval_seconds * 2 <= timing.lease_duration_seconds,
            cel="self.renewIntervalSeconds * 2 <= self.leaseDurationSeconds",
        ),
    )


class MemberClusterSpec(SpecModel):
    tier: Tier
    """Edge or Cloud."""
    site: str = Field(max_length=63, pattern=LABEL_VALUE)
    """The site the cluster is at; MLJob data sources and latencies refer to it."""
    region: str = Field(max_length=63, pattern=LABEL_VALUE)
    mode: MemberMode = Field(default=MemberMode.PUSH, json_schema_extra=immutable("mode"))
    """Push (the operator dials the member) or Pull (the member's agent dials the hub)."""
    kubeconfig_secret_ref: SecretKeyReference | None = None
    """The Secret with a kubeconfig the operator uses to reach the cluster (Push only)."""
    agent: AgentTiming | None = None
    """The agent's lease and fencing times (Pull only; the defaults when absent)."""
    capacity: ResourceAmounts | None = None
    """Declared capacity, used when the cluster's nodes cannot be read."""
    cost_per_hour: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """What a whole-cluster hour costs, in the unit of MLJob objectives.maxCostPerHour."""
    labels: Labels = Field(default_factory=dict, max_length=64)
    """Matched by MLJob spec.placement.clusterSelector."""
    taints: Annotated[list[Taint], ListMap("key", "effect")] = Field(
        default_factory=list, max_length=32
    )

    rules = (
        Rule(
            "kubeconfigSecretRef",
            "Push members need spec.kubeconfigSecretRef",
            lambda spec: spec.mode == MemberMode.PULL or spec.kubeconfig_secret_ref is not None,
            cel="(has(self.mode) && self.mode == 'Pull') || has(self.kubeconfigSecretRef)",
        ),
        Rule(
            "kubeconfigSecretRef",
            "Pull members have no kubeconfig: their agent dials the hub",
            lambda spec: spec.mode != MemberMode.PULL or spec.kubeconfig_secret_ref is None,
            cel="!has(self.mode) || self.mode != 'Pull' || !has(self.kubeconfigSecretRef)",
        ),
        Rule(
            "agent",
            "spec.agent is for Pull members",
            lambda spec: spec.mode == MemberMode.PULL or spec.agent is None,
            cel="(has(self.mode) && self.mode == 'Pull') || !has(self.agent)",
        ),
    )

    @property
    def timing(self) -> AgentTiming:
        """The agent's times, the defaults where spec.agent is absent."""
        return self.agent or AgentTiming()


class MemberClusterConditionType(StrEnum):
    REACHABLE = "Reachable"
    """The operator reached the cluster's API server at the last heartbeat; Unknown while
    probes go unanswered but fewer than the failure threshold (reason ProbesMissed)."""
    READY = "Ready"
    """Reachable, and able to take shards; Unknown while its shards stay on it although it
    does not answer (a suspect, or a failure whose eviction is held)."""
    DEGRADED = "Degraded"
    """Running, but its risk or latency is elevated (reasons: `DegradedReason`)."""


class DegradedReason(StrEnum):
    """Why the Degraded condition is what it is, as the link signals judge the site's link."""

    PROBES_UNANSWERED = "ProbesUnanswered"
    """The hub's probes of the site go unanswered, and no other site's probes say more."""
    SITE_UNREACHABLE = "SiteUnreachable"
    """Neither the hub's probes nor those of the other sites reach the site: the site, or its
    own link, is out. Not the hub's network, so it does not count toward a fleet disruption."""
    UNREACHABLE_FROM_HUB = "UnreachableFromHub"
    """The hub's probes go unanswered, but other sites reach the site: the hub's path to it
    fails, not the site."""
    LINK_DEGRADING = "LinkDegrading"
    PACKET_LOSS = "PacketLoss"
    LINK_HEALTHY = "LinkHealthy"
    NO_PROBES = "NoProbes"
    SIGNALS_UNAVAILABLE = "SignalsUnavailable"


class CapacitySource(StrEnum):
    NODES = "Nodes"
    DECLARED = "Declared"


class Risk(StatusModel):
    """How likely the cluster is to fail soon, and the signals behind the estimate."""

    score: Score
    signals: dict[str, float] = Field(default_factory=dict, max_length=32)
    """Signal name to value, e.g. heartbeatMissRatio or packetLoss."""


class AgentReport(StatusModel):
    """What a Pull member's agent says of its cluster: the probe's findings, from inside. The
    agent sends it on its Lease; the operator writes it here."""

    version: str | None = Field(default=None, max_length=64)
    """The agent's own version."""
    kubernetes_version: str | None = Field(default=None, max_length=64)
    cluster_id: str | None = Field(default=None, max_length=128, alias="clusterID")
    nodes_ready: int | None = Field(default=None, ge=0)
    nodes: int | None = Field(default=None, ge=0)
    allocatable: ResourceAmounts | None = None
    """Summed over the cluster's Ready, schedulable nodes."""
    hub_rtt_ms: Milliseconds | None = None
    """The round trip of the agent's last lease renewal."""
    fenced_shards: int = Field(default=0, ge=0)
    """Shards the agent has stopped because it could not renew its lease."""
    awaiting_session: int | None = Field(default=None, ge=0)
    """The oldest session its fenced shards were fenced under: they resume only under work of
    a later one, so the hub starts one if it has not (its Lease never seemed to expire)."""
    report_time: KubeTime | None = None


class MemberClusterStatus(StatusModel):
    conditions: Annotated[list[Condition], ListMap("type")] = Field(
        default_factory=list, max_length=32
    )
    allocatable: ResourceAmounts | None = None
    allocatable_source: CapacitySource | None = None
    """Whether allocatable was summed from the cluster's nodes or taken from spec.capacity."""
    allocated: ResourceAmounts | None = None
    """What Continuum's shards hold in the cluster."""
    latency_to_sites: dict[str, Milliseconds] = Field(default_factory=dict, max_length=256)
    """Round-trip time from this cluster to each site, in milliseconds."""
    risk: Risk | None = None
    last_heartbeat_time: KubeTime | None = None
    missed_probes: int | None = Field(default=None, ge=0)
    """Probes in a row the member has not answered, since its last answer: the operator
    declares it failed (Reachable=False) when they reach its failure threshold."""
    kubernetes_version: str | None = Field(default=None, max_length=64)
    cluster_id: str | None = Field(default=None, max_length=128, alias="clusterID")
    """Which cluster answers: the UID of its kube-system namespace (as KEP-2149's cluster ID),
    or a digest of its server and CA where that namespace cannot be read. Two MemberClusters
    with one ID are one cluster registered twice."""
    observed_generation: int | None = Field(default=None, ge=0)
    session_epoch: int | None = Field(default=None, ge=0)
    """Pull members: counts the agent's returns after its lease went stale. Work written for an
    earlier session does not restart a shard the agent fenced."""
    agent: AgentReport | None = None
    """Pull members: the agent's last report, as its Lease carried it."""


class MemberCluster(Resource):
    """A member cluster (cluster-scoped)."""

    api_version: Literal["continuum.dev/v1alpha1"] = API_VERSION
    kind: Literal["MemberCluster"] = "MemberCluster"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: MemberClusterSpec
    status: MemberClusterStatus | None = None
