"""MemberWork: what the hub decided one Pull member holds of one MLJob, and what the member's
agent reports back.

One object per (member, job), in the member's own namespace on the hub
(`continuum-member-<member>`), so that the member's credential can read its own work and
nothing else: a Role cannot filter Placements by member, and the Placement alone would not
do (the agent would need every tenant's MLJobs to build the manifests). The manifests are
rendered by the hub with the same builders as for Push members, so the agents never need
upgrading for a change of the builders. The operator writes the spec, the agent the status
(the status subresource keeps each to its half).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field

from continuum.operator.api.base import (
    DNS_SUBDOMAIN,
    FreeForm,
    KubeTime,
    ListMap,
    SpecModel,
    StatusModel,
    immutable,
)
from continuum.operator.api.common import API_VERSION, Condition, ObjectMeta, Resource
from continuum.operator.api.mljob import MAX_SHARDS, DisconnectAction
from continuum.operator.api.shard_resources import HASH_LENGTH, short_hash

MEMBER_NAMESPACE_PREFIX = "continuum-member-"
AGENT_NAME = "agent"
"""The agent's ServiceAccount and its Lease in the member's namespace."""
MAX_WORK_NAME = 253
AGENT_REPORT_ANNOTATION = "continuum.dev/agent-report"
"""On the agent's Lease: its report of its cluster (`AgentReport`, as JSON), renewed with the
Lease. The operator puts it in the MemberCluster's status.agent; the agent writes no
MemberCluster."""


def member_namespace(member: str) -> str:
    """The hub namespace of a Pull member: its MemberWorks, its Lease and its agent's account."""
    return f"{MEMBER_NAMESPACE_PREFIX}{member}"


def work_name(job_namespace: str, job_name: str) -> str:
    """The MemberWork's name for a job: `<namespace>.<name>`, shortened with a hash of the
    whole when it would pass the 253 characters of a name."""
    whole = f"{job_namespace}.{job_name}"
    if len(whole) <= MAX_WORK_NAME:
        return whole
    return f"{whole[: MAX_WORK_NAME - HASH_LENGTH - 1].rstrip('.-')}-{short_hash(whole)}"


def reported_resources(work: dict[str, Any] | None) -> list[dict[str, Any]]:
    """What the member holds of the work's job, as its agent last reported it: the condensed
    resources, which the shard observations read as they read a member's own."""
    if work is None:
        return []
    reported = (work.get("status") or {}).get("resources") or []
    return [
        dict(entry["observed"]) for entry in reported if isinstance(entry.get("observed"), dict)
    ]


class WorkJobReference(SpecModel):
    namespace: str = Field(min_length=1, max_length=63)
    name: str = Field(min_length=1, max_length=253)
    uid: str = Field(min_length=1, max_length=64)


class WorkResource(SpecModel):
    """One shard resource the member should hold, as the hub rendered it."""

    kind: Literal["RayJob", "RayService"]
    name: str = Field(max_length=253, pattern=DNS_SUBDOMAIN)
    shard: int = Field(ge=0, lt=MAX_SHARDS)
    epoch: int = Field(ge=0)
    """The Placement epoch at which the shard was assigned to this member."""
    on_disconnect: DisconnectAction
    manifest: FreeForm
    """The resource as the member should hold it (what `needs_update` compares)."""
    resume_checkpoint: str | None = Field(default=None, max_length=64)
    """While the member does not hold the resource yet: the newest checkpoint the shard
    reported (RFC 3339), which the copy is created with (`with_resume_checkpoint`). Only a
    create carries it, so a new checkpoint does not rewrite the work."""


class MemberWorkSpec(SpecModel):
    member: str = Field(
        max_length=253, pattern=DNS_SUBDOMAIN, json_schema_extra=immutable("member")
    )
    job_ref: WorkJobReference = Field(json_schema_extra=immutable("jobRef"))
    placement_epoch: int = Field(ge=0)
    """The Placement epoch this work was rendered from: the agent deletes a resource this work
    no longer lists only when this is at least the resource's own epoch."""
    session_epoch: int = Field(default=0, ge=0)
    """The member's status.sessionEpoch when the hub wrote this: a shard the agent fenced
    resumes only under work written in the session after its return."""
    finished: bool = False
    """The job finished: keep its resources as they are, never make them again."""
    job_deleted: bool = False
    """The job (this uid) is gone: the agent deletes what it holds of it, then reports none."""
    resources: Annotated[list[WorkResource], ListMap("kind", "name")] = Field(
        default_factory=list, max_length=MAX_SHARDS
    )


class ReportedResource(StatusModel):
    """One shard resource the member holds of the job, as its agent last saw it."""

    kind: Literal["RayJob", "RayService"]
    name: str = Field(max_length=253)
    shard: int = Field(ge=0, lt=MAX_SHARDS)
    epoch: int = Field(ge=0)
    fenced: bool = False
    observed: FreeForm
    """The resource, condensed to what the operator reads: its identity, labels, Continuum's
    annotations and KubeRay's status."""


class WorkConditionType(StrEnum):
    APPLIED = "Applied"
    """The member holds exactly what the spec lists (reasons: `WorkReason`)."""


class WorkReason(StrEnum):
    APPLIED = "Applied"
    APPLYING = "Applying"
    REFUSED = "Refused"
    """The member's API server refused a write; the message says what it said."""
    FENCED = "Fenced"
    """The agent could not renew its lease and stopped the shards that must not run twice."""


class MemberWorkStatus(StatusModel):
    observed_generation: int | None = Field(default=None, ge=0)
    """The spec generation the agent last converged to."""
    conditions: Annotated[list[Condition], ListMap("type")] = Field(
        default_factory=list, max_length=8
    )
    resources: Annotated[list[ReportedResource], ListMap("kind", "name")] = Field(
        default_factory=list, max_length=2 * MAX_SHARDS
    )
    """What the member holds of the job (its uid), listed or not."""
    report_time: KubeTime | None = None


class MemberWork(Resource):
    """One MLJob's shard resources for one Pull member (namespaced: the member's namespace)."""

    api_version: Literal["continuum.dev/v1alpha1"] = API_VERSION
    kind: Literal["MemberWork"] = "MemberWork"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: MemberWorkSpec
    status: MemberWorkStatus | None = None
