"""Placement: where each shard of one MLJob runs, and why. Written by the operator; the audit."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from continuum.operator.api.base import (
    DNS_SUBDOMAIN,
    KubeTime,
    ListMap,
    ListSet,
    Rule,
    SpecModel,
    StatusModel,
    immutable,
)
from continuum.operator.api.common import API_VERSION, Condition, ObjectMeta, Resource
from continuum.operator.api.mljob import MAX_SHARDS

MAX_MIGRATIONS = 100
"""The operator keeps the newest migrations; older ones are in the Events."""

ClusterName = Annotated[str, StringConstraints(max_length=253, pattern=DNS_SUBDOMAIN)]
Reason = Annotated[str, StringConstraints(max_length=1024)]


class JobReference(SpecModel):
    """The MLJob, in the Placement's namespace."""

    name: str = Field(min_length=1, max_length=253)
    uid: str | None = Field(default=None, max_length=64)


class Decision(SpecModel):
    """One shard's cluster, and why this one rather than the others."""

    shard: int = Field(ge=0, lt=MAX_SHARDS)
    cluster: ClusterName
    score: float = Field(allow_inf_nan=False)
    reasons: list[Reason] = Field(default_factory=list, max_length=32)
    """Sentences for people: why this cluster, and why not the others."""
    epoch: int | None = Field(default=None, ge=0)
    """The Placement epoch at which the shard was assigned to this cluster. Its resources carry
    this one, not the current epoch, so a change to another shard does not restart this one."""


class MigrationReason(StrEnum):
    PROACTIVE = "Proactive"
    """The source cluster's risk crossed the job's riskThreshold."""
    FAILURE = "Failure"
    REBALANCE = "Rebalance"
    PREEMPTION = "Preemption"


class Migration(SpecModel):
    """A shard moved from one cluster to another."""

    shard: int = Field(ge=0, lt=MAX_SHARDS)
    from_cluster: ClusterName = Field(alias="from")
    to_cluster: ClusterName = Field(alias="to")
    reason: MigrationReason
    time: KubeTime

    rules = (
        Rule(
            "to",
            "a migration's from and to must differ",
            lambda migration: migration.from_cluster != migration.to_cluster,
            cel="self.from != self.to",
        ),
    )


def _epoch_never_decreases() -> dict[str, Any]:
    return {
        "x-kubernetes-validations": [
            {"rule": "self >= oldSelf", "message": "epoch must not decrease"},
        ]
    }


class PlacementSpec(SpecModel):
    job_ref: JobReference = Field(json_schema_extra=immutable("jobRef"))
    epoch: int = Field(ge=0, json_schema_extra=_epoch_never_decreases())
    """Increases on every change of decisions."""
    decisions: Annotated[list[Decision], ListMap("shard")] = Field(
        default_factory=list, max_length=MAX_SHARDS
    )
    """Where each shard runs, keyed by shard."""
    migrations: list[Migration] = Field(default_factory=list, max_length=MAX_MIGRATIONS)
    """Oldest first."""


class ApplyState(StrEnum):
    PENDING = "Pending"
    APPLIED = "Applied"
    FAILED = "Failed"
    UNREACHABLE = "Unreachable"


class ClusterApplyStatus(StatusModel):
    """How far one member cluster got in applying this Placement."""

    cluster: str = Field(max_length=253)
    state: ApplyState
    applied_epoch: int | None = Field(default=None, ge=0)
    shards: Annotated[list[int], ListSet()] = Field(default_factory=list, max_length=MAX_SHARDS)
    message: str | None = Field(default=None, max_length=1024)
    last_update_time: KubeTime | None = None


class PlacementConditionType(StrEnum):
    APPLIED = "Applied"
    """Every member cluster holds the shard resources of the current epoch."""


class FederationStatus(StatusModel):
    """Where a Federated job's aggregator can be reached: what its participants were given."""

    aggregator_shard: int = Field(ge=0, lt=MAX_SHARDS)
    cluster: str = Field(max_length=253)
    address: str = Field(max_length=300)
    """`host:port` of the aggregator's Ray head, as participants dial it."""
    since: KubeTime
    """When the aggregator was first seen at this address."""


class PlacementStatus(StatusModel):
    clusters: Annotated[list[ClusterApplyStatus], ListMap("cluster")] = Field(
        default_factory=list, max_length=MAX_SHARDS
    )
    applied_epoch: int | None = Field(default=None, ge=0)
    """The newest epoch applied in every member cluster."""
    conditions: Annotated[list[Condition], ListMap("type")] = Field(
        default_factory=list, max_length=32
    )
    observed_generation: int | None = Field(default=None, ge=0)
    federation: FederationStatus | None = None
    """A Federated job's aggregator address, once its head pod has one."""


class Placement(Resource):
    """The placement of one MLJob's shards (namespaced, owned by the MLJob)."""

    api_version: Literal["continuum.dev/v1alpha1"] = API_VERSION
    kind: Literal["Placement"] = "Placement"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: PlacementSpec
    status: PlacementStatus | None = None
