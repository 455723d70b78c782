"""The jobs a simulation leaves out of its cycles until room may have freed up for them.

In a cycle of a policy that takes jobs in a fixed order (priority, arrival), scores clusters
without randomness and has no step that looks at blocked jobs (repair, preemption) or moves
running shards, free capacity only shrinks, whether a job fits is monotone in it, and a job
that does not fit changes nothing for the others. That is fifo, multikueue, karmada,
cloud-only and nearest: the anchors that build long backlogs, whose every cycle would
otherwise retry every job of the backlog. Such a job can be left out of a cycle in which it
would not fit, with no decision changed. A job that found no room waits here, and comes back
only for a cycle in which it may fit:
- after a completion freed room for one of its shards on one of the clusters it could use:
  those past its filters (and tiers), and for karmada those its static split gives replicas
  to; elsewhere the room only shrank;
- and only if the jobs of its pool ahead of it that ask for no more leave room for it (see
  Backlog.wake);
- or when a cluster it could use opens (comes back, or its risk falls where risk filters),
  when a cluster one of its shards runs on changes, and for karmada when one of the clusters
  its static split weighs goes down: its replicas are split again over the others.
DRF order depends on every tenant's usage and blocked jobs feed repair and preemption, so
continuum and drf schedule every job every cycle; random draws over the jobs it is given.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from continuum.schedulers.arrays import IntArray
from continuum.schedulers.config import Assign, Order, PolicyConfig, Score, Strategy
from continuum.schedulers.engine import prepare, static_split
from continuum.schedulers.model import Job, Snapshot
from continuum.schedulers.policy import STRATEGIES
from continuum.schedulers.trace import FailureKind, Workload

# Room this much short of a shard still counts as holding it: the engine forgives 1e-9 of
# float noise (arrays.fit_counts), and waking a job too many costs a retry, not a decision.
ROOM_SLACK = 1e-6


def skips_hopeless(policy: str) -> bool:
    """Whether a job that found no room in a cycle may sit out the next cycles, until room
    frees up for it, without changing any decision (see the module's docstring)."""
    strategy = STRATEGIES[policy]
    return (
        strategy.order is Order.FIFO
        and strategy.score is not Score.RANDOM
        and not (
            strategy.repair
            or strategy.preempt
            or strategy.proactive
            or strategy.rebalance
            or strategy.improve
        )
    )


@dataclass(frozen=True)
class _Group:
    """One placement group of a job with all its shards pending: its shards, and the
    clusters that pass its filters (and tiers) when every cluster is healthy and riskless."""

    shards: frozenset[int]
    candidates: IntArray
    bits: int


def job_groups(workload: Workload, strategy: Strategy) -> dict[str, list[_Group]]:
    """Per job, its placement groups as the policy's cycle would build them with no shard
    running (health and risk only take clusters away from these)."""
    topology = workload.topology
    clusters = tuple(replace(c, healthy=True, risk=0.0) for c in topology.clusters)
    snapshot = Snapshot(
        sites=topology.sites,
        clusters=clusters,
        jobs=tuple(trace.job for trace in workload.jobs),
        tenants=topology.tenants,
        network=topology.network,
    )
    m = prepare(snapshot, PolicyConfig(explain=False), strategy.filters, tiers=strategy.tiers)
    groups: dict[str, list[_Group]] = {}
    rows = m.filters.group_rows()
    for group, owner in enumerate(m.groups.job.tolist()):
        candidates = np.flatnonzero(rows[group])
        groups.setdefault(m.jobs[owner].key, []).append(
            _Group(
                frozenset(m.groups.specs[group].shards),
                candidates,
                sum(1 << int(cluster) for cluster in candidates),
            )
        )
    return groups


Demand = tuple[float, float, float]


@dataclass(frozen=True)
class _Waiting:
    # Jobs of one pool use the same clusters the same way (see Backlog.hold).
    pool: tuple[object, ...]
    # The cycle's order of jobs: those with shards placed first, then priority, arrival, name.
    order: tuple[bool, int, float, str]
    # The clusters past its filters (and tiers) when all are healthy and riskless, and the
    # ones among them it could use now (for a static split, its targets), as bits of the
    # cluster index.
    candidates: int
    reach: int
    demand: Demand
    # The fewest shards it places if it fits.
    least: int


class Backlog:
    """The jobs left out of cycles, and which of them to bring back before a cycle."""

    def __init__(self, workload: Workload, policy: str) -> None:
        strategy = self.strategy = STRATEGIES[policy]
        self.enabled = skips_hopeless(policy)
        clusters = sorted(workload.topology.clusters, key=lambda c: c.name)
        self.names = [c.name for c in clusters]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.cpu = np.array([c.capacity.cpu for c in clusters])
        self.groups = job_groups(workload, strategy) if self.enabled else {}
        # A static split's targets depend on which clusters pass; with health alone that is
        # known here, with risk too it is not, and every cluster past the filters is kept.
        self.static_split = (
            strategy.assign is Assign.STATIC_SPLIT and "risk" not in strategy.filters
        )
        self.everywhere = (1 << len(self.names)) - 1
        # A static split's targets (bits) by (the clusters that pass, replicas to split).
        self._split: dict[tuple[int, int], int] = {}
        self.waiting: dict[str, _Waiting] = {}
        # The same jobs by pool.
        self.pools: dict[tuple[object, ...], dict[str, _Waiting]] = {}
        # Clusters a completion freed room on since the last cycle.
        self.freed: set[str] = set()

    def __contains__(self, key: str) -> bool:
        return key in self.waiting

    def __len__(self) -> int:
        return len(self.waiting)

    def hold(self, job: Job, shards: Mapping[int, str], down: Collection[str]) -> None:
        """Leave out this job, which found no room in the cycle just run, until room may
        have freed up for it; `shards` says where its shards run, `down` which clusters are
        down.

        Whether a job fits depends on its clusters, its shard size and the shards it must
        place: the gang it still needs (one without gangs; all pending shards for a whole-job
        policy). Jobs of one pool have the same clusters (and, where that changes which pass
        or which are tried, the same accepted risk and latency inputs), so that one fits
        wherever another of the pool fits that asks for as much.
        """
        if not self.enabled:
            return
        strategy = self.strategy
        groups = self.groups.get(job.key, [])
        running = {shard for shard, cluster in shards.items() if cluster not in down}
        pending = [(group, len(group.shards - running)) for group in groups]
        pending = [(group, count) for group, count in pending if count]
        candidates = 0
        for group, _ in pending:
            candidates |= group.bits
        reach = self._static_split_reach(pending, down) if self.static_split else candidates
        if strategy.assign is Assign.WHOLE_JOB:
            least = sum(count for _, count in pending)
        else:
            least = max(job.gang_size - len(running), 1) if strategy.gang else 1
        # Without gangs a job fits as soon as one shard does on one of its clusters, and a
        # single group's gang as soon as its clusters hold it. Otherwise groups are picked one
        # after the other, each on its own clusters (a static split, on its own targets): such
        # a job fits by more than its clusters together.
        alone = (strategy.gang or strategy.assign is Assign.WHOLE_JOB) and (
            len(pending) > 1 or strategy.assign is Assign.STATIC_SPLIT
        )
        pool = (
            reach,
            job.risk_threshold if "risk" in strategy.filters else None,
            _latency_inputs(job) if strategy.score is Score.LATENCY else None,
            job.key if alone else None,
        )
        order = (not shards, -job.priority, job.submit_time_s, job.key)
        self._drop(job.key)
        waiting = _Waiting(pool, order, candidates, reach, job.demand.as_tuple(), least)
        self.waiting[job.key] = waiting
        self.pools.setdefault(pool, {})[job.key] = waiting

    def _drop(self, key: str) -> None:
        waiting = self.waiting.pop(key, None)
        if waiting is not None:
            members = self.pools[waiting.pool]
            del members[key]
            if not members:
                del self.pools[waiting.pool]

    def _static_split_reach(self, pending: list[tuple[_Group, int]], down: Collection[str]) -> int:
        """The clusters a static split gives the job's pending shards to (engine.static_targets),
        with the clusters that are down taken out."""
        up = self.everywhere
        for name in down:
            up &= ~(1 << self.index[name])
        reach = 0
        for group, count in pending:
            place = (group.bits & up, count)
            targets = self._split.get(place)
            if targets is None:
                candidates = np.array(
                    [i for i in range(len(self.names)) if place[0] >> i & 1], dtype=np.int64
                )
                split, _ = static_split(candidates, self.cpu[candidates], count)
                targets = self._split[place] = sum(1 << int(cluster) for cluster in split)
            reach |= targets
        return reach

    def cluster_changed(
        self, cluster: str, kind: FailureKind, opened: bool, running_there: Collection[str]
    ) -> None:
        """A cluster went down or came back, or its risk rose or fell (`opened`: it came
        back, or its risk fell); `running_there` are the jobs with shards on it.

        A waiting job with shards there has shards that stopped or restarted: it comes back.
        A cluster that opens may pass the filters of the jobs that could use it, which come
        back; one that closes only takes room away, except from a static split, which
        splits its replicas again over the clusters left. Risk matters only to a policy that
        filters on it.
        """
        if kind is FailureKind.DEGRADE and "risk" not in self.strategy.filters:
            return
        for key in running_there:
            self._drop(key)
        if opened or (kind is FailureKind.DOWN and self.static_split):
            bit = 1 << self.index[cluster]
            for key in [k for k, waiting in self.waiting.items() if waiting.candidates & bit]:
                self._drop(key)

    def completed(self, key: str, clusters: Iterable[str]) -> None:
        """A job that ran on these clusters completed (it may have been waiting for room for
        its other shards)."""
        self._drop(key)
        if self.waiting:
            self.freed.update(clusters)

    def wake(self, rooms: Mapping[str, Demand]) -> None:
        """Before a cycle, with `rooms` the free capacity of every cluster: bring back the
        waiting jobs that may fit in it.

        Capacity only shrinks during a cycle, and whether a job fits is monotone in it. A
        job that found no room fits only if a completion since has left room for one of its
        shards on one of its clusters: elsewhere the room only shrank. And a job fits only
        if every job of its pool ahead of it in the cycle's order that asks for no more (no
        larger shard, no more shards) fits too, each placing at least its fewest shards on
        the pool's clusters: when their demand and its own exceed the room of the pool's
        clusters, it does not fit, and neither does any later job of the pool that asks for
        as much. The others come back; the rest would fail in the cycle, and a job that
        fails changes nothing for the others.
        """
        freed, self.freed = self.freed, set()
        if not freed or not self.waiting:
            return
        freed_rooms = [(1 << self.index[name], rooms[name]) for name in freed]
        freed_bits = sum(bit for bit, _ in freed_rooms)
        every_room = [rooms[name] for name in self.names]
        woken: list[str] = []
        for members in self.pools.values():
            if not next(iter(members.values())).reach & freed_bits:
                continue
            ordered = sorted(members.items(), key=lambda member: member[1].order)
            woken.extend(_may_fit(ordered, freed_rooms, every_room))
        for key in woken:
            self._drop(key)


# What a waiting job asks for: its shard size and the fewest shards it places if it fits.
Need = tuple[Demand, int]


def _may_fit(
    members: list[tuple[str, _Waiting]], freed: list[tuple[int, Demand]], rooms: list[Demand]
) -> list[str]:
    """The waiting jobs of one pool, in the cycle's order, that may fit (see Backlog.wake);
    `freed` are the clusters freed since the last cycle (as bits) with their rooms, `rooms`
    every cluster's room in index order."""
    reach = members[0][1].reach
    room = [0.0, 0.0, 0.0]
    for i, cluster_room in enumerate(rooms):
        if reach >> i & 1:
            for r in range(3):
                room[r] += max(cluster_room[r], 0.0)
    # Per need of the pool, the needs that ask for no more (itself among them).
    needs = {(waiting.demand, waiting.least) for _, waiting in members}
    smaller = {need: [other for other in needs if _asks_no_more(other, need)] for need in needs}
    # Per need, the least that the pool's jobs brought back with that need take.
    taken = {need: [0.0, 0.0, 0.0] for need in needs}
    # Needs of jobs that cannot fit: no later job that asks for as much can.
    hopeless: set[Need] = set()
    woken = []
    for key, waiting in members:
        need = (waiting.demand, waiting.least)
        if any(other in hopeless for other in smaller[need]):
            continue
        total = [waiting.least * asked for asked in waiting.demand]
        for other in smaller[need]:
            amount = taken[other]
            for r in range(3):
                total[r] += amount[r]
        room_left = all(
            asked <= 0 or total[r] <= room[r] + ROOM_SLACK for r, asked in enumerate(waiting.demand)
        )
        room_freed = any(
            bit & reach and _shards_held(free, waiting.demand) >= 1 for bit, free in freed
        )
        if not (room_left and room_freed):
            hopeless.add(need)
            if len(hopeless) == len(needs):
                break
            continue
        woken.append(key)
        amount = taken[need]
        for r in range(3):
            amount[r] += waiting.least * waiting.demand[r]
    return woken


def _asks_no_more(first: Need, second: Need) -> bool:
    (demand, least), (other_demand, other_least) = first, second
    return least <= other_least and all(a <= b for a, b in zip(demand, other_demand, strict=True))


def _shards_held(room: tuple[float, float, float], demand: tuple[float, float, float]) -> float:
    """How many shards of `demand` fit in `room`, with the slack (infinity if it asks for
    nothing). A resource the shard does not ask for is not checked, as in the engine: it may
    be overcommitted."""
    return min(
        (
            max(math.floor((free + ROOM_SLACK) / asked), 0)
            for free, asked in zip(room, demand, strict=True)
            if asked > 0
        ),
        default=math.inf,
    )


def _latency_inputs(job: Job) -> tuple[object, ...]:
    """What a job's latency score on a cluster depends on, besides the cluster and its shard
    size (scoring._p99_ms)."""
    return (tuple(source.site for source in job.data), job.request_kb, job.service_ms)
