"""The hub's side of a Pull member, pure: the MemberWork that carries a job's shard resources
to the member's agent, what the agent's report says the member holds, and the member's
liveness judged from its Lease instead of a probe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from continuum.operator.api import (
    ApplyState,
    Condition,
    ConditionStatus,
    DisconnectAction,
    JobMode,
    MemberCluster,
    MemberClusterConditionType,
    MLJob,
)
from continuum.operator.api.membercluster import AgentReport, MemberClusterStatus
from continuum.operator.api.probe import ProbeResult
from continuum.operator.api.shard_resources import SHARD_LABELS, job_label_value
from continuum.operator.api.work import (
    AGENT_NAME,
    MemberWorkSpec,
    WorkJobReference,
    WorkResource,
    member_namespace,
    reported_resources,
    work_name,
)
from continuum.operator.reconcile.handoff import shard_of
from continuum.operator.reconcile.shards import ClusterOutcome, Manifest, resume_checkpoint

Body = dict[str, Any]
MEMBER_LABEL = "continuum.dev/member"
AGENT_NEVER_CONNECTED = "AgentNeverConnected"
LEASE_EXPIRED = "LeaseExpired"
LEASE_RENEWED = "LeaseRenewed"


def disconnect_action(job: MLJob) -> DisconnectAction:
    """What the agent does with the job's shards while it cannot renew its lease: as
    spec.faultTolerance.onDisconnect says, else an Inference shard keeps serving (edge
    autonomy) and a Training or Federated one, which must not run twice, is fenced."""
    chosen = job.spec.fault_tolerance.on_disconnect if job.spec.fault_tolerance else None
    if chosen is not None:
        return chosen
    if job.spec.mode == JobMode.INFERENCE:
        return DisconnectAction.KEEP_RUNNING
    return DisconnectAction.FENCE


def _epoch(manifest: Mapping[str, Any]) -> int:
    labels = manifest.get("metadata", {}).get("labels") or {}
    return int(labels.get(SHARD_LABELS.epoch, 0))


def work_spec(
    job: MLJob,
    member: str,
    desired: Sequence[Manifest],
    reported: Sequence[Manifest],
    placement_epoch: int,
    session_epoch: int,
) -> MemberWorkSpec:
    """The work for `member`: the resources it should hold, as push mode would converge
    them. A resource the member does not hold yet carries the checkpoint its copy resumes
    from; once it holds it, that is left out, so a new checkpoint does not rewrite the work."""
    held = {(item.get("kind"), item.get("metadata", {}).get("name")) for item in reported}
    action = disconnect_action(job)
    resources = []
    for manifest in desired:
        key = (manifest["kind"], manifest["metadata"]["name"])
        resources.append(
            WorkResource(
                kind=manifest["kind"],
                name=manifest["metadata"]["name"],
                shard=shard_of(manifest) or 0,
                epoch=_epoch(manifest),
                on_disconnect=action,
                manifest=dict(manifest),
                resume_checkpoint=None if key in held else resume_checkpoint(job, manifest),
            )
        )
    return MemberWorkSpec(
        member=member,
        job_ref=WorkJobReference(
            namespace=job.metadata.namespace or "",
            name=job.metadata.name or "",
            uid=job.metadata.uid or "",
        ),
        placement_epoch=placement_epoch,
        session_epoch=session_epoch,
        finished=job.is_finished,
        resources=resources,
    )


def work_body(job: MLJob, spec: MemberWorkSpec) -> Body:
    """The whole MemberWork for `spec`, in its member's namespace."""
    name = job.metadata.name or ""
    return {
        "apiVersion": "continuum.dev/v1alpha1",
        "kind": "MemberWork",
        "metadata": {
            "name": work_name(job.metadata.namespace or "", name),
            "namespace": member_namespace(spec.member),
            "labels": {
                SHARD_LABELS.managed_by: "continuum",
                MEMBER_LABEL: spec.member,
                SHARD_LABELS.job: job_label_value(name),
                SHARD_LABELS.job_uid: job.metadata.uid or "",
            },
        },
        "spec": spec.to_dict(),
    }


def spec_differs(existing: Body | None, spec: MemberWorkSpec) -> bool:
    """Whether the work must be written: absent, or its spec says something else. Compared as
    models, since the API server fills in the defaults the manifest leaves out."""
    if existing is None:
        return True
    try:
        return MemberWorkSpec.model_validate(existing.get("spec") or {}) != spec
    except ValueError:
        return True


def is_acknowledged(work: Body) -> bool:
    """Whether the agent has converged to the work's current spec."""
    metadata, status = work.get("metadata") or {}, work.get("status") or {}
    generation = metadata.get("generation")
    return generation is not None and status.get("observedGeneration") == generation


def is_emptied(work: Body) -> bool:
    """Whether the member holds nothing of the work's job, by its agent's word on the current
    spec: only then may the hub delete the work."""
    return is_acknowledged(work) and not (work.get("status") or {}).get("resources")


def pull_outcome(member: str, work: Body | None, lease_fresh: bool) -> ClusterOutcome:
    """What the member's agent has made of the work: Applied once it converged to the current
    spec, Pending until then, Unreachable while its lease is not fresh."""
    reported = tuple(reported_resources(work))
    if not lease_fresh:
        return ClusterOutcome(
            member, ApplyState.UNREACHABLE, f"{member}'s agent does not renew its lease", reported
        )
    if work is None or is_acknowledged(work):
        return ClusterOutcome(member, ApplyState.APPLIED, "", reported)
    return ClusterOutcome(
        member, ApplyState.PENDING, f"waiting for {member}'s agent to apply the work", reported
    )


def lease_probe(
    member: MemberCluster, lease_age_s: float | None, report: AgentReport | None, now: datetime
) -> tuple[ProbeResult, datetime | None]:
    """A Pull member's liveness as a probe would have found it, from its Lease: answered while
    its agent renewed the Lease within leaseDurationSeconds, with what the agent reports of its
    cluster (`report`, from its Lease); and the moment of the last renewal seen (the member's
    last heartbeat), which the eviction's grace counts from."""
    lease = f"Lease {member_namespace(member.metadata.name or '')}/{AGENT_NAME}"
    if lease_age_s is None:
        return ProbeResult(AGENT_NEVER_CONNECTED, f"its agent has never renewed {lease}"), None
    # Rounded up to the second status times hold: truncated, it would let the eviction come up
    # to a second before the agent has fenced.
    seen = now - timedelta(seconds=lease_age_s)
    heartbeat = (
        seen if seen.microsecond == 0 else seen.replace(microsecond=0) + timedelta(seconds=1)
    )
    duration_s = member.spec.timing.lease_duration_seconds
    if lease_age_s > duration_s:
        message = (
            f"its agent has not renewed {lease} for {lease_age_s:.0f} s "
            f"(leaseDurationSeconds {duration_s})"
        )
        return ProbeResult(LEASE_EXPIRED, message), heartbeat
    if report is None:
        renewing = ProbeResult(message="its agent renews its lease", answered_reason=LEASE_RENEWED)
        return renewing, heartbeat
    nodes_ready = report.nodes_ready or 0
    return (
        ProbeResult(
            message="its agent renews its lease",
            answered_reason=LEASE_RENEWED,
            kubernetes_version=report.kubernetes_version,
            node_allocatable=report.allocatable if nodes_ready else None,
            node_count=nodes_ready,
            latency_ms=report.hub_rtt_ms,
            cluster_id=report.cluster_id,
        ),
        heartbeat,
    )


def _reachable(member: MemberCluster) -> Condition | None:
    conditions = member.status.conditions if member.status else []
    return next((c for c in conditions if c.type == MemberClusterConditionType.REACHABLE), None)


def next_session(member: MemberCluster, answered: bool, awaiting: int | None = None) -> int | None:
    """The member's session epoch after this look at its lease: one more when its agent is
    back after its lease had expired, so that a shard it fenced resumes only under work
    written after its return; past `awaiting` (the session the agent says its fenced shards
    wait to be succeeded) when the hub never saw the lease expire; None when it stays."""
    status = member.status
    if not answered or status is None or status.last_heartbeat_time is None:
        return None
    current = status.session_epoch or 0
    if awaiting is not None and current <= awaiting:
        return awaiting + 1
    reachable = _reachable(member)
    if reachable is not None and reachable.status == ConditionStatus.TRUE:
        return None
    return current + 1


def settled_session(
    member: MemberCluster, written: int, writes_pending: bool, now: datetime, settle_s: float
) -> tuple[int, float]:
    """The session epoch to write into the member's work, and how long until it may change:
    the member's current one once it has been back for `settle_s` (a scheduling cycle that
    began before its return has written what it decided) with no Placement write of the job
    in flight; else the one `written` before."""
    status = member.status
    current = (status.session_epoch if status else None) or 0
    if current <= written:
        return written, 0.0
    reachable = (
        next((c for c in status.conditions if c.type == "Reachable"), None) if status else None
    )
    if reachable is None or reachable.status != ConditionStatus.TRUE:
        return written, 0.0
    since = reachable.last_transition_time
    back_s = (now - since).total_seconds() if since is not None else settle_s
    if back_s < settle_s or writes_pending:
        return written, max(settle_s - back_s, 0.5)
    return current, 0.0


# A Pull member's status is written when something the scheduler or a person reads changes,
# not at every renewal: the heartbeat time while the lease holds, and the agent's report when
# only its time and round trip moved, are refreshed this often at most (the Lease is the
# liveness, as a node's Lease spares the kubelet from writing its node status at every beat).
# A fleet of a thousand members then writes about 17 statuses a second, not one per renewal.
STATUS_REFRESH_S = 60.0


def _facts(report: AgentReport) -> AgentReport:
    return report.model_copy(update={"report_time": None, "hub_rtt_ms": None})


def pull_status(
    before: MemberClusterStatus | None,
    status: MemberClusterStatus,
    member: MemberCluster,
    heartbeat_at: datetime | None,
    answered: bool,
    report: AgentReport | None,
) -> MemberClusterStatus:
    """`status` (the heartbeat's, for a Pull member) with its heartbeat time and the agent's
    report written only when they matter: the heartbeat time exactly when the lease has
    expired (the eviction's grace counts from it), else once a minute; the report when its
    facts change, else once a minute."""
    written = before.last_heartbeat_time if before is not None else None
    heartbeat = status.last_heartbeat_time
    if heartbeat_at is not None:
        fresh_enough = (
            answered
            and written is not None
            and timedelta(0) <= heartbeat_at - written < timedelta(seconds=STATUS_REFRESH_S)
        )
        heartbeat = written if fresh_enough else heartbeat_at
    agent = before.agent if before is not None else None
    if report is not None:
        keep = (
            agent is not None
            and _facts(agent) == _facts(report)
            and agent.report_time is not None
            and report.report_time is not None
            and (report.report_time - agent.report_time).total_seconds() < STATUS_REFRESH_S
        )
        agent = agent if keep else report
    return status.model_copy(update={"last_heartbeat_time": heartbeat, "agent": agent})
