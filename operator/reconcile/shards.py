"""The placement controller's decisions: which shard resources each member should hold, what
to create, update or delete there, and what the members' states mean for the job. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from continuum.operator.api import (
    ApplyState,
    ClusterApplyStatus,
    Condition,
    ConditionStatus,
    FederationStatus,
    MLJob,
    MLJobConditionType,
    MLJobPhase,
    MLJobStatus,
    Placement,
    PlacementConditionType,
    PlacementStatus,
    ShardState,
    ShardStatus,
    upsert_condition,
)
from continuum.operator.api.plans import ClusterPlan
from continuum.operator.reconcile.federation import (
    WAITING_FOR_AGGREGATOR,
    AggregatorEndpoint,
    aggregator_endpoint,
    started_with,
)
from continuum.operator.reconcile.handoff import Handoff, HandoffStep, shard_of
from continuum.operator.reconcile.kuberay import (
    Role,
    build_shard_resource,
    default_role,
    needs_update,
    observe_shard,
    with_resume_checkpoint,
)

Manifest = dict[str, Any]
MESSAGE_LIMIT = 1024


def _name(manifest: Mapping[str, Any]) -> str:
    return str(manifest["metadata"]["name"])


def _kind(manifest: Mapping[str, Any]) -> str:
    return str(manifest["kind"])


def _is_participant(job: MLJob, shard: int) -> bool:
    return default_role(job, shard) == Role.PARTICIPANT


def desired_resources(
    job: MLJob, placement: Placement | None, held: Mapping[str, Sequence[Manifest]] | None = None
) -> dict[str, list[Manifest]]:
    """Member cluster name -> the shard resources it should hold for this job (`held`: what
    each member holds of it now).

    A Federated participant is made only once its aggregator's address is known, with that
    address; while it is not, a copy already made stays as it is (the aggregator may be
    coming back at the same address)."""
    if placement is None or job.is_stopping:
        return {}
    held = held or {}
    endpoint = aggregator_endpoint(job, placement, held)
    desired: dict[str, list[Manifest]] = {}
    for decision in placement.spec.decisions:
        if decision.shard >= job.spec.shards.count:
            continue
        epoch = decision.epoch if decision.epoch is not None else placement.spec.epoch
        wanted = desired.setdefault(decision.cluster, [])
        address = endpoint.address if endpoint is not None else None
        if _is_participant(job, decision.shard) and endpoint is None:
            made = [
                started_with(r)
                for r in held.get(decision.cluster, ())
                if shard_of(r) == decision.shard and started_with(r)
            ]
            if not made:
                continue  # made once the aggregator has an address
            address = made[0]  # kept as it was made, with the address it was given
        wanted.append(build_shard_resource(job, decision.shard, epoch, aggregator=address))
    return {cluster: manifests for cluster, manifests in desired.items() if manifests}


def resume_checkpoint(job: MLJob, manifest: Manifest) -> str | None:
    """The newest checkpoint the manifest's shard has reported (RFC 3339), which a new copy
    of it resumes from; None if none yet."""
    shard = shard_of(manifest)
    known = {entry.index: entry for entry in (job.status.shards if job.status else [])}
    entry = known.get(shard) if shard is not None else None
    moment = entry.last_checkpoint if entry is not None else None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else None


def to_create(job: MLJob, manifest: Manifest) -> Manifest:
    """A shard's manifest as it is created: marked with the newest checkpoint the shard has
    reported, which its new copy resumes from."""
    return with_resume_checkpoint(manifest, resume_checkpoint(job, manifest))


def plan_cluster(
    desired: Sequence[Manifest], observed: Sequence[Manifest], finished: bool = False
) -> ClusterPlan:
    """What to do in one member so that it holds exactly `desired` of this job's resources.
    `observed` are the job's resources there, found by its labels.

    A `finished` job's resources are kept as they are and never made again: one that went
    from a member after the job finished (KubeRay's deletion policy, or a person) would run
    its shard again. What it should not hold still goes."""
    observed_by_key = {(_kind(item), _name(item)): item for item in observed}
    desired_keys = {(_kind(item), _name(item)) for item in desired}
    delete = [item for key, item in sorted(observed_by_key.items()) if key not in desired_keys]
    if finished:
        return ClusterPlan(delete=tuple(delete))
    create = tuple(item for item in desired if (_kind(item), _name(item)) not in observed_by_key)
    update = []
    for item in desired:
        current = observed_by_key.get((_kind(item), _name(item)))
        if current is None or "deletionTimestamp" in current.get("metadata", {}):
            continue  # made, or made again once its going copy is gone
        if started_with(current) != started_with(item):
            # A participant started for an aggregator that is no longer there: its Ray job
            # cannot be told the new address, so it is made again.
            delete.append(current)
        elif needs_update(item, current):
            update.append((item, current))
    return ClusterPlan(create, tuple(update), tuple(delete))


@dataclass(frozen=True)
class ClusterOutcome:
    """What applying a ClusterPlan to one member came to."""

    cluster: str
    state: ApplyState
    message: str = ""
    # The job's resources in the member after applying, as read back or as written.
    resources: tuple[Manifest, ...] = field(default_factory=tuple)


def shard_statuses(
    job: MLJob,
    placement: Placement,
    outcomes: Mapping[str, ClusterOutcome],
    handoffs: Sequence[Handoff] = (),
) -> list[ShardStatus]:
    """Each decided shard's status from its resource in its member. A shard moving
    make-before-break (`handoffs`) is reported where it still runs, its old copy, until its
    replacement runs."""
    previous = {shard.index: shard for shard in (job.status.shards if job.status else [])}
    moving = {handoff.shard: handoff for handoff in handoffs}
    endpoint = aggregator_endpoint(job, placement, resources_by_member(outcomes))
    statuses = []
    for decision in sorted(placement.spec.decisions, key=lambda d: d.shard):
        if decision.shard >= job.spec.shards.count:
            continue
        earlier = previous.get(decision.shard)
        restarts = earlier.restarts if earlier else 0
        # What the shard last reported stands until a copy of it reports a newer one: a move, a
        # member out of reach or a resource not made yet must not wipe it.
        checkpoint: str | datetime | None = earlier.last_checkpoint if earlier else None
        cluster = decision.cluster
        outcome = outcomes.get(decision.cluster)
        resource = next(
            (r for r in (outcome.resources if outcome else ()) if shard_of(r) == decision.shard),
            None,
        )
        handoff = moving.get(decision.shard)
        if handoff is not None:
            cluster, resource = handoff.source, handoff.resource
            observation = observe_shard(resource)
            state = observation.state
            doing = (
                f", handing its last checkpoint over to its replacement on {handoff.target}"
                if handoff.step == HandoffStep.DRAINING
                else f" while its replacement starts on {handoff.target}"
            )
            message = f"runs on {handoff.source}{doing} ({handoff.reason.value} move)"
            restarts = max(restarts, observation.restarts)
            checkpoint = observation.last_checkpoint or checkpoint
        elif outcome is None or outcome.state == ApplyState.UNREACHABLE:
            state = ShardState.UNKNOWN
            message = outcome.message if outcome else f"member {decision.cluster} is not known"
        elif resource is None:
            waiting = _is_participant(job, decision.shard) and endpoint is None
            state = ShardState.PENDING
            message = WAITING_FOR_AGGREGATOR if waiting else outcome.message or "not created yet"
        else:
            observation = observe_shard(resource)
            state, message = observation.state, observation.message
            # KubeRay counts the retries of this resource only; a moved shard's new resource
            # starts again from 0, and the count the status already holds must not go back.
            restarts = max(restarts, observation.restarts)
            checkpoint = _newest(observation.last_checkpoint, checkpoint)
        statuses.append(
            ShardStatus.model_validate(
                {
                    "index": decision.shard,
                    "cluster": cluster,
                    "state": state,
                    "restarts": restarts,
                    "lastCheckpoint": checkpoint,
                    "message": message[:1024] or None,
                }
            )
        )
    return statuses


def _newest(reported: str | None, known: str | datetime | None) -> str | datetime | None:
    """The newer of a checkpoint time a shard resource reports and the one status holds: a
    replacement reports nothing, or an older time, until it writes its first checkpoint."""
    if reported is None:
        return known
    if known is None:
        return reported
    known_at = known if isinstance(known, datetime) else datetime.fromisoformat(known)
    return reported if datetime.fromisoformat(reported) >= known_at else known


def job_phase(job: MLJob, shards: Sequence[ShardStatus], placed: bool) -> MLJobPhase:
    if job.spec.suspend:
        return MLJobPhase.SUSPENDED
    if job.is_finished and job.status is not None and job.status.phase is not None:
        # Final: a member that stops answering about a finished shard, or loses its resource,
        # says nothing new about how the job ended.
        return job.status.phase
    states = [shard.state for shard in shards]
    previous = job.status.phase if job.status and job.status.phase else None
    if not states:
        if placed:
            return MLJobPhase.PENDING  # placed once, and every shard since evicted
        return previous or MLJobPhase.PENDING
    if len(states) == job.spec.shards.count and all(s == ShardState.SUCCEEDED for s in states):
        return MLJobPhase.SUCCEEDED
    if any(s == ShardState.FAILED for s in states):
        return MLJobPhase.FAILED
    running = sum(1 for s in states if s in (ShardState.RUNNING, ShardState.SUCCEEDED))
    if running >= job.spec.shards.gang_size:
        return MLJobPhase.RUNNING
    was_running = job.status is not None and job.status.phase in (
        MLJobPhase.RUNNING,
        MLJobPhase.RECOVERING,
    )
    return MLJobPhase.RECOVERING if was_running else MLJobPhase.PLACED


def job_status(
    job: MLJob,
    placement: Placement | None,
    outcomes: Mapping[str, ClusterOutcome],
    now: datetime,
    handoffs: Sequence[Handoff] = (),
) -> MLJobStatus:
    status = job.status or MLJobStatus()
    shards = (
        shard_statuses(job, placement, outcomes, handoffs)
        if placement and not job.is_stopping
        else []
    )
    phase = job_phase(job, shards, placed=placement is not None)
    running = sum(1 for shard in shards if shard.state == ShardState.RUNNING)
    gang = job.spec.shards.gang_size
    ready = running >= gang and phase == MLJobPhase.RUNNING
    conditions = upsert_condition(
        status.conditions,
        MLJobConditionType.READY,
        ConditionStatus.TRUE if ready else ConditionStatus.FALSE,
        "ShardsRunning" if ready else ("Suspended" if job.spec.suspend else "ShardsNotRunning"),
        f"{running} of {job.spec.shards.count} shards running; at least {gang} needed",
        observed_generation=job.metadata.generation,
        now=now,
    )
    if placement is not None:
        conditions = _shards_unavailable(conditions, job, placement, outcomes, now)
    updated = status.model_copy(
        update={
            "phase": phase,
            "shards": shards,
            "conditions": conditions,
            "observed_generation": job.metadata.generation,
        }
    )
    return updated.summarized(job.spec.shards.count)


def unavailable_shards(
    job: MLJob, placement: Placement, outcomes: Mapping[str, ClusterOutcome]
) -> list[tuple[int, str, ClusterOutcome | None]]:
    """(shard, member, its outcome) for each wanted shard whose member could not be reached or
    refused its resource; the outcome is None for a member the operator does not know."""
    if job.is_stopping:
        return []
    found = []
    for decision in sorted(placement.spec.decisions, key=lambda d: d.shard):
        if decision.shard >= job.spec.shards.count:
            continue
        outcome = outcomes.get(decision.cluster)
        if outcome is None or outcome.state in (ApplyState.UNREACHABLE, ApplyState.FAILED):
            found.append((decision.shard, decision.cluster, outcome))
    return found


def _shards_unavailable(
    conditions: Sequence[Condition],
    job: MLJob,
    placement: Placement,
    outcomes: Mapping[str, ClusterOutcome],
    now: datetime,
) -> list[Condition]:
    unavailable = unavailable_shards(job, placement, outcomes)
    if not unavailable:
        return upsert_condition(
            conditions, MLJobConditionType.SHARDS_UNAVAILABLE, ConditionStatus.FALSE,
            "ShardsReachable", "every shard's member cluster answers",
            observed_generation=job.metadata.generation, now=now,
        )  # fmt: skip
    refused = all(outcome is not None and outcome.state == ApplyState.FAILED
                  for _, _, outcome in unavailable)  # fmt: skip
    parts = [
        f"shard {shard} on {member}: "
        + (outcome.message if outcome is not None and outcome.message else "not reachable")
        for shard, member, outcome in unavailable
    ]
    return upsert_condition(
        conditions, MLJobConditionType.SHARDS_UNAVAILABLE, ConditionStatus.TRUE,
        "MemberRefused" if refused else "MemberUnreachable", "; ".join(parts)[:MESSAGE_LIMIT],
        observed_generation=job.metadata.generation, now=now,
    )  # fmt: skip


def resources_by_member(outcomes: Mapping[str, ClusterOutcome]) -> dict[str, list[Manifest]]:
    return {member: list(outcome.resources) for member, outcome in outcomes.items()}


def federation_status(
    previous: FederationStatus | None, endpoint: AggregatorEndpoint | None, now: datetime
) -> FederationStatus | None:
    if endpoint is None:
        return None
    if previous is not None and (previous.cluster, previous.address) == (
        endpoint.cluster,
        endpoint.address,
    ):
        return previous
    return FederationStatus(
        aggregator_shard=endpoint.shard,
        cluster=endpoint.cluster,
        address=endpoint.address,
        since=now,
    )


def placement_status(
    placement: Placement,
    outcomes: Iterable[ClusterOutcome],
    now: datetime,
    aggregator: AggregatorEndpoint | None = None,
) -> PlacementStatus:
    """`aggregator`: where a Federated job's aggregator can be reached, published for its
    participants and for people."""
    status = placement.status or PlacementStatus()
    previous = {entry.cluster: entry for entry in status.clusters}
    decided: dict[str, list[int]] = {}
    for decision in placement.spec.decisions:
        decided.setdefault(decision.cluster, []).append(decision.shard)
    entries = []
    for outcome in sorted(outcomes, key=lambda o: o.cluster):
        shards = sorted(decided.get(outcome.cluster, []))
        if not shards and not outcome.resources and outcome.state == ApplyState.APPLIED:
            continue  # a member with nothing of this job, and nothing to do
        before = previous.get(outcome.cluster)
        unchanged = before is not None and before.state == outcome.state and before.shards == shards
        entries.append(
            ClusterApplyStatus(
                cluster=outcome.cluster,
                state=outcome.state,
                applied_epoch=placement.spec.epoch
                if outcome.state == ApplyState.APPLIED
                else (before.applied_epoch if before else None),
                shards=shards,
                message=outcome.message[:1024] or None,
                last_update_time=before.last_update_time if unchanged and before else now,
            )
        )
    all_applied = all(entry.state == ApplyState.APPLIED for entry in entries)
    pending = [entry.cluster for entry in entries if entry.state != ApplyState.APPLIED]
    unreachable = any(entry.state == ApplyState.UNREACHABLE for entry in entries)
    conditions = upsert_condition(
        status.conditions,
        PlacementConditionType.APPLIED,
        ConditionStatus.TRUE if all_applied else ConditionStatus.FALSE,
        "Applied" if all_applied else "MembersUnreachable" if unreachable else "MembersPending",
        f"epoch {placement.spec.epoch} applied to every member"
        if all_applied
        else f"not applied yet: {', '.join(pending)}",
        observed_generation=placement.metadata.generation,
        now=now,
    )
    return status.model_copy(
        update={
            "clusters": entries,
            "applied_epoch": placement.spec.epoch if all_applied else status.applied_epoch,
            "conditions": conditions,
            "observed_generation": placement.metadata.generation,
            "federation": federation_status(status.federation, aggregator, now),
        }
    )
