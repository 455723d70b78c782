"""The migration planner and the accounting of what a recovery cost."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from continuum.operator.api import Placement
from continuum.operator.recovery.migration import (
    ShardMove,
    decided_clusters,
    plan_moves,
    recovery_cost,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, tzinfo=UTC).isoformat()


def placement(decisions: dict[int, str], migrations: list[dict[str, object]] = ()) -> Placement:  # type: ignore[assignment]
    return Placement.model_validate(
        {
            "metadata": {"name": "job", "namespace": "default"},
            "spec": {
                "jobRef": {"name": "job"},
                "epoch": 2,
                "decisions": [
                    {"shard": shard, "cluster": cluster, "score": 0.0}
                    for shard, cluster in decisions.items()
                ],
                "migrations": list(migrations),
            },
        }
    )


def test_first_placement_starts_every_shard() -> None:
    moves = plan_moves({}, placement({0: "member-1", 1: "member-2"}))
    assert moves == [
        ShardMove(0, None, "member-1", None),
        ShardMove(1, None, "member-2", None),
    ]


def test_nothing_moves_when_the_placement_is_where_the_shards_run() -> None:
    assert plan_moves({0: "member-1"}, placement({0: "member-1"})) == []
    assert plan_moves({0: "member-1"}, None) == []


def test_a_moved_shard_takes_its_reason_from_the_placement_history() -> None:
    history = [
        {"shard": 1, "from": "member-3", "to": "member-2", "reason": "Rebalance", "time": NOW},
        {"shard": 1, "from": "member-2", "to": "member-1", "reason": "Proactive", "time": NOW},
    ]
    moves = plan_moves(
        {0: "member-1", 1: "member-2"}, placement({0: "member-1", 1: "member-1"}, history)
    )
    assert [(m.shard, m.from_cluster, m.to_cluster, m.reason) for m in moves] == [
        (1, "member-2", "member-1", "Proactive")
    ]


def test_a_lost_shard_restarts_where_the_scheduler_now_puts_it() -> None:
    history = [{"shard": 1, "from": "member-2", "to": "member-1", "reason": "Failure", "time": NOW}]
    moves = plan_moves({0: "member-1", 1: None}, placement({0: "member-1", 1: "member-1"}, history))
    assert moves == [ShardMove(1, None, "member-1", "Failure")]  # type: ignore[arg-type]


def test_decided_clusters() -> None:
    assert decided_clusters(placement({0: "a", 2: "b"})) == {0: "a", 2: "b"}
    assert decided_clusters(None) == {}


def test_a_proactive_move_at_a_round_boundary_loses_nothing() -> None:
    cost = recovery_cost(10.0, 10.02, last_completed_round=17, resumed_after_round=17,
                         aborted_rounds=0)  # fmt: skip
    assert cost.lost_rounds == 0
    assert cost.downtime_s == pytest.approx(0.02)


def test_a_failure_loses_the_rounds_in_flight_and_any_after_the_checkpoint() -> None:
    assert recovery_cost(11.0, 13.5, 24, 24, aborted_rounds=1).lost_rounds == 1
    assert recovery_cost(11.0, 13.5, 24, 20, aborted_rounds=1).lost_rounds == 5


@pytest.mark.parametrize(
    ("arguments", "message"),
    [((5.0, 4.0, 3, 3, 0), "before it stopped"), ((1.0, 2.0, 3, 4, 0), "ahead")],
)
def test_impossible_recoveries_are_refused(
    arguments: tuple[float, float, int, int, int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        recovery_cost(*arguments)
