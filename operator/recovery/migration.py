"""What a Placement change means for running shards, and what a recovery cost. Pure.

The scheduler decides *where* a shard runs; the executor (KubeRay in the operator, local Ray in
the demo) has to stop it in one place and start it in another, from its last checkpoint. This
module says which shards move and why, and accounts for the work a move lost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from continuum.operator.api import Migration, MigrationReason, Placement


@dataclass(frozen=True)
class ShardMove:
    shard: int
    from_cluster: str | None
    """None: the shard is new, or was lost with its cluster and has no running copy."""
    to_cluster: str
    reason: MigrationReason | None
    """From the Placement's migration history; None for a first placement."""


def decided_clusters(placement: Placement | None) -> dict[int, str]:
    if placement is None:
        return {}
    return {decision.shard: decision.cluster for decision in placement.spec.decisions}


def _latest_migration(migrations: Sequence[Migration], shard: int, to: str) -> Migration | None:
    for migration in reversed(migrations):
        if migration.shard == shard and migration.to_cluster == to:
            return migration
    return None


def plan_moves(running: Mapping[int, str | None], placement: Placement | None) -> list[ShardMove]:
    """Moves that bring the shards in `running` (shard -> cluster it runs on, None when its copy
    is gone) to where `placement` puts them. A shard the placement drops is not moved here;
    stopping it is the executor's garbage collection."""
    moves = []
    history = placement.spec.migrations if placement else []
    for shard, cluster in sorted(decided_clusters(placement).items()):
        current = running.get(shard)
        if current == cluster:
            continue
        migration = _latest_migration(history, shard, cluster)
        moves.append(
            ShardMove(
                shard=shard,
                from_cluster=current,
                to_cluster=cluster,
                reason=migration.reason if migration else None,
            )
        )
    return moves


@dataclass(frozen=True)
class RecoveryCost:
    lost_rounds: int
    """Rounds whose work was thrown away: started, but not completed by every shard."""
    downtime_s: float
    """From the moment the shard stopped serving (stopped, or its site failed) until its
    replacement was running again from its checkpoint."""


def recovery_cost(
    stopped_at_s: float,
    resumed_at_s: float,
    last_completed_round: int,
    resumed_after_round: int,
    aborted_rounds: int,
) -> RecoveryCost:
    """`resumed_after_round` is the round of the checkpoint the replacement loaded; any round
    completed after it has to be redone, on top of the rounds aborted in flight."""
    if resumed_at_s < stopped_at_s:
        raise ValueError("a shard cannot resume before it stopped")
    if resumed_after_round > last_completed_round:
        raise ValueError("a checkpoint cannot be ahead of the last completed round")
    redone = last_completed_round - resumed_after_round
    return RecoveryCost(aborted_rounds + redone, resumed_at_s - stopped_at_s)
