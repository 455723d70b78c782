"""A scheduling cycle's result turned into Placement specs and MLJob scheduling status. Pure.

A Placement is the audit trail of one job: its decisions say where each shard runs and why, its
migrations say what moved, and its epoch rises on every change so that shard resources in the
members can tell which decision they were made from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from continuum.operator.api import (
    ConditionStatus,
    Decision,
    JobReference,
    Migration,
    MigrationReason,
    MLJob,
    MLJobConditionType,
    MLJobPhase,
    MLJobStatus,
    Placement,
    PlacementReference,
    PlacementSpec,
    upsert_condition,
)
from continuum.operator.api.keys import JobKey
from continuum.operator.api.placement import MAX_MIGRATIONS
from continuum.schedulers.model import CycleResult

MAX_REASONS = 32
MAX_REASON_LENGTH = 1024
# The scheduler scores lower-is-better and may say infinity for "misses the SLO"; the API keeps
# finite numbers only.
SCORE_LIMIT = 1e12


@dataclass(frozen=True)
class JobPlan:
    """What one cycle means for one job: a new Placement spec (None: unchanged) and its
    scheduling condition."""

    placement: PlacementSpec | None
    scheduled: bool
    message: str
    # the Scheduled condition's reason when not scheduled
    reason: str = "Unschedulable"
    moves: tuple[JobMove, ...] = ()
    """The migrations this cycle adds to the Placement, with the scheduler's words on each."""


@dataclass(frozen=True)
class JobMove:
    migration: Migration
    detail: str

    @property
    def event_type(self) -> str:
        """Normal for a move the operator chose; Warning for one forced on the shard."""
        chosen = (MigrationReason.PROACTIVE, MigrationReason.REBALANCE)
        return "Normal" if self.migration.reason in chosen else "Warning"

    @property
    def message(self) -> str:
        move = self.migration
        text = f"shard {move.shard}: {move.from_cluster} -> {move.to_cluster} ({move.reason.value})"
        return f"{text}: {self.detail}" if self.detail else text


def _finite(score: float) -> float:
    if math.isnan(score):
        return SCORE_LIMIT
    return max(-SCORE_LIMIT, min(SCORE_LIMIT, score))


def _reasons(reasons: Sequence[str]) -> list[str]:
    return [reason[:MAX_REASON_LENGTH] for reason in reasons[:MAX_REASONS]]


def results_by_job(result: CycleResult) -> dict[JobKey, CycleResult]:
    """The cycle's result split by job key, so that planning each job reads only its own part
    (scanning the whole result for every job would make a cycle quadratic in the jobs)."""
    parts: dict[str, dict[str, list[Any]]] = {}
    for field_name in ("decisions", "unschedulable", "preemptions", "migrations"):
        for entry in getattr(result, field_name):
            parts.setdefault(entry.job_key, {}).setdefault(field_name, []).append(entry)
    return {
        JobKey.parse(key): replace(
            result,
            decisions=tuple(fields.get("decisions", ())),
            unschedulable=tuple(fields.get("unschedulable", ())),
            preemptions=tuple(fields.get("preemptions", ())),
            migrations=tuple(fields.get("migrations", ())),
        )
        for key, fields in parts.items()
    }


def plan_job(job: MLJob, previous: Placement | None, result: CycleResult, now: datetime) -> JobPlan:
    key = str(JobKey.of(job))  # as the scheduler's results name the job
    count = job.spec.shards.count
    decisions: dict[int, Decision] = {
        decision.shard: decision
        for decision in (previous.spec.decisions if previous else [])
        if decision.shard < count  # the job may have been scaled down since
    }
    for preemption in result.preemptions:
        if preemption.job_key == key:
            decisions.pop(preemption.shard_index, None)
    for decision in result.decisions:
        if decision.job_key == key:
            decisions[decision.shard_index] = Decision(
                shard=decision.shard_index,
                cluster=decision.cluster,
                score=_finite(decision.score),
                reasons=_reasons(decision.reasons),
            )
    # The scheduler names no source for a shard whose member is gone (deleted): the Placement
    # still says where it was.
    held = {d.shard: d.cluster for d in previous.spec.decisions} if previous else {}
    moves = tuple(
        JobMove(
            Migration(
                shard=migration.shard_index,
                from_cluster=source,
                to_cluster=migration.to_cluster,
                reason=MigrationReason(migration.reason.value),
                time=now,
            ),
            migration.detail[:MAX_REASON_LENGTH],
        )
        for migration in result.migrations
        if migration.job_key == key
        for source in (migration.from_cluster or held.get(migration.shard_index, ""),)
        if source and source != migration.to_cluster
    )
    migrations = [move.migration for move in moves]
    unschedulable = next(
        (entry.reason for entry in result.unschedulable if entry.job_key == key), None
    )
    placed = {shard: decisions[shard].cluster for shard in sorted(decisions)}
    before = {d.shard: d for d in previous.spec.decisions} if previous else {}
    if placed == {shard: d.cluster for shard, d in before.items()} and not migrations:
        spec = None
    else:
        epoch = (previous.spec.epoch if previous else 0) + 1
        ordered = []
        for shard, cluster in placed.items():
            kept = before.get(shard)
            assigned_at = epoch
            if previous is not None and kept is not None and kept.cluster == cluster:
                # A kept shard keeps the epoch its resources carry: its own, or, for a decision
                # written before decisions carried one, the Placement's (desired_resources).
                assigned_at = kept.epoch if kept.epoch is not None else previous.spec.epoch
            ordered.append(decisions[shard].model_copy(update={"epoch": assigned_at}))
        history = [*(previous.spec.migrations if previous else []), *migrations]
        spec = PlacementSpec(
            job_ref=JobReference(name=job.metadata.name or "", uid=job.metadata.uid),
            epoch=epoch,
            decisions=ordered,
            migrations=history[-MAX_MIGRATIONS:],
        )
    if unschedulable is not None and len(placed) < job.spec.shards.gang_size:
        return JobPlan(spec, scheduled=False, message=unschedulable, moves=moves)
    clusters = sorted(set(placed.values()))
    message = f"{len(placed)} of {count} shards placed on {', '.join(clusters) or 'no cluster'}"
    return JobPlan(spec, scheduled=bool(placed), message=message, moves=moves)


SCHEDULING_CONDITIONS = (MLJobConditionType.ADMITTED, MLJobConditionType.SCHEDULED)
SUSPENDED = "Suspended"
EARLY_PHASES = (None, MLJobPhase.PENDING, MLJobPhase.ADMITTED, MLJobPhase.SUSPENDED)


def scheduling_status(
    job: MLJob, plan: JobPlan, placement_name: str, epoch: int | None, now: datetime
) -> MLJobStatus:
    """The job's status after a cycle: its Scheduled condition and, while no shard is running
    yet, its phase. Phases from Running on belong to the placement controller."""
    status = job.status or MLJobStatus()
    generation = job.metadata.generation
    conditions = upsert_condition(
        status.conditions,
        MLJobConditionType.ADMITTED,
        ConditionStatus.TRUE,
        "Admitted",
        "the spec is valid and the tenant exists",
        observed_generation=generation,
        now=now,
    )
    conditions = upsert_condition(
        conditions,
        MLJobConditionType.SCHEDULED,
        ConditionStatus.TRUE if plan.scheduled else ConditionStatus.FALSE,
        "Placed" if plan.scheduled else plan.reason,
        plan.message,
        observed_generation=generation,
        now=now,
    )
    phase = status.phase
    if phase in EARLY_PHASES:
        phase = MLJobPhase.PLACED if plan.scheduled else MLJobPhase.PENDING
    updates: dict[str, object] = {"conditions": conditions, "phase": phase}
    if plan.scheduled:
        updates["placement_ref"] = PlacementReference(name=placement_name, epoch=epoch)
    return status.model_copy(update=updates)


def suspended_status(job: MLJob, now: datetime) -> MLJobStatus:
    """The status of a job with spec.suspend: admitted, not scheduled, phase Suspended (from
    Running on, the placement controller says Suspended once the shards are gone)."""
    plan = JobPlan(
        None, scheduled=False, reason=SUSPENDED,
        message="spec.suspend is true: no shard runs until it is false",
    )  # fmt: skip
    status = scheduling_status(job, plan, job.metadata.name or "", None, now)
    phase = status.phase if status.phase not in EARLY_PHASES else MLJobPhase.SUSPENDED
    return status.model_copy(update={"phase": phase})


def merge_scheduling(current: MLJobStatus, scheduled: MLJobStatus) -> MLJobStatus:
    """The scheduling cycle's part of a job's status (the Admitted and Scheduled conditions,
    the Placement reference, and the phase while no shard runs yet) laid over the status as it
    is now, whose other parts belong to the placement controller. One writer can then write
    both without either undoing the other."""
    theirs = {c.type: c for c in scheduled.conditions if c.type in SCHEDULING_CONDITIONS}
    conditions = [theirs.pop(c.type, c) for c in current.conditions]
    conditions.extend(theirs.values())
    # Up to Placed the phase is the cycle's word; from Running on, the placement controller's.
    cycles_phases = (*EARLY_PHASES, MLJobPhase.PLACED)
    phase = current.phase
    if phase in cycles_phases and scheduled.phase in cycles_phases:
        phase = scheduled.phase
    return current.model_copy(
        update={
            "conditions": conditions,
            "phase": phase,
            "placement_ref": scheduled.placement_ref or current.placement_ref,
        }
    )


def placements_by_job(placements: Sequence[Placement]) -> Mapping[JobKey, Placement]:
    return {JobKey.of_placement(placement): placement for placement in placements}
