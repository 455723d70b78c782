"""MLJob: an ML job whose Ray shards Continuum places across edge and cloud member clusters."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from continuum.operator.api.base import (
    COMMAND_LINE,
    DNS_SUBDOMAIN,
    IMAGE_REFERENCE,
    LABEL_VALUE,
    PLAIN_TEXT,
    URI,
    FreeForm,
    KubeTime,
    ListMap,
    ListSet,
    Rule,
    SpecModel,
    StatusModel,
    immutable,
)
from continuum.operator.api.common import (
    API_VERSION,
    Condition,
    LabelSelector,
    ObjectMeta,
    Resource,
    Tier,
    Toleration,
)
from continuum.operator.api.quantity import Quantity

MAX_SHARDS = 256
MAX_DATA_SOURCES = 64
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
IMPORT_PATH = rf"^{_IDENTIFIER}(\.{_IDENTIFIER})*[.:]{_IDENTIFIER}$"
"""What Ray Serve imports: module:attribute or module.attribute, e.g. detector.serve:app."""


class JobMode(StrEnum):
    TRAINING = "Training"
    INFERENCE = "Inference"
    FEDERATED = "Federated"
    """One shard per data site, aggregated in the cloud."""


class Residency(StrEnum):
    """Where a data source's raw data may be processed."""

    SITE = "Site"
    REGION = "Region"
    ANY = "Any"


class ShardResources(SpecModel):
    """What one shard needs."""

    cpu: Quantity
    """Cores, e.g. "500m" or "4"."""
    memory: Quantity
    """Bytes, e.g. "8Gi"."""
    gpu: Quantity = Quantity.parse(0)
    """Devices; may be fractional, e.g. "0.5"."""


class Shards(SpecModel):
    """How the job is cut into shards, each a Ray cluster in one member cluster."""

    count: int = Field(ge=1, le=MAX_SHARDS)
    """How many shards."""
    min_available: int | None = Field(default=None, ge=1, le=MAX_SHARDS)
    """Gang size: the job starts only when this many shards can be placed. Defaults to count."""
    resources: ShardResources

    rules = (
        Rule(
            "minAvailable",
            "shards.minAvailable must not exceed shards.count",
            lambda shards: shards.min_available is None or shards.min_available <= shards.count,
            cel="!has(self.minAvailable) || self.minAvailable <= self.count",
        ),
    )

    @property
    def gang_size(self) -> int:
        return self.count if self.min_available is None else self.min_available


class RaySpec(SpecModel):
    """The Ray program each shard runs."""

    image: str = Field(min_length=1, max_length=1024, pattern=IMAGE_REFERENCE)
    """The container image of the Ray head and workers, e.g. rayproject/ray:2.50.0."""
    entrypoint: str = Field(min_length=1, max_length=8192, pattern=COMMAND_LINE)
    """The command of a RayJob (Training, Federated), or the Ray Serve import path (Inference)."""
    runtime_env: FreeForm | None = None
    """Ray's runtime_env, passed through unchecked."""
    workers_per_shard: int = Field(default=1, ge=0, le=1024)
    """Ray worker pods in each shard's cluster, besides its head."""


class DataSource(SpecModel):
    """Data the job reads, where it is produced, and where it may be processed."""

    name: str = Field(min_length=1, max_length=63, pattern=LABEL_VALUE)
    """Unique within the job."""
    site: str | None = Field(default=None, max_length=63, pattern=LABEL_VALUE)
    """The site that produces the data; required unless residency is Any."""
    rate_mbps: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """How fast the data arrives, in megabits per second."""
    residency: Residency = Residency.ANY

    rules = (
        Rule(
            "site",
            "site is required when residency is Site or Region",
            lambda source: source.residency == Residency.ANY or source.site is not None,
            cel="!has(self.residency) || self.residency == 'Any' || has(self.site)",
        ),
    )


class Objectives(SpecModel):
    """What the job must achieve; the scheduler scores clusters against it."""

    latency_p99_ms: int | None = Field(default=None, ge=1, le=3_600_000)
    """Inference: the 99th percentile latency to the data sites, in milliseconds."""
    latency_opt_out_reason: str | None = Field(
        default=None, min_length=1, max_length=1024, pattern=PLAIN_TEXT
    )
    """Inference without a latency objective must say why here (e.g. "batch scoring")."""
    deadline_seconds: int | None = Field(default=None, ge=1)
    max_cost_per_hour: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    rules = (
        Rule(
            "latencyOptOutReason",
            "set objectives.latencyP99Ms or objectives.latencyOptOutReason, not both",
            lambda objectives: (
                objectives.latency_p99_ms is None or objectives.latency_opt_out_reason is None
            ),
            cel="!has(self.latencyP99Ms) || !has(self.latencyOptOutReason)",
        ),
    )


class SpreadDomain(StrEnum):
    CLUSTER = "Cluster"
    SITE = "Site"
    REGION = "Region"


class Spread(SpecModel):
    """Caps how many of the job's shards share one failure domain."""

    domain: SpreadDomain = SpreadDomain.CLUSTER
    max_shards_per_domain: int = Field(ge=1, le=MAX_SHARDS)


class PlacementPolicy(SpecModel):
    """Constraints on where shards may go."""

    allowed_tiers: Annotated[list[Tier], ListSet()] = Field(default_factory=list, max_length=2)
    """Empty allows every tier."""
    cluster_selector: LabelSelector | None = None
    """Matched against MemberCluster spec.labels."""
    spread: Spread | None = None
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    """Taints of MemberClusters that the shards accept."""


class Checkpoint(SpecModel):
    uri: str = Field(max_length=2048, pattern=URI)
    """Where checkpoints go, e.g. s3://bucket/job."""
    interval_seconds: int = Field(default=300, ge=1, le=604_800)


class Proactive(SpecModel):
    """Migrate shards away from a member cluster before it fails."""

    enabled: bool = False
    risk_threshold: float = Field(default=0.7, ge=0, le=1)
    """Migrate when the cluster's risk score reaches this value."""


class DisconnectAction(StrEnum):
    """What a Pull member's agent does with a shard while it cannot renew its lease."""

    FENCE = "Fence"
    """Stops it after the member's fenceAfterSeconds, so that it never runs twice; it resumes
    in place if the member returns before its shards are moved."""
    KEEP_RUNNING = "KeepRunning"
    """Keeps it running through the disconnection (edge autonomy); if its shards are moved
    meanwhile, two copies run until the member returns."""


class FaultTolerance(SpecModel):
    checkpoint: Checkpoint | None = None
    max_restarts: int = Field(default=3, ge=0, le=1000)
    """Restarts of one shard before the job fails."""
    proactive: Proactive = Field(default_factory=Proactive)
    on_disconnect: DisconnectAction | None = None
    """On Pull members: Fence (the default for Training and Federated) or KeepRunning (the
    default, and the only choice, for Inference)."""


def _declares_latency(spec: MLJobSpec) -> bool:
    objectives = spec.objectives
    return objectives is not None and (
        objectives.latency_p99_ms is not None or objectives.latency_opt_out_reason is not None
    )


class MLJobSpec(SpecModel):
    mode: JobMode = Field(json_schema_extra=immutable("mode"))
    """Training, Inference, or Federated (one shard per data site, aggregated in the cloud)."""
    tenant: str = Field(
        max_length=253, pattern=DNS_SUBDOMAIN, json_schema_extra=immutable("tenant")
    )
    """The Tenant whose weight and quota the job uses."""
    priority: int = Field(default=0, ge=0, le=1000)
    """Higher runs first and may preempt lower, within the tenant's fair share."""
    shards: Shards
    ray: RaySpec
    data: Annotated[list[DataSource], ListMap("name")] = Field(
        default_factory=list, max_length=MAX_DATA_SOURCES
    )
    """The data the job reads, keyed by name."""
    objectives: Objectives | None = None
    placement: PlacementPolicy | None = None
    fault_tolerance: FaultTolerance | None = None
    suspend: bool = False
    """Removes the shard resources from the members and keeps the job."""

    rules = (
        Rule(
            "objectives.latencyP99Ms",
            "Inference jobs need objectives.latencyP99Ms, "
            "or objectives.latencyOptOutReason to say why not",
            lambda spec: spec.mode != JobMode.INFERENCE or _declares_latency(spec),
            cel="self.mode != 'Inference' || (has(self.objectives) && "
            "(has(self.objectives.latencyP99Ms) || has(self.objectives.latencyOptOutReason)))",
        ),
        Rule(
            "faultTolerance.onDisconnect",
            "an Inference shard keeps serving through a disconnection: onDisconnect Fence is "
            "for Training and Federated jobs",
            lambda spec: (
                spec.mode != JobMode.INFERENCE
                or spec.fault_tolerance is None
                or spec.fault_tolerance.on_disconnect != DisconnectAction.FENCE
            ),
            cel="self.mode != 'Inference' || !has(self.faultTolerance) || "
            "!has(self.faultTolerance.onDisconnect) || "
            "self.faultTolerance.onDisconnect != 'Fence'",
        ),
        Rule(
            "data",
            "Federated jobs need at least one data source, each with a site",
            lambda spec: (
                spec.mode != JobMode.FEDERATED
                or (bool(spec.data) and all(source.site is not None for source in spec.data))
            ),
            cel="self.mode != 'Federated' || "
            "(has(self.data) && size(self.data) > 0 && self.data.all(d, has(d.site)))",
        ),
        Rule(
            "ray.entrypoint",
            "an Inference job's ray.entrypoint is the Ray Serve import path, module:attribute "
            "or module.attribute (e.g. detector.serve:app)",
            lambda spec: (
                spec.mode != JobMode.INFERENCE
                or re.fullmatch(IMPORT_PATH, spec.ray.entrypoint) is not None
            ),
            cel=f"self.mode != 'Inference' || self.ray.entrypoint.matches(r'{IMPORT_PATH}')",
        ),
        Rule(
            "shards.count",
            "a Federated job has one shard per data source plus the cloud aggregator, "
            "so shards.count must be the number of data sources + 1",
            lambda spec: (
                spec.mode != JobMode.FEDERATED
                or not spec.data
                or spec.shards.count == len(spec.data) + 1
            ),
            cel="self.mode != 'Federated' || !has(self.data) || size(self.data) == 0 || "
            "self.shards.count == size(self.data) + 1",
        ),
    )

    @property
    def data_sites(self) -> list[str]:
        """The sites that produce the job's data, each once, in order."""
        return list(dict.fromkeys(source.site for source in self.data if source.site is not None))


class MLJobPhase(StrEnum):
    PENDING = "Pending"
    """Not yet admitted, or admitted but unschedulable (see the Scheduled condition)."""
    ADMITTED = "Admitted"
    PLACED = "Placed"
    RUNNING = "Running"
    RECOVERING = "Recovering"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"

    @property
    def is_finished(self) -> bool:
        """Succeeded or Failed: a phase the job does not leave."""
        return is_finished_phase(self)


_FINISHED_PHASES = frozenset({MLJobPhase.SUCCEEDED, MLJobPhase.FAILED})


def is_finished_phase(phase: object) -> bool:
    """Whether a phase as stored (a string in an object's body, or absent) is a finished one."""
    # A set of the members, not a tuple of class attributes: every cycle asks it of every job.
    return isinstance(phase, str) and phase in _FINISHED_PHASES


class MLJobConditionType(StrEnum):
    ADMITTED = "Admitted"
    """The spec passed validation and the tenant exists."""
    SCHEDULED = "Scheduled"
    """False with reason Unschedulable carries the scheduler's sentence as message."""
    READY = "Ready"
    """At least shards.minAvailable shards are running."""
    SHARDS_UNAVAILABLE = "ShardsUnavailable"
    """True while a shard's member cluster cannot be reached or refuses its resource: the
    message names each such shard, its member and why."""


class ShardState(StrEnum):
    PENDING = "Pending"
    STARTING = "Starting"
    RUNNING = "Running"
    MIGRATING = "Migrating"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


class ShardStatus(StatusModel):
    index: int = Field(ge=0, lt=MAX_SHARDS)
    cluster: str | None = Field(default=None, max_length=253)
    """The member cluster it runs in; empty while unplaced."""
    state: ShardState = ShardState.PENDING
    restarts: int = Field(default=0, ge=0)
    last_checkpoint: KubeTime | None = None
    message: str | None = Field(default=None, max_length=1024)


class PlacementReference(StatusModel):
    name: str = Field(max_length=253)
    epoch: int | None = Field(default=None, ge=0)


ShortText = Annotated[str, StringConstraints(max_length=253)]


class MLJobStatus(StatusModel):
    phase: MLJobPhase | None = None
    """Pending, Admitted, Placed, Running, Recovering, Succeeded, Failed or Suspended."""
    conditions: Annotated[list[Condition], ListMap("type")] = Field(
        default_factory=list, max_length=32
    )
    placement_ref: PlacementReference | None = None
    shards: Annotated[list[ShardStatus], ListMap("index")] = Field(
        default_factory=list, max_length=MAX_SHARDS
    )
    observed_generation: int | None = Field(default=None, ge=0)
    ready_shards: int | None = Field(default=None, ge=0)
    total_shards: int | None = Field(default=None, ge=0)
    ready: str | None = Field(default=None, max_length=16)
    """readyShards/totalShards, for the printer column."""
    clusters: str | None = Field(default=None, max_length=4096)
    """The member clusters in use, comma-separated, for the printer column."""
    pending_cleanup: Annotated[list[ShortText], ListSet()] = Field(
        default_factory=list, max_length=256
    )
    """Member clusters still holding shard resources to delete (unreachable when last tried)."""

    def summarized(self, total_shards: int) -> MLJobStatus:
        """This status with the printer-column fields recomputed from shards; running is ready."""
        ready = sum(1 for shard in self.shards if shard.state == ShardState.RUNNING)
        clusters = sorted({shard.cluster for shard in self.shards if shard.cluster})
        return self.model_copy(
            update={
                "ready_shards": ready,
                "total_shards": total_shards,
                "ready": f"{ready}/{total_shards}",
                "clusters": ",".join(clusters),
            }
        )


class MLJob(Resource):
    """A user's ML job (namespaced)."""

    api_version: Literal["continuum.dev/v1alpha1"] = API_VERSION
    kind: Literal["MLJob"] = "MLJob"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: MLJobSpec
    status: MLJobStatus | None = None

    # The job's lifecycle, said once here for the scheduler, the reconcile and the controller.

    @property
    def is_finished(self) -> bool:
        return self.status is not None and is_finished_phase(self.status.phase)

    @property
    def is_stopping(self) -> bool:
        """Suspended or being deleted: its shard resources must go, and none are made."""
        return self.spec.suspend or self.metadata.deletion_timestamp is not None

    @property
    def wants_no_shards(self) -> bool:
        """The scheduler places no shard of it: suspended, being deleted, or finished. A
        finished job keeps the shard resources it finished in, whose status it reports."""
        return self.is_stopping or self.is_finished
