"""The snapshot the scheduler decides on: sites, network, clusters, tenants, jobs, running shards.

Every type is a frozen dataclass of plain values so that a snapshot can be built from Kubernetes
objects, from a trace, or by a test builder, and so that the same snapshot always yields the same
decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

RESOURCE_NAMES: tuple[str, str, str] = ("cpu", "memory_gib", "gpu")


class Tier(StrEnum):
    EDGE = "Edge"
    CLOUD = "Cloud"


class Mode(StrEnum):
    TRAINING = "Training"
    INFERENCE = "Inference"
    FEDERATED = "Federated"


class Residency(StrEnum):
    SITE = "Site"
    REGION = "Region"
    ANY = "Any"


class MigrationReason(StrEnum):
    PROACTIVE = "Proactive"
    FAILURE = "Failure"
    REBALANCE = "Rebalance"
    PREEMPTION = "Preemption"


@dataclass(frozen=True)
class Resources:
    cpu: float = 0.0
    memory_gib: float = 0.0
    gpu: float = 0.0

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.cpu, self.memory_gib, self.gpu)

    def __post_init__(self) -> None:
        if min(self.as_tuple()) < 0:
            raise ValueError(f"resources must not be negative: {self}")


@dataclass(frozen=True)
class Site:
    name: str
    region: str


@dataclass(frozen=True)
class Link:
    """One direction of the path between two sites."""

    from_site: str
    to_site: str
    rtt_ms: float
    bandwidth_mbps: float


@dataclass(frozen=True)
class Network:
    """RTT and bandwidth between sites. A pair without a link takes the defaults."""

    links: tuple[Link, ...] = ()
    intra_site_rtt_ms: float = 1.0
    intra_site_bandwidth_mbps: float = 10_000.0
    default_rtt_ms: float = 50.0
    default_bandwidth_mbps: float = 100.0

    def link_table(self) -> dict[tuple[str, str], Link]:
        """Links by (from, to); a link given in one direction only serves both."""
        table: dict[tuple[str, str], Link] = {}
        for link in self.links:
            table.setdefault((link.to_site, link.from_site), link)
        for link in self.links:
            table[(link.from_site, link.to_site)] = link
        return table


@dataclass(frozen=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"


@dataclass(frozen=True)
class Toleration:
    """Tolerates the taints it matches, as a pod toleration does: key None matches every key
    (operator Exists without a key), value None any value (operator Exists), effect None every
    effect."""

    key: str | None
    value: str | None = None
    effect: str | None = None

    def tolerates(self, taint: Taint) -> bool:
        return (
            (self.key is None or self.key == taint.key)
            and (self.value is None or self.value == taint.value)
            and (self.effect is None or self.effect == taint.effect)
        )


# Effects that keep new shards off a cluster; PreferNoSchedule only matters to the scorer of a
# single cluster's nodes, which is below the level we decide at.
BLOCKING_TAINT_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


@dataclass(frozen=True)
class Cluster:
    """A member cluster.

    `allocated` is everything the cluster reports as in use, including the shards of `running`
    that sit on it: the operator observes allocation, it does not compute it.
    """

    name: str
    tier: Tier
    site: str
    capacity: Resources
    allocated: Resources = Resources()
    cost_per_hour: float = 0.0
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    risk: float = 0.0
    healthy: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.risk <= 1.0:
            raise ValueError(f"cluster {self.name}: risk {self.risk} is outside 0..1")


@dataclass(frozen=True)
class Tenant:
    name: str
    weight: float = 1.0
    quota: Resources | None = None

    def __post_init__(self) -> None:
        if self.weight <= 0:
            raise ValueError(f"tenant {self.name}: weight must be positive")


@dataclass(frozen=True)
class DataSource:
    name: str
    site: str
    rate_mbps: float = 0.0
    residency: Residency = Residency.ANY


@dataclass(frozen=True)
class Job:
    """An MLJob as the scheduler sees it.

    Shard mapping:
    - Training and Inference: all shards are alike; each reads every data source, at
      rate_mbps / shards from each, and every source's residency applies to every shard.
    - Federated: shard i (0 <= i < len(data)) reads data[i] alone, at its full rate, under its
      residency; the last shard, index len(data), is the aggregator, which reads no raw data and
      runs in the Cloud tier. So `shards` must equal len(data) + 1.
    """

    key: str
    tenant: str
    demand: Resources
    shards: int = 1
    min_available: int | None = None
    mode: Mode = Mode.TRAINING
    priority: int = 0
    data: tuple[DataSource, ...] = ()
    latency_slo_ms: float | None = None
    deadline_s: float | None = None
    cluster_selector: Mapping[str, str] = field(default_factory=dict)
    allowed_tiers: tuple[Tier, ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    risk_threshold: float | None = None
    proactive: bool = True
    """Whether the job's running shards move off a cluster whose risk passes its threshold
    (False: they stay until the cluster fails; new shards still avoid risky clusters)."""
    submit_time_s: float = 0.0
    request_kb: float = 16.0
    service_ms: float = 2.0

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ValueError(f"job {self.key}: shards must be at least 1")
        if self.min_available is not None and not 0 <= self.min_available <= self.shards:
            raise ValueError(f"job {self.key}: min_available must be within 0..shards")
        if self.mode is Mode.FEDERATED and self.shards != len(self.data) + 1:
            raise ValueError(
                f"job {self.key}: a Federated job has one shard per data source plus the "
                f"aggregator, so {len(self.data) + 1} shards, not {self.shards}"
            )

    @property
    def gang_size(self) -> int:
        return self.shards if self.min_available is None else self.min_available


@dataclass(frozen=True)
class Departure:
    """A cluster a shard was moved off because it was failing or about to (Failure,
    Proactive), and when (seconds, as `Snapshot.now_s`)."""

    cluster: str
    at_s: float


@dataclass(frozen=True)
class RunningShard:
    job_key: str
    shard_index: int
    cluster: str
    departures: tuple[Departure, ...] = ()
    """Where it recently left for risk or failure: a rebalance does not take it back there
    within `PolicyConfig.return_cooldown_s`, so that a flapping link does not make it
    ping-pong."""
    arrived_at_s: float | None = None
    """When a move (of any reason) last brought it to `cluster` (None: placed there, never
    moved): it is not rebalanced again within `PolicyConfig.rebalance_min_dwell_s`."""


@dataclass(frozen=True)
class Snapshot:
    sites: tuple[Site, ...]
    clusters: tuple[Cluster, ...]
    jobs: tuple[Job, ...] = ()
    tenants: tuple[Tenant, ...] = ()
    running: tuple[RunningShard, ...] = ()
    network: Network = Network()
    now_s: float = 0.0


@dataclass(frozen=True)
class Decision:
    """A shard placed this cycle. `score` is its objective cost there: lower is better."""

    job_key: str
    shard_index: int
    cluster: str
    score: float
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Unschedulable:
    job_key: str
    reason: str


@dataclass(frozen=True)
class Preemption:
    job_key: str
    shard_index: int
    cluster: str
    reason: str


@dataclass(frozen=True)
class Migration:
    job_key: str
    shard_index: int
    from_cluster: str
    to_cluster: str
    reason: MigrationReason
    detail: str = ""


@dataclass(frozen=True)
class CycleTiming:
    total_ms: float
    filter_ms: float = 0.0
    score_ms: float = 0.0
    assign_ms: float = 0.0


@dataclass(frozen=True)
class CycleResult:
    policy: str
    decisions: tuple[Decision, ...] = ()
    unschedulable: tuple[Unschedulable, ...] = ()
    preemptions: tuple[Preemption, ...] = ()
    migrations: tuple[Migration, ...] = ()
    timing: CycleTiming = CycleTiming(total_ms=0.0)

    def placement(self) -> dict[tuple[str, int], str]:
        """(job key, shard index) -> cluster for every shard placed or moved this cycle."""
        return {(d.job_key, d.shard_index): d.cluster for d in self.decisions}
