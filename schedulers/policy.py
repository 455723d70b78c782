"""The scheduler's entry point: one call per scheduling cycle."""

from __future__ import annotations

from continuum.schedulers.baselines import BASELINES
from continuum.schedulers.config import Order, PolicyConfig, Score, Strategy
from continuum.schedulers.engine import run_cycle
from continuum.schedulers.filters import ALL_FILTERS
from continuum.schedulers.model import CycleResult, Snapshot

CONTINUUM = Strategy(
    name="continuum",
    summary="SLO first, then WAN and cost, then balance and risk, in weighted DRF order",
    order=Order.DRF,
    filters=ALL_FILTERS,
    score=Score.OBJECTIVE,
    quota=True,
    preempt=True,
    proactive=True,
    rebalance=True,
    rigid_first=True,
    deadlines=True,
    repair=True,
    improve=True,
)

STRATEGIES: dict[str, Strategy] = {s.name: s for s in (CONTINUUM, *BASELINES)}
POLICY_NAMES: tuple[str, ...] = tuple(STRATEGIES)


def schedule(
    snapshot: Snapshot, policy: str = "continuum", config: PolicyConfig | None = None
) -> CycleResult:
    """Decide one cycle: new placements, preemptions and migrations of running shards.

    Pure: the same snapshot, policy and config always give the same decisions (only the
    timings differ, as they come from `config.clock`).
    """
    strategy = STRATEGIES.get(policy)
    if strategy is None:
        raise ValueError(f"unknown policy {policy!r}; known: {', '.join(POLICY_NAMES)}")
    return run_cycle(snapshot, strategy, config or PolicyConfig())
