"""Make-before-break moves: which old copies of a moving shard stay until the new one runs. Pure.

A Proactive or Rebalance move takes a shard off a member that still works. Deleting its copy
there at once, as the Placement's new decision alone would, throws away the work since its last
checkpoint and leaves the shard down while its replacement starts. So the old copy stays while
the move is carried out in two steps:

1. *Starting*: the replacement is created at the target; the old copy runs on, its resource
   exactly as it is, until the replacement runs (RUNNING, or SUCCEEDED for a job that finished
   there).
2. *Draining*, for a job with `faultTolerance.checkpoint`: the old copy is asked to checkpoint
   now and stop working (annotation continuum.dev/checkpoint-requested, the time of the
   request), and stays until it reports a checkpoint at or after that time (its
   continuum.dev/last-checkpoint), which its replacement resumes from: the move loses no work.
   A copy that does not answer within `drain_timeout_s` is removed regardless (its work since
   its last checkpoint is lost). A job without checkpoints has nothing to hand over: its old
   copy goes once the replacement runs.

The replacement is made *waiting* (continuum.dev/handover-from, the source member): its pods
start, so that it is ready to take over, but it does no work until the handoff ends and it is
let start (continuum.dev/handover-done), when it resumes from the old copy's last checkpoint.
So the two copies never work at once, and never both write under the shard's checkpoint URI.
The mark is put on a replacement that is made for the move, not on a copy the target already
held (a shard moved back before its handoff ended goes on working where it was).

A handoff from a member that stops answering ends when the member is declared lost (evicted,
after the failover grace): the replacement then works, as a Failure move's would, while the
old copy, which the hub can neither reach nor stop, goes when the member answers again.

The old copy stays only while the Placement's newest move of that shard goes from this member
to where the shard is now decided, for one of those reasons (a Failure move leaves a member that
does not answer, and a Preemption move frees room that another shard is waiting for), while the
old copy is running (one that is not gives nothing to wait for), and for at most `timeout_s`
from the move's decision: a replacement that never starts must not keep the old copy for ever,
nor the member's capacity it holds.

Everything here is read from the Placement (its migrations, with their times) and from what the
members hold (the request's time is on the old copy itself), so a pass that runs twice, or
after a restart, keeps and releases the same copies.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from continuum.operator.api import Migration, MigrationReason, MLJob, Placement, ShardState
from continuum.operator.api.shard_resources import SHARD_LABELS
from continuum.operator.reconcile.kuberay import (
    annotation_time,
    observe_shard,
    waits_for_handover,
)

Manifest = dict[str, Any]
MAKE_BEFORE_BREAK = frozenset({MigrationReason.PROACTIVE, MigrationReason.REBALANCE})
RUNS = frozenset({ShardState.RUNNING, ShardState.SUCCEEDED})


class HandoffStep(StrEnum):
    STARTING = "Starting"
    """The replacement does not run yet."""
    DRAINING = "Draining"
    """The replacement runs; the old copy is asked for a last checkpoint."""


@dataclass(frozen=True)
class Handoff:
    """One moving shard whose old copy stays for now."""

    shard: int
    source: str
    target: str
    reason: MigrationReason
    resource: Manifest
    """The old copy as the source member should hold it: as it is, or with the request for a
    last checkpoint."""
    remaining_s: float
    """Until the old copy goes whatever happens: the handoff or the drain timeout."""
    step: HandoffStep = HandoffStep.STARTING


def shard_of(resource: Mapping[str, Any]) -> int | None:
    value = (resource.get("metadata") or {}).get("labels", {}).get(SHARD_LABELS.shard)
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _newest_move(migrations: Sequence[Migration], shard: int) -> Migration | None:
    return next((m for m in reversed(migrations) if m.shard == shard), None)


def _runs(resource: Mapping[str, Any] | None) -> bool:
    return resource is not None and observe_shard(resource).state in RUNS


def _copy_of(resources: Sequence[Manifest], shard: int) -> Manifest | None:
    return next((item for item in resources if shard_of(item) == shard), None)


def _handed_over(old: Manifest) -> bool:
    """Whether the old copy has answered its request for a last checkpoint."""
    asked = annotation_time(old, SHARD_LABELS.checkpoint_request_annotation)
    answered = annotation_time(old, SHARD_LABELS.last_checkpoint_annotation)
    return asked is not None and answered is not None and answered >= asked


def _annotated(manifest: Manifest, annotations: Mapping[str, str]) -> Manifest:
    metadata = dict(manifest["metadata"])
    metadata["annotations"] = {**(metadata.get("annotations") or {}), **annotations}
    return {**manifest, "metadata": metadata}


def _requested(old: Manifest, now: datetime) -> Manifest:
    """The old copy with the request for a last checkpoint, made `now`."""
    return _annotated(
        old, {SHARD_LABELS.checkpoint_request_annotation: now.astimezone(UTC).isoformat()}
    )


def _draining(
    job: MLJob, old: Manifest, now: datetime, drain_timeout_s: float
) -> tuple[Manifest, float] | None:
    """The old copy while it hands its work over (as it should be held, and the seconds left
    to it), or None: it has, there is nothing to hand over, or it took too long."""
    if job.spec.fault_tolerance is None or job.spec.fault_tolerance.checkpoint is None:
        return None
    if waits_for_handover(old):
        return None  # it was itself waiting for a hand-over: it has done no work to hand over
    asked = annotation_time(old, SHARD_LABELS.checkpoint_request_annotation)
    if asked is None:
        return _requested(old, now), drain_timeout_s
    if _handed_over(old):
        return None
    left_s = drain_timeout_s - (now - asked).total_seconds()
    return (old, left_s) if left_s > 0 else None


def pending_handoffs(
    job: MLJob,
    placement: Placement | None,
    held: Mapping[str, Sequence[Manifest]],
    now: datetime,
    timeout_s: float,
    drain_timeout_s: float = 30.0,
    lost: Collection[str] = (),
) -> list[Handoff]:
    """The old copies that stay for now. `held` is what each member holds of this job, as its
    mirror last saw it; `lost` are the members whose shards were declared lost (evicted): a
    handoff from one of them is over, since its old copy can neither hand over nor be
    stopped, and its replacement must work (as a Failure move's would)."""
    if placement is None or job.is_stopping or job.is_finished:
        return []
    handoffs = []
    for decision in placement.spec.decisions:
        move = _newest_move(placement.spec.migrations, decision.shard)
        if move is None or move.reason not in MAKE_BEFORE_BREAK:
            continue
        if move.to_cluster != decision.cluster or move.from_cluster == decision.cluster:
            continue
        if move.from_cluster in lost:
            continue
        old = _copy_of(held.get(move.from_cluster, ()), decision.shard)
        if old is None or not _runs(old):
            continue
        remaining_s = timeout_s - max((now - move.time).total_seconds(), 0.0)
        if remaining_s <= 0:
            continue
        step, kept = HandoffStep.STARTING, old
        if _runs(_copy_of(held.get(decision.cluster, ()), decision.shard)):
            draining = _draining(job, old, now, drain_timeout_s)
            if draining is None:
                continue
            step, (kept, left_s) = HandoffStep.DRAINING, draining
            remaining_s = min(remaining_s, left_s)
        handoffs.append(
            Handoff(decision.shard, move.from_cluster, decision.cluster, move.reason, kept,
                    remaining_s, step)
        )  # fmt: skip
    return handoffs


def _handover_mark(
    manifest: Manifest,
    member: str,
    sources: Mapping[tuple[str, int], str],
    held: Mapping[str, Sequence[Manifest]],
    now: datetime,
) -> Manifest:
    shard = shard_of(manifest)
    if shard is None:
        return manifest
    observed = _copy_of(held.get(member, ()), shard)
    source = sources.get((member, shard))
    if source is not None and (observed is None or waits_for_handover(observed)):
        return _annotated(manifest, {SHARD_LABELS.handover_from_annotation: source})
    if observed is not None and waits_for_handover(observed):
        done = now.astimezone(UTC).isoformat()
        return _annotated(manifest, {SHARD_LABELS.handover_done_annotation: done})
    return manifest


def with_handoffs(
    desired: Mapping[str, list[Manifest]],
    handoffs: Sequence[Handoff],
    held: Mapping[str, Sequence[Manifest]],
    now: datetime,
) -> dict[str, list[Manifest]]:
    """`desired` with each old copy that stays, as it is, in its source member, and the
    hand-over marks on the replacements: one made while its handoff goes on waits for it; one
    that waited is let start once no handoff of its shard goes on (`held`: what each member
    holds of the job)."""
    sources = {(handoff.target, handoff.shard): handoff.source for handoff in handoffs}
    merged = {
        member: [_handover_mark(manifest, member, sources, held, now) for manifest in manifests]
        for member, manifests in desired.items()
    }
    for handoff in handoffs:
        merged.setdefault(handoff.source, []).append(handoff.resource)
    return merged


@dataclass(frozen=True)
class CompletedMove:
    """An old copy removed now that its move is done, or its handoff timed out."""

    shard: int
    source: str
    target: str
    reason: MigrationReason
    replacement_running: bool
    after_s: float
    """From the move's decision to the removal of the old copy."""
    handed_over: bool = False
    """The old copy had answered its request for a last checkpoint."""

    @property
    def outcome(self) -> str:
        if not self.replacement_running:
            return "TimedOut"
        return "HandedOver" if self.handed_over else "ReplacementRunning"


def completed_moves(
    placement: Placement | None,
    removed: Mapping[str, Sequence[Manifest]],
    held: Mapping[str, Sequence[Manifest]],
    now: datetime,
) -> list[CompletedMove]:
    """The make-before-break moves that the removal of `removed` (member -> resources deleted
    there by this pass) completes: old copies in the source of their shard's newest move."""
    if placement is None:
        return []
    decided = {decision.shard: decision.cluster for decision in placement.spec.decisions}
    done = []
    for member, resources in sorted(removed.items()):
        for resource in resources:
            shard = shard_of(resource)
            move = None if shard is None else _newest_move(placement.spec.migrations, shard)
            if shard is None or move is None or move.reason not in MAKE_BEFORE_BREAK:
                continue
            if move.from_cluster != member or decided.get(shard) != move.to_cluster:
                continue
            after_s = (now - move.time).total_seconds()
            replacement = _copy_of(held.get(move.to_cluster, ()), shard)
            done.append(
                CompletedMove(shard, member, move.to_cluster, move.reason, _runs(replacement),
                              max(after_s, 0.0), _handed_over(resource))
            )  # fmt: skip
    return done
