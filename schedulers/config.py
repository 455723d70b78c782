"""Knobs of a scheduling cycle, and the strategy that turns the shared engine into a policy."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from continuum.schedulers.filters import ALL_FILTERS
from continuum.schedulers.model import Tier
from continuum.schedulers.network.latency import LatencyModel, QueueingLatencyModel
from continuum.schedulers.scoring import ObjectiveWeights


@dataclass(frozen=True)
class PolicyConfig:
    weights: ObjectiveWeights = field(default_factory=ObjectiveWeights)
    latency_model: LatencyModel = field(default_factory=QueueingLatencyModel)
    # Applies to a job that states no risk threshold of its own.
    default_risk_threshold: float = 0.8
    # A running shard is moved for a better place only if it gains both of these.
    rebalance_min_gain_usd_h: float = 1.0
    rebalance_min_gain_fraction: float = 0.2
    max_rebalances_per_cycle: int = 20
    # A shard moved off a failing or risky cluster is not rebalanced back to it for this long:
    # a link that flaps would otherwise move it there and back on every swing.
    return_cooldown_s: float = 600.0
    # A shard a move brought where it runs is not rebalanced again for this long: every move
    # costs a restart, and the network that made the last move look good is still settling
    # (a degradation that passed, a cost measured in its midst). Risk still moves it at once.
    rebalance_min_dwell_s: float = 300.0
    # A running shard moves to a cluster whose risk is above this share of its job's threshold
    # only when no other cluster will take it: a risk half-way to the threshold is a site that
    # may well be failing too (its rise not confirmed yet), and a shard moved there would move
    # again seconds later, or fail with it.
    move_target_risk_share: float = 0.5
    max_preemption_attempts: int = 20
    max_victims_per_attempt: int = 64
    # Blocked jobs that may make room by moving shards placed earlier in the same cycle.
    max_repair_jobs: int = 32
    max_repair_moves: int = 8
    # Repacking a cycle redoes its assignment; above this many (group, cluster) pairs it is
    # left out to keep a cycle of the largest continuums within a second.
    repack_max_pairs: int = 200_000
    # Local search after the greedy pass, only where groups × clusters is at most this.
    improve_max_pairs: int = 20_000
    improve_max_rounds: int = 4
    # Unused: the cost terms of the largest cycles are computed in dense blocks on one
    # thread (engine.Block). Kept so that configurations that set it still load.
    threads: int = field(default_factory=lambda: min(os.cpu_count() or 1, 4))
    # Reasons and unschedulable sentences; the simulator turns them off for speed.
    explain: bool = True
    seed: int = 0
    clock: Callable[[], float] = field(default=time.perf_counter, compare=False)


class Order(StrEnum):
    DRF = "drf"
    FIFO = "fifo"
    RANDOM = "random"


class Score(StrEnum):
    OBJECTIVE = "objective"
    OBJECTIVE_WITHOUT_SLO = "objective-without-slo"
    LATENCY = "latency"
    FIRST_FIT = "first-fit"
    LEAST_LOADED = "least-loaded"
    RANDOM = "random"


class Assign(StrEnum):
    BEST = "best"
    WHOLE_JOB = "whole-job"
    STATIC_SPLIT = "static-split"


@dataclass(frozen=True)
class Strategy:
    """What a policy does at each step of the shared cycle (see docs/scheduler.md)."""

    name: str
    summary: str
    order: Order = Order.DRF
    filters: frozenset[str] = ALL_FILTERS
    score: Score = Score.OBJECTIVE
    assign: Assign = Assign.BEST
    gang: bool = True
    quota: bool = False
    preempt: bool = False
    proactive: bool = False
    rebalance: bool = False
    rigid_first: bool = False
    # Earliest deadline first within a tenant's jobs of one priority (with rigid_first).
    deadlines: bool = False
    # When given, every job may use these tiers alone, whatever it allows (cloud-only).
    tiers: tuple[Tier, ...] = ()
    repair: bool = False
    improve: bool = False
