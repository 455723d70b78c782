"""Make-before-break moves: which old copies of a moving shard stay until the new one runs. Pure.

A Proactive or Rebalance move takes a shard off a member that still works. Deleting its copy
there at once, as the Placement's new decision alone would, throws away the work since its last
checkpoint and leaves the shard down while its replacement starts. So the old copy stays (its
resource is left exactly as it is) while:

- the Placement's newest move of that shard goes from this member to where the shard is now
  decided, for one of those reasons (a Failure move leaves a member that does not answer, and
  a Preemption move frees room that another shard is waiting for);
- the old copy is running; one that is not gives nothing to wait for;
- its replacement is not running yet (RUNNING, or SUCCEEDED for a job that finished there);
- and the move is younger than the handoff timeout: a replacement that never starts must not
  keep the old copy for ever, nor the member's capacity it holds.

Everything here is read from the Placement (its migrations, with their times) and from what the
members hold, so a pass that runs twice, or after a restart, keeps and releases the same copies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from continuum.operator.api import Migration, MigrationReason, MLJob, Placement, ShardState
from continuum.operator.api.shard_resources import SHARD_LABELS
from continuum.operator.reconcile.kuberay import observe_shard

Manifest = dict[str, Any]
MAKE_BEFORE_BREAK = frozenset({MigrationReason.PROACTIVE, MigrationReason.REBALANCE})
RUNS = frozenset({ShardState.RUNNING, ShardState.SUCCEEDED})


@dataclass(frozen=True)
class Handoff:
    """One moving shard whose old copy stays until its replacement runs."""

    shard: int
    source: str
    target: str
    reason: MigrationReason
    resource: Manifest
    """The old copy, as the source member holds it."""
    remaining_s: float
    """Until the handoff timeout: then the old copy goes whatever the replacement's state."""


def shard_of(resource: Mapping[str, Any]) -> int | None:
    value = (resource.get("metadata") or {}).get("labels", {}).get(SHARD_LABELS.shard)
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _newest_move(migrations: Sequence[Migration], shard: int) -> Migration | None:
    return next((m for m in reversed(migrations) if m.shard == shard), None)


def _runs(resource: Mapping[str, Any] | None) -> bool:
    return resource is not None and observe_shard(resource).state in RUNS


def _copy_of(resources: Sequence[Manifest], shard: int) -> Manifest | None:
    return next((item for item in resources if shard_of(item) == shard), None)


def pending_handoffs(
    job: MLJob,
    placement: Placement | None,
    held: Mapping[str, Sequence[Manifest]],
    now: datetime,
    timeout_s: float,
) -> list[Handoff]:
    """The old copies that stay for now. `held` is what each member holds of this job, as its
    mirror last saw it."""
    if placement is None or job.is_stopping or job.is_finished:
        return []
    handoffs = []
    for decision in placement.spec.decisions:
        move = _newest_move(placement.spec.migrations, decision.shard)
        if move is None or move.reason not in MAKE_BEFORE_BREAK:
            continue
        if move.to_cluster != decision.cluster or move.from_cluster == decision.cluster:
            continue
        old = _copy_of(held.get(move.from_cluster, ()), decision.shard)
        if old is None or not _runs(old):
            continue
        if _runs(_copy_of(held.get(decision.cluster, ()), decision.shard)):
            continue
        elapsed_s = (now - move.time).total_seconds()
        remaining_s = timeout_s - max(elapsed_s, 0.0)
        if remaining_s <= 0:
            continue
        handoffs.append(
            Handoff(decision.shard, move.from_cluster, decision.cluster, move.reason, old,
                    remaining_s)
        )  # fmt: skip
    return handoffs


def with_handoffs(
    desired: Mapping[str, list[Manifest]], handoffs: Sequence[Handoff]
) -> dict[str, list[Manifest]]:
    """`desired` plus each old copy that stays, as it is, in its source member."""
    merged = {member: list(manifests) for member, manifests in desired.items()}
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
                              max(after_s, 0.0))
            )  # fmt: skip
    return done
