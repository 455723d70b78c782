"""One scheduling cycle, shared by every policy; a `Strategy` says what each step does.

The steps, in order:
1. Running shards on a missing or unhealthy cluster become pending again (Failure).
2. Pending work is split into placement groups; the filters (once per filter class) and the
   score (in dense blocks for groups without a residency bound, pair by pair for the others)
   are computed for all (group, cluster) pairs at once.
3. Jobs are taken in the strategy's order (DRF: lowest weighted dominant share first; within
   a tenant, continuum puts the earliest deadline first), jobs that already run first. Each
   job's groups are assigned against the free capacity of the moment; a gang that does not
   reach minAvailable is rolled back, and a later job of the same signature is not tried.
4. Blocked jobs get room by moving shards placed earlier in the cycle (repair), and the cycle
   is packed again least-flexible job first if that places more (repack).
5. Blocked jobs of tenants below their fair share may preempt tenants above theirs; evicted
   shards go elsewhere in the same cycle where idle room is left (Migration reason Preemption).
6. A bounded local search improves the assignment (small instances only).
7. Running shards on risky clusters move (Proactive); others move only for a large gain
   (Rebalance).
"""

from __future__ import annotations

import gc
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from continuum.schedulers.arrays import (
    RESIDENCY_CODE,
    BoolArray,
    ClusterArrays,
    FloatArray,
    Groups,
    GroupSpec,
    IntArray,
    SiteIndex,
    build_cluster_arrays,
    build_groups,
    build_site_index,
    fit_counts,
    ragged_ranges,
    split_into_groups,
    unique_rows,
)
from continuum.schedulers.config import Assign, Order, PolicyConfig, Score, Strategy
from continuum.schedulers.explain import chosen_reasons, rejection_reason, unschedulable_sentence
from continuum.schedulers.fairness import DrfQueue, dominant_share, fair_shares
from continuum.schedulers.filters import FilterMatrices, filter_matrices
from continuum.schedulers.model import (
    CycleResult,
    CycleTiming,
    Decision,
    Job,
    Migration,
    MigrationReason,
    Preemption,
    Residency,
    Snapshot,
    Tenant,
    Tier,
    Unschedulable,
)
from continuum.schedulers.scoring import (
    ClusterTables,
    CostTerms,
    ObjectiveWeights,
    block_terms,
    cost_matrix_terms,
    cost_terms,
)

ShardKey = tuple[int, int]
# Whether a job fits this cycle: (shards its gang needs, per group the number of its
# (filter class, shard size class, pending shards)).
Signature = tuple[int, tuple[int, ...]]

# How many of its best clusters a group tries with cheap scalar checks (see _assign_best).
SHORTLIST = 2


@dataclass(frozen=True)
class Block:
    """Groups that pass the same clusters whatever their data (no residency bound): their cost
    terms are one dense (rows × columns) block, computed with row gathers of per-cluster
    tables instead of pair by pair. Most pairs of a large cycle live in a few blocks."""

    rows: IntArray
    columns: IntArray
    terms: CostTerms


@dataclass(frozen=True)
class CycleMatrices:
    """Everything a cycle derives from the snapshot before it assigns anything."""

    snapshot: Snapshot
    sites: SiteIndex
    clusters: ClusterArrays
    jobs: tuple[Job, ...]
    tenants: dict[str, Tenant]
    occupied: dict[ShardKey, int]
    failed: dict[ShardKey, int]
    groups: Groups
    groups_of_job: dict[int, list[int]]
    filters: FilterMatrices
    rejections: IntArray
    # The (group, cluster) pairs that pass every filter, for the groups outside blocks, group
    # by group in cluster order: group g owns pair_cluster[offsets[g]:offsets[g + 1]].
    pair_group: IntArray
    pair_cluster: IntArray
    offsets: IntArray
    terms: CostTerms
    blocks: tuple[Block, ...]
    # Per group: its block (-1 for none) and its row there.
    block_of: IntArray
    block_row: IntArray
    # Per group: how many clusters pass its filters; offsets of all pairs in the canonical
    # order (group by group, clusters in order), whatever holds them.
    candidate_counts: IntArray
    all_offsets: IntArray
    free: FloatArray

    def pairs_of(self, group: int) -> slice:
        return slice(int(self.offsets[group]), int(self.offsets[group + 1]))

    def candidates(self, group: int) -> IntArray:
        """The clusters that pass the group's filters, in cluster order."""
        block = int(self.block_of[group])
        if block >= 0:
            return self.blocks[block].columns
        return self.pair_cluster[self.pairs_of(group)]

    @property
    def pair_count(self) -> int:
        return int(self.all_offsets[-1])

    def all_pairs(self) -> tuple[IntArray, IntArray, FloatArray]:
        """(group, cluster, objective total) of every pair that passes, in canonical order."""
        pair_group = np.repeat(np.arange(len(self.groups), dtype=np.int64), self.candidate_counts)
        pair_cluster = np.zeros(self.pair_count, dtype=np.int64)
        total = np.zeros(self.pair_count)
        outside = ragged_ranges(self.all_offsets[:-1], self.offsets[1:] - self.offsets[:-1])
        pair_cluster[outside] = self.pair_cluster
        total[outside] = self.terms.total
        for block in self.blocks:
            positions = _block_positions(self.all_offsets, block)
            pair_cluster[positions] = np.broadcast_to(block.columns, block.terms.total.shape)
            total[positions] = block.terms.total
        return pair_group, pair_cluster, total


def _block_positions(offsets: IntArray, block: Block) -> IntArray:
    """Where a block's pairs sit in a canonical pair order whose group g starts at
    offsets[g]: a block row is one group's whole segment."""
    result: IntArray = offsets[block.rows][:, None] + np.arange(block.columns.size)[None, :]
    return result


def _block_rows(groups: Groups, filters: FilterMatrices, enabled: frozenset[str]) -> list[IntArray]:
    """The groups of each filter class that makes a block: a class without a residency bound
    (its clusters do not depend on where its data is) and with clusters to go to."""
    if not len(groups):
        return []
    wide = (groups.source_residency == RESIDENCY_CODE[Residency.ANY]).all(axis=1)
    if "residency" not in enabled:
        wide[:] = True
    reachable: BoolArray = np.any(filters.passed, axis=1)
    rows = np.flatnonzero(wide & reachable[filters.row_of])
    if not rows.size:
        return []
    classes = filters.row_of[rows]
    # By class, and within a class the groups with an SLO first (see scoring.block_terms).
    order = np.lexsort((~np.isfinite(groups.slo_ms[rows]), classes))
    bounds = np.flatnonzero(np.diff(classes[order])) + 1
    return np.split(rows[order], bounds)


def _outside_pairs(
    groups: Groups, filters: FilterMatrices, in_block: BoolArray
) -> tuple[IntArray, IntArray, IntArray]:
    """(pair_group, pair_cluster, offsets) of the groups outside blocks, from their classes'
    rows of the filter matrix."""
    class_rows, class_columns = np.nonzero(filters.passed)
    class_offsets = np.zeros(filters.passed.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(class_rows, minlength=filters.passed.shape[0]), out=class_offsets[1:])
    row = filters.row_of
    lengths = np.where(in_block, 0, class_offsets[row + 1] - class_offsets[row])
    offsets = np.zeros(len(groups) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    pair_group = np.repeat(np.arange(len(groups), dtype=np.int64), lengths)
    pair_cluster = class_columns[ragged_ranges(class_offsets[row], lengths)].astype(np.int64)
    return pair_group, pair_cluster, offsets


def _cost_blocks(
    groups: Groups,
    clusters: ClusterArrays,
    sites: SiteIndex,
    config: PolicyConfig,
    filters: FilterMatrices,
    block_rows: list[IntArray],
    all_latencies: bool,
) -> tuple[Block, ...]:
    tables = ClusterTables.of(groups, clusters, clusters.allocated, config.weights)
    blocks = []
    for rows in block_rows:
        columns = np.flatnonzero(filters.passes(int(rows[0])))
        terms = block_terms(
            groups,
            clusters,
            sites,
            config.latency_model,
            config.weights,
            tables,
            rows,
            columns,
            all_latencies,
        )
        blocks.append(Block(rows, columns, terms))
    return tuple(blocks)


def prepare(
    snapshot: Snapshot,
    config: PolicyConfig,
    enabled: frozenset[str],
    all_latencies: bool = False,
    tiers: tuple[Tier, ...] = (),
) -> CycleMatrices:
    sites = build_site_index(snapshot)
    clusters = build_cluster_arrays(snapshot, sites)
    jobs = tuple(sorted(snapshot.jobs, key=lambda j: j.key))
    job_index = {job.key: i for i, job in enumerate(jobs)}
    tenants = {t.name: t for t in snapshot.tenants}
    for job in jobs:
        tenants.setdefault(job.tenant, Tenant(job.tenant))

    occupied: dict[ShardKey, int] = {}
    failed: dict[ShardKey, int] = {}
    healthy: list[bool] = clusters.healthy.tolist()
    for running in snapshot.running:
        owner = job_index.get(running.job_key)
        if owner is None or not 0 <= running.shard_index < jobs[owner].shards:
            continue
        key = (owner, running.shard_index)
        cluster = clusters.index.get(running.cluster, -1)
        if cluster >= 0 and healthy[cluster]:
            occupied[key] = cluster
        else:
            failed[key] = cluster

    specs: list[GroupSpec] = []
    groups_of_job: dict[int, list[int]] = defaultdict(list)
    running_shards: dict[int, set[int]] = defaultdict(set)
    for owner, shard in occupied:
        running_shards[owner].add(shard)
    for index, job_spec in enumerate(jobs):
        running_here = running_shards.get(index)
        if running_here is not None and len(running_here) == job_spec.shards:
            continue  # every shard runs: nothing pending
        pending = set(range(job_spec.shards)) - (running_here or set())
        for spec in split_into_groups(index, job_spec, pending, tiers):
            groups_of_job[index].append(len(specs))
            specs.append(spec)
    groups = build_groups(jobs, specs, sites, config.default_risk_threshold)
    filters = filter_matrices(snapshot, groups, clusters, sites, enabled)
    block_rows = _block_rows(groups, filters, enabled)
    block_of = np.full(len(groups), -1, dtype=np.int64)
    block_row = np.zeros(len(groups), dtype=np.int64)
    for number, rows in enumerate(block_rows):
        block_of[rows] = number
        block_row[rows] = np.arange(rows.size)
    pair_group, pair_cluster, offsets = _outside_pairs(groups, filters, block_of >= 0)
    terms = cost_terms(
        groups,
        clusters,
        sites,
        config.latency_model,
        config.weights,
        pair_group,
        pair_cluster,
        clusters.allocated,
        all_latencies=all_latencies,
        detailed=False,
    )
    blocks = _cost_blocks(groups, clusters, sites, config, filters, block_rows, all_latencies)
    candidate_counts = np.count_nonzero(filters.passed, axis=1)[filters.row_of]
    all_offsets = np.zeros(len(groups) + 1, dtype=np.int64)
    np.cumsum(candidate_counts, out=all_offsets[1:])
    return CycleMatrices(
        snapshot=snapshot,
        sites=sites,
        clusters=clusters,
        jobs=jobs,
        tenants=tenants,
        occupied=occupied,
        failed=failed,
        groups=groups,
        groups_of_job=dict(groups_of_job),
        filters=filters,
        rejections=filters.rejection_counts(),
        pair_group=pair_group,
        pair_cluster=pair_cluster,
        offsets=offsets,
        terms=terms,
        blocks=blocks,
        block_of=block_of,
        block_row=block_row,
        candidate_counts=candidate_counts.astype(np.int64),
        all_offsets=all_offsets,
        free=clusters.capacity - clusters.allocated,
    )


@dataclass
class _Placement:
    group: int
    cluster: int
    shards: list[int] = field(default_factory=list)


class _Cycle:
    def __init__(
        self, snapshot: Snapshot, strategy: Strategy, config: PolicyConfig, clock_start: float
    ) -> None:
        self.strategy = strategy
        self.config = config
        self.clock_start = clock_start
        self.m = prepare(
            snapshot,
            config,
            strategy.filters,
            all_latencies=strategy.score is Score.LATENCY,
            tiers=strategy.tiers,
        )
        self.filtered_at = config.clock()
        self.block_of: list[int] = self.m.block_of.tolist()
        self.block_row: list[int] = self.m.block_row.tolist()
        self.score, self.block_scores = self._scores()
        self.shortlist = self._shortlists().tolist()
        # Plain lists for the per-group scalar work of the assignment loop, where numpy's
        # per-element overhead would dominate.
        self.demand_rows: list[list[float]] = self.m.groups.demand.tolist()
        self.needed_resources = [[r for r in range(3) if row[r] > 0] for row in self.demand_rows]
        self.pending_counts: list[int] = self.m.groups.count.tolist()
        jobs = self.m.jobs
        self.job_demand = np.array([job.demand.as_tuple() for job in jobs]).reshape(-1, 3)
        self.pending_shards = np.bincount(
            self.m.groups.job, weights=self.m.groups.count, minlength=len(jobs)
        ).astype(np.int64)
        self.gang_sizes: list[int] = [job.gang_size for job in jobs]
        self.filter_class: list[int] = self.m.filters.row_of.tolist()
        self.demand_class: list[int] = (
            unique_rows(self.m.groups.demand)[1].tolist() if len(self.m.groups) else []
        )
        self.static_targets: dict[tuple[int, int], tuple[IntArray, list[int]]] = {}
        self.failed_signatures: set[Signature] = set()
        self.group_signatures = self._group_signatures()
        self.scored_at = config.clock()
        self.free = self.m.free.copy()
        healthy = self.m.clusters.healthy
        self.total = self.m.clusters.capacity[healthy].sum(axis=0)
        self.usage = self._running_usage()
        self.base_usage = dict(self.usage)
        self.occupied = dict(self.m.occupied)
        self.placements: dict[ShardKey, tuple[int, int]] = {}
        self.blocked: list[tuple[int, int, int]] = []
        self.preemptions: list[Preemption] = []
        self.migrations: list[Migration] = []
        self.moved_reasons: dict[ShardKey, str] = {}
        self.moved_terms: dict[ShardKey, tuple[int, float]] = {}
        self.running_count: dict[int, int] = defaultdict(int)
        for job, _ in self.occupied:
            self.running_count[job] += 1

    def _running_usage(self) -> dict[str, FloatArray]:
        """Per tenant, what its running shards hold, added shard by shard in their order, in
        plain floats: the same sums as adding numpy rows, without a numpy call per shard."""
        sums = {name: [0.0, 0.0, 0.0] for name in self.m.tenants}
        for job, _ in self.m.occupied:
            spec = self.m.jobs[job]
            total = sums[spec.tenant]
            for resource, amount in enumerate(spec.demand.as_tuple()):
                total[resource] += amount
        return {name: np.array(total) for name, total in sums.items()}

    def _score_of(self, terms: CostTerms, clusters: IntArray) -> FloatArray:
        """The strategy's score (lower is better) from a set of pairs' terms; `clusters`
        broadcasts against them. Score.RANDOM is drawn in _scores."""
        score = self.strategy.score
        if score is Score.OBJECTIVE:
            return terms.total
        if score is Score.OBJECTIVE_WITHOUT_SLO:
            result: FloatArray = terms.total - self.config.weights.slo_miss_usd_h * terms.slo_miss
            return result
        if score is Score.LATENCY:
            return terms.p99_ms
        if score is Score.LEAST_LOADED:
            return terms.utilisation
        first_fit: FloatArray = np.broadcast_to(clusters, terms.total.shape).astype(np.float64)
        return first_fit

    def _scores(self) -> tuple[FloatArray, list[FloatArray]]:
        """Scores of the pairs outside blocks, and one matrix per block."""
        m = self.m
        if self.strategy.score is Score.RANDOM:
            # One draw over every pair in canonical order, whatever holds the pair.
            drawn = np.random.default_rng(self.config.seed).random(m.pair_count)
            outside = ragged_ranges(m.all_offsets[:-1], m.offsets[1:] - m.offsets[:-1])
            return drawn[outside], [drawn[_block_positions(m.all_offsets, b)] for b in m.blocks]
        return self._score_of(m.terms, m.pair_cluster), [
            self._score_of(block.terms, block.columns[None, :]) for block in m.blocks
        ]

    def score_row(self, group: int) -> FloatArray:
        """The group's scores, aligned with `self.m.candidates(group)`."""
        block = self.block_of[group]
        row: FloatArray = (
            self.block_scores[block][self.block_row[group]]
            if block >= 0
            else self.score[self.m.pairs_of(group)]
        )
        return row

    # -- assignment -------------------------------------------------------------------------

    def _take(self, group: int, cluster: int, count: int, out: list[_Placement]) -> None:
        # Scalar updates of the resources the shard asks for: the same floats as subtracting
        # the demand row, without numpy's per-call overhead (the others change by 0).
        free = self.free
        demand_row = self.demand_rows[group]
        for resource in self.needed_resources[group]:
            free[cluster, resource] -= count * demand_row[resource]
        out.append(_Placement(group, cluster, [-1] * count))

    def _shortlists(self) -> IntArray:
        """Per group, its SHORTLIST best clusters by (score, cluster index); -1 pads.

        Pairs are stored group by group in cluster order, so a segment minimum and the first
        pair that reaches it give each group's best cluster without sorting; repeating that
        on what is left gives the next ones. A block row's first minimum does the same.
        """
        groups = len(self.m.groups)
        shortlist = np.full((groups, SHORTLIST), -1, dtype=np.int64)
        for block, block_score in zip(self.m.blocks, self.block_scores, strict=True):
            score = np.array(block_score, dtype=np.float64, copy=True)
            lines = np.arange(block.rows.size)
            for rank in range(SHORTLIST):
                best = np.argmin(score, axis=1)
                finite = np.isfinite(score[lines, best])
                shortlist[block.rows[finite], rank] = block.columns[best[finite]]
                score[lines, best] = np.inf
        offsets = self.m.offsets
        nonempty = np.flatnonzero(offsets[1:] > offsets[:-1])
        if not nonempty.size:
            return shortlist
        score = np.array(self.score, dtype=np.float64, copy=True)
        starts = offsets[nonempty]
        lengths = np.diff(np.append(starts, score.size))
        for rank in range(SHORTLIST):
            best = np.minimum.reduceat(score, starts)
            is_best = score == np.repeat(best, lengths)
            is_best &= np.isfinite(score)
            hits = np.flatnonzero(is_best)
            if not hits.size:
                break
            owners, first = np.unique(self.m.pair_group[hits], return_index=True)
            chosen = hits[first]
            shortlist[owners, rank] = self.m.pair_cluster[chosen]
            score[chosen] = np.inf
        return shortlist

    def _assign_best(self, group: int, out: list[_Placement]) -> None:
        demand_row = self.demand_rows[group]
        needed = self.needed_resources[group]
        left = self.pending_counts[group]
        free = self.free
        tried: list[int] = []
        # Most groups land on one of their best few clusters: try those with scalar checks
        # before paying for a vector pass over every candidate.
        for cluster in self.shortlist[group]:
            if cluster < 0:
                return
            tried.append(cluster)
            count = left
            for resource in needed:
                fit = int((free.item(cluster, resource) + 1e-9) // demand_row[resource])
                count = min(count, fit)
            if count > 0:
                self._take(group, cluster, count, out)
                left -= count
                if not left:
                    return
        demand = self.m.groups.demand[group]
        clusters = self.m.candidates(group)
        if clusters.size <= len(tried):
            return
        lacking = np.zeros(clusters.size, dtype=np.bool_)
        for resource in needed:
            lacking |= free[clusters, resource] < demand[resource] - 1e-9
        lacking[np.searchsorted(clusters, tried)] = True
        row = np.where(lacking, np.inf, self.score_row(group))
        while left > 0:
            best = int(np.argmin(row))
            if not np.isfinite(row[best]):
                break
            cluster = int(clusters[best])
            fit = min((int((free[cluster, r] + 1e-9) // demand[r]) for r in needed), default=left)
            count = min(left, fit)
            if count > 0:
                self._take(group, cluster, count, out)
                left -= count
            row[best] = np.inf

    def _static_targets(self, group: int) -> tuple[IntArray, list[int]]:
        """static_targets, computed once per (filter class, shard count) in a cycle."""
        key = (self.filter_class[group], self.pending_counts[group])
        known = self.static_targets.get(key)
        if known is None:
            known = self.static_targets[key] = static_targets(self.m, group)
        return known

    def _assign_static_split(self, group: int, out: list[_Placement]) -> None:
        """Karmada's static weights: replicas split by cluster cpu capacity, no spill-over."""
        clusters, targets = self._static_targets(group)
        if not targets:
            return
        fit = fit_counts(self.free[clusters], self.m.groups.demand[group]).tolist()
        for cluster, target, room in zip(clusters.tolist(), targets, fit, strict=True):
            placed = min(target, room)
            if placed:
                self._take(group, cluster, placed, out)

    def _assign_whole_job(self, job: int, out: list[_Placement]) -> None:
        """MultiKueue: the first cluster, in order, that admits every pending shard at once."""
        groups = self.m.groups_of_job[job]
        demand = self.m.groups.demand[groups[0]]
        needed = int(self.m.groups.count[groups].sum())
        fit = fit_counts(self.free, demand)
        passed = np.logical_and.reduce([self.m.filters.passes(g) for g in groups])
        candidates = np.flatnonzero(passed & (fit >= needed))
        if candidates.size:
            # The score is first-fit: cluster order is the order of MultiKueue's worker list.
            cluster = int(candidates[0])
            for group in groups:
                self._take(group, cluster, int(self.m.groups.count[group]), out)

    def _release(self, placements: Sequence[_Placement]) -> None:
        for placement in placements:
            self.free[placement.cluster] += (
                len(placement.shards) * self.m.groups.demand[placement.group]
            )

    def _try_job(self, job: int, running: int) -> list[_Placement] | None:
        """Assign a job's pending shards; None (and nothing held) if its gang is not met."""
        out: list[_Placement] = []
        if self.strategy.assign is Assign.WHOLE_JOB:
            self._assign_whole_job(job, out)
        else:
            for group in self.m.groups_of_job[job]:
                if self.strategy.assign is Assign.STATIC_SPLIT:
                    self._assign_static_split(group, out)
                else:
                    self._assign_best(group, out)
        placed = sum(len(p.shards) for p in out)
        needed = max(0, self.gang_sizes[job] - running) if self.strategy.gang else 1
        if placed < max(needed, 1):
            self._release(out)
            return None
        return out

    def _commit(self, job: int, placements: Sequence[_Placement]) -> FloatArray:
        spec = self.m.jobs[job]
        placed = 0
        for placement in placements:
            shards = self.m.groups.specs[placement.group].shards
            taken = [s for s in shards if (job, s) not in self.placements]
            for slot, shard in enumerate(taken[: len(placement.shards)]):
                placement.shards[slot] = shard
                self.placements[(job, shard)] = (placement.group, placement.cluster)
            placed += len(placement.shards)
        charged: FloatArray = placed * self.job_demand[job]
        self.usage[spec.tenant] = self.usage[spec.tenant] + charged
        return charged

    def _job_order(self) -> list[int]:
        pending = sorted(self.m.groups_of_job)
        if self.strategy.order is Order.RANDOM:
            rng = np.random.default_rng(self.config.seed)
            return [pending[i] for i in rng.permutation(len(pending))]
        jobs = self.m.jobs
        if not self.strategy.rigid_first:
            return sorted(pending, key=lambda j: (-jobs[j].priority, jobs[j].submit_time_s, j))
        counts = self.m.candidate_counts

        def candidates(job: int) -> int:
            return min(int(counts[g]) for g in self.m.groups_of_job[job])

        def due(job: int) -> float:
            return job_due_s(jobs[job]) if self.strategy.deadlines else math.inf

        # Within a priority, the earliest deadline first (jobs without one last); then among
        # jobs submitted at the same time, the one with fewer candidate clusters: a flexible
        # job can still go elsewhere afterwards.
        return sorted(
            pending,
            key=lambda j: (-jobs[j].priority, due(j), jobs[j].submit_time_s, candidates(j), j),
        )

    def assign_all(self) -> None:
        # Free capacity only shrinks while jobs are assigned in order (a job that fails gives
        # back what it tried), and whether a job fits depends only on its signature (see
        # _signature) and the free capacity. So a job whose signature already failed in this
        # pass fails again: it is marked blocked without trying, which keeps a long backlog
        # of alike jobs from costing a full attempt each, every cycle.
        self.failed_signatures = set()
        ordered = self._job_order()
        in_flight = {job for job, _ in self.occupied} | {job for job, _ in self.m.failed}
        first = [j for j in ordered if j in in_flight]
        rest = [j for j in ordered if j not in in_flight]
        for job in first:
            self._assign_job(job)
        if self.strategy.order is not Order.DRF:
            for job in rest:
                self._assign_job(job)
            return
        by_tenant: dict[str, list[int]] = defaultdict(list)
        for job in rest:
            by_tenant[self.m.jobs[job].tenant].append(job)
        demand = self.pending_shards[:, None] * self.job_demand
        queue = DrfQueue(
            by_tenant, demand, self.usage, self.m.tenants, self.total, self.strategy.quota
        )
        while (next_job := queue.pop()) is not None:
            charged = self._assign_job(next_job)
            queue.settle(self.m.jobs[next_job].tenant, charged)

    def _pending_demand(self, job: int) -> FloatArray:
        result: FloatArray = self.pending_shards[job] * self.job_demand[job]
        return result

    def _group_signatures(self) -> dict[int, tuple[int, ...]]:
        """Per job, its groups' (filter class, shard size, pending shards), each numbered."""
        groups = self.m.groups
        if not len(groups):
            return {}
        keys = np.column_stack([self.m.filters.row_of, self.demand_class, groups.count])
        numbers = unique_rows(keys)[1].tolist()
        return {
            job: tuple(numbers[g] for g in members) for job, members in self.m.groups_of_job.items()
        }

    def _signature(self, job: int, running: int) -> Signature:
        """What decides whether a job fits: the shards its gang needs, and per group its
        filter class (hence its clusters), its shard size and its pending shards."""
        needed = max(0, self.gang_sizes[job] - running) if self.strategy.gang else 1
        return (max(needed, 1), self.group_signatures[job])

    def _assign_job(self, job: int) -> FloatArray:
        running = self.running_count[job]
        signature = self._signature(job, running)
        placements = None
        if signature not in self.failed_signatures:
            placements = self._try_job(job, running)
        if placements is None:
            self.failed_signatures.add(signature)
            # How many shards would fit is only worth knowing to explain; see _unschedulable.
            self.blocked.append((job, running, -1))
            return np.zeros(3)
        return self._commit(job, placements)

    def _fitting_shards(self, job: int) -> int:
        total = 0
        for group in self.m.groups_of_job[job]:
            clusters = self.m.candidates(group)
            fit = fit_counts(self.free[clusters], self.m.groups.demand[group])
            total += int(min(fit.sum(), self.m.groups.count[group]))
        return total

    # -- preemption -------------------------------------------------------------------------

    def _dominant(self, tenant: str) -> float:
        return dominant_share(self.usage[tenant], self.total)

    def preempt_for_blocked(self) -> None:
        jobs = self.m.jobs
        active = sorted(
            {jobs[j].tenant for j, _ in self.occupied}
            | {jobs[j].tenant for j in self.m.groups_of_job}
        )
        fair = fair_shares({n: self.m.tenants[n].weight for n in active}, active)
        still_blocked = []
        self.evicted: list[tuple[list[tuple[ShardKey, int]], str]] = []
        for attempt, (job, running, fitting) in enumerate(self.blocked):
            if attempt >= self.config.max_preemption_attempts or not self._preempt(
                job, running, fair
            ):
                still_blocked.append((job, running, fitting))
        self.blocked = still_blocked
        # Only once every blocked job has had its try: idle room goes to them first.
        for evicted, preemptor in self.evicted:
            self._replace_evicted(evicted, preemptor)

    def _victim_units(self, job: int, fair: dict[str, float]) -> list[list[ShardKey]]:
        jobs = self.m.jobs
        preemptor = jobs[job]
        allowed = np.logical_or.reduce(
            [self.m.filters.passes(g) for g in self.m.groups_of_job[job]]
        )
        shards_of: dict[int, list[ShardKey]] = defaultdict(list)
        for key in sorted(self.occupied):
            shards_of[key[0]].append(key)
        placed_now = {j for j, _ in self.placements}
        units: list[tuple[tuple[int, float, int, str], list[ShardKey]]] = []
        for victim, keys in shards_of.items():
            spec = jobs[victim]
            if (
                spec.tenant == preemptor.tenant
                or victim in placed_now
                or spec.priority > preemptor.priority
                or self._dominant(spec.tenant) <= fair.get(spec.tenant, 1.0)
                or not any(allowed[self.occupied[k]] for k in keys)
            ):
                continue
            share = -self._dominant(spec.tenant) / self.m.tenants[spec.tenant].weight
            surplus = len(keys) - spec.gang_size
            # Surplus shards beyond minAvailable go one by one; a gang only goes whole.
            for key in sorted(keys, key=lambda k: -k[1])[: max(surplus, 0)]:
                if allowed[self.occupied[key]]:
                    units.append(((spec.priority, share, 0, spec.key), [key]))
            units.append(((spec.priority, share, 1, spec.key), keys))
        units.sort(key=lambda unit: unit[0])
        return [keys for _, keys in units]

    def _preempt(self, job: int, running: int, fair: dict[str, float]) -> bool:
        spec = self.m.jobs[job]
        tenant = spec.tenant
        demand = self._pending_demand(job)
        if tenant not in fair or self._dominant(tenant) >= fair[tenant]:
            return False
        if dominant_share(self.usage[tenant] + demand, self.total) > fair[tenant] + 1e-9:
            return False
        evicted: list[tuple[ShardKey, int]] = []
        for unit in self._victim_units(job, fair)[: self.config.max_victims_per_attempt]:
            keys = [k for k in unit if k in self.occupied]
            if not keys:
                continue
            victim = self.m.jobs[keys[0][0]]
            freed = len(keys) * np.array(victim.demand.as_tuple())
            after = dominant_share(self.usage[victim.tenant] - freed, self.total)
            if after < fair[victim.tenant] - 1e-9:
                continue
            for key in keys:
                cluster = self.occupied.pop(key)
                self.running_count[key[0]] -= 1
                self.free[cluster] += victim.demand.as_tuple()
                evicted.append((key, cluster))
            self.usage[victim.tenant] = self.usage[victim.tenant] - freed
            placements = self._try_job(job, running)
            if placements is not None:
                self._commit(job, placements)
                share = dominant_share(self.usage[tenant] - demand, self.total)
                for (victim_job, shard), cluster in evicted:
                    self.preemptions.append(
                        Preemption(
                            self.m.jobs[victim_job].key,
                            shard,
                            self.m.clusters.names[cluster],
                            f"tenant {self.m.jobs[victim_job].tenant} is above its fair share; "
                            f"{spec.key} of tenant {tenant} (dominant share {share:.3f} below "
                            f"fair {fair[tenant]:.3f}) needs the room",
                        )
                    )
                self.evicted.append((evicted, spec.key))
                return True
        for (victim_job, shard), cluster in evicted:
            victim = self.m.jobs[victim_job]
            self.occupied[(victim_job, shard)] = cluster
            self.running_count[victim_job] += 1
            self.free[cluster] -= victim.demand.as_tuple()
            self.usage[victim.tenant] = self.usage[victim.tenant] + victim.demand.as_tuple()
        return False

    def _replace_evicted(self, evicted: list[tuple[ShardKey, int]], preemptor: str) -> None:
        """Place shards evicted in this cycle on another cluster where idle room is left once
        the blocked jobs have had their turn: all of a victim job's evicted shards or none,
        each at its best cluster by the policy's score. Each one so placed is a Migration with
        reason Preemption (and stays listed in `preemptions`); the others are pending again
        next cycle."""
        m = self.m
        names = m.clusters.names
        by_job: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for (job, shard), cluster in evicted:
            by_job[job].append((shard, cluster))
        everywhere = np.arange(len(names), dtype=np.int64)[None, :]
        for job, shards in sorted(by_job.items()):
            spec = m.jobs[job]
            tiers = self.strategy.tiers
            specs = [g for shard, _ in shards for g in split_into_groups(job, spec, [shard], tiers)]
            groups = build_groups(m.jobs, specs, m.sites, self.config.default_risk_threshold)
            filters = filter_matrices(
                m.snapshot, groups, m.clusters, m.sites, self.strategy.filters
            )
            terms = cost_matrix_terms(
                groups,
                m.clusters,
                m.sites,
                self.config.latency_model,
                self.config.weights,
                m.clusters.capacity - self.free,
            )
            score = np.where(filters.group_rows(), self._score_of(terms, everywhere), np.inf)
            demand = np.array(spec.demand.as_tuple())
            moves: list[tuple[int, int, int, float]] = []
            for row, (shard, source) in enumerate(shards):
                choice = np.where((self.free >= demand - 1e-9).all(axis=1), score[row], np.inf)
                choice[source] = np.inf
                target = int(np.argmin(choice))
                if not np.isfinite(choice[target]):
                    break
                self.free[target] -= demand
                moves.append((shard, source, target, float(terms.total[row, target])))
            if len(moves) < len(shards):
                for _, _, target, _ in moves:
                    self.free[target] += demand
                continue
            self.usage[spec.tenant] = self.usage[spec.tenant] + len(moves) * demand
            for shard, source, target, cost in moves:
                detail = f"preempted from {names[source]} for {preemptor}; room left elsewhere"
                self.migrations.append(
                    Migration(
                        spec.key,
                        shard,
                        names[source],
                        names[target],
                        MigrationReason.PREEMPTION,
                        detail,
                    )
                )
                self.moved_reasons[(job, shard)] = detail
                self.moved_terms[(job, shard)] = (target, cost)
                self.running_count[job] += 1

    # -- repair -----------------------------------------------------------------------------

    def _pair_score(self, group: int, cluster: int) -> float:
        clusters = self.m.candidates(group)
        position = int(np.searchsorted(clusters, cluster))
        if position < clusters.size and clusters[position] == cluster:
            return float(self.score_row(group)[position])
        return float("inf")

    def _best_alternative(self, group: int, avoid: BoolArray) -> int | None:
        clusters = self.m.candidates(group)
        demand = self.m.groups.demand[group]
        usable = ~avoid[clusters]
        for resource in range(3):
            if demand[resource] > 0:
                usable &= self.free[clusters, resource] >= demand[resource] - 1e-9
        if not usable.any():
            return None
        row = np.where(usable, self.score_row(group), np.inf)
        return int(clusters[int(np.argmin(row))])

    def repair_blocked(self) -> None:
        """Make room for blocked jobs by moving shards placed earlier in this cycle to their
        next-best cluster, when that lowers the cycle objective (placing a shard is worth
        `unplaced_usd_h`, far more than the moves cost). No one loses a placement, so the
        tenants' shares only grow."""
        movable_load = np.zeros_like(self.free)
        self._placed_on: dict[int, list[tuple[ShardKey, int]]] = defaultdict(list)
        for key, (group, cluster) in self.placements.items():
            self._placed_on[cluster].append((key, group))
        if self.placements:
            groups, clusters = (
                np.array(v, dtype=np.int64) for v in zip(*self.placements.values(), strict=True)
            )
            np.add.at(movable_load, clusters, self.m.groups.demand[groups])
        still_blocked = []
        for attempt, (job, running, fitting) in enumerate(self.blocked):
            if attempt >= self.config.max_repair_jobs or not self._repair(
                job, running, movable_load
            ):
                still_blocked.append((job, running, fitting))
        self.blocked = still_blocked

    def _could_fit(self, job: int, running: int, movable_load: FloatArray) -> bool:
        """A quick necessary condition: the gang fits if every movable shard left."""
        needed = max(self.m.jobs[job].gang_size - running, 1)
        fitting = 0
        for group in self.m.groups_of_job[job]:
            clusters = self.m.candidates(group)
            room = self.free[clusters] + movable_load[clusters]
            fitting += min(
                int(fit_counts(room, self.m.groups.demand[group]).sum()),
                int(self.m.groups.count[group]),
            )
        return fitting >= needed

    def _repair(self, job: int, running: int, movable_load: FloatArray) -> bool:
        wanted = np.zeros(len(self.m.clusters.names), dtype=np.bool_)
        for group in self.m.groups_of_job[job]:
            wanted[self.m.candidates(group)] = True
        # Moving shards out of the way helps a job confined to a few clusters; one that may
        # use most of the continuum is blocked by total capacity, not by placement.
        if 2 * int(np.count_nonzero(wanted)) > wanted.size:
            return False
        if not (movable_load[wanted] > 0).any() or not self._could_fit(job, running, movable_load):
            return False
        counts = self.m.candidate_counts
        movable = sorted(
            (
                (key, group, cluster)
                for cluster in np.flatnonzero(wanted).tolist()
                for key, group in self._placed_on.get(cluster, ())
                if key[0] != job and self.placements.get(key) == (group, cluster)
            ),
            key=lambda item: (-int(counts[item[1]]), item[0]),
        )
        moves: list[tuple[ShardKey, int, int, int]] = []
        added_cost = 0.0
        for key, group, cluster in movable[: self.config.max_repair_moves]:
            target = self._best_alternative(group, wanted)
            if target is None:
                continue
            added_cost += self._pair_score(group, target) - self._pair_score(group, cluster)
            self._move_placed(key, group, cluster, target)
            self._placed_on[target].append((key, group))
            moves.append((key, group, cluster, target))
            placements = self._try_job(job, running)
            if placements is None:
                continue
            placed = sum(len(p.shards) for p in placements)
            own_cost = sum(len(p.shards) * self._pair_score(p.group, p.cluster) for p in placements)
            if added_cost + own_cost < placed * self.config.weights.unplaced_usd_h:
                self._commit(job, placements)
                for placement in placements:
                    for shard in placement.shards:
                        self._placed_on[placement.cluster].append(((job, shard), placement.group))
                demand = self.m.groups.demand
                for _, moved_group, source, destination in moves:
                    movable_load[source] -= demand[moved_group]
                    movable_load[destination] += demand[moved_group]
                for placement in placements:
                    movable_load[placement.cluster] += (
                        len(placement.shards) * demand[placement.group]
                    )
                return True
            self._release(placements)
            break
        for key, group, cluster, target in reversed(moves):
            self._move_placed(key, group, target, cluster)
        return False

    def repack(self) -> None:
        """Place this cycle's work again, least flexible job first, and keep the packing that
        lowers the objective the most, provided every job admitted so far stays placed.

        Greedy in fairness order lets a flexible job take the one site a residency-bound job
        could use; packing rigid jobs first undoes that. Fairness still decides who is
        admitted when capacity truly runs out, because no admitted job may lose its place.
        """
        if (
            not self.blocked
            or not self.placements
            or self.m.pair_count > self.config.repack_max_pairs
        ):
            return
        candidate_counts = self.m.candidate_counts

        def flexibility(job: int) -> tuple[int, int]:
            counts = [int(candidate_counts[g]) for g in self.m.groups_of_job[job]]
            return (min(counts, default=0), job)

        admitted = sorted({job for job, _ in self.placements}, key=flexibility)
        # Only the capacity this cycle placed on can be rearranged, so only blocked jobs that
        # may use one of those clusters can gain; the others stay blocked untouched.
        used = np.zeros(len(self.m.clusters.names), dtype=np.bool_)
        used[[cluster for _, cluster in self.placements.values()]] = True
        blocked = [job for job, _, _ in self.blocked if self._may_use(job, used)]
        if not blocked:
            return
        best = (self._objective(), self._save())
        original = best[1]
        for order in (sorted(admitted + blocked, key=flexibility), admitted + blocked):
            self._restore(original)
            if self._pack(order, set(admitted)) and self._objective() < best[0] - 1e-9:
                best = (self._objective(), self._save())
        self._restore(best[1])

    def _may_use(self, job: int, clusters: BoolArray) -> bool:
        return any(clusters[self.m.candidates(group)].any() for group in self.m.groups_of_job[job])

    def _objective(self) -> float:
        placed_cost = sum(self._pair_score(g, k) for g, k in self.placements.values())
        return placed_cost - self.config.weights.unplaced_usd_h * len(self.placements)

    def _save(
        self,
    ) -> tuple[
        FloatArray,
        dict[ShardKey, tuple[int, int]],
        dict[str, FloatArray],
        list[tuple[int, int, int]],
    ]:
        return (self.free.copy(), dict(self.placements), dict(self.usage), list(self.blocked))

    def _pack(self, order: Sequence[int], must_place: set[int]) -> bool:
        """Redo this cycle's assignment in `order`; False if a job of must_place fails."""
        blocked_info = {job: (job, running, fitting) for job, running, fitting in self.blocked}
        for group, cluster in self.placements.values():
            self.free[cluster] += self.m.groups.demand[group]
        self.placements = {}
        self.usage = dict(self.base_usage)
        in_order = set(order)
        self.blocked = [entry for entry in self.blocked if entry[0] not in in_order]
        for job in order:
            running = self.running_count[job]
            placements = self._try_job(job, running)
            if placements is not None:
                self._commit(job, placements)
            elif job in must_place:
                return False
            else:
                self.blocked.append(blocked_info.get(job, (job, running, 0)))
        return True

    def _restore(
        self,
        saved: tuple[
            FloatArray,
            dict[ShardKey, tuple[int, int]],
            dict[str, FloatArray],
            list[tuple[int, int, int]],
        ],
    ) -> None:
        # Copies, so that a saved state survives being restored and worked on again.
        free, placements, usage, blocked = saved
        self.free, self.placements = free.copy(), dict(placements)
        self.usage, self.blocked = dict(usage), list(blocked)

    # -- local search -----------------------------------------------------------------------

    def improve(self) -> None:
        """Move placed shards to cheaper clusters, then swap pairs, while the cost drops."""
        groups, clusters = len(self.m.groups), len(self.m.clusters.names)
        if groups * clusters > self.config.improve_max_pairs:
            return
        cost = np.full((groups, clusters), np.inf)
        pair_group, pair_cluster, total = self.m.all_pairs()
        cost[pair_group, pair_cluster] = total
        passed = self.m.filters.group_rows()
        demand = self.m.groups.demand
        for _ in range(self.config.improve_max_rounds):
            changed = False
            for key in sorted(self.placements):
                group, cluster = self.placements[key]
                fit = fit_counts(self.free, demand[group]) > 0
                row = np.where(passed[group] & fit, cost[group], np.inf)
                best = int(np.argmin(row))
                if row[best] < cost[group, cluster] - 1e-9:
                    self._move_placed(key, group, cluster, best)
                    changed = True
            changed |= self._swap_pass(cost, passed, demand)
            if not changed:
                break

    def _move_placed(self, key: ShardKey, group: int, source: int, target: int) -> None:
        self.free[source] += self.m.groups.demand[group]
        self.free[target] -= self.m.groups.demand[group]
        self.placements[key] = (group, target)

    def _swap_pass(self, cost: FloatArray, passed: BoolArray, demand: FloatArray) -> bool:
        keys = sorted(self.placements)
        changed = False
        for i, first in enumerate(keys):
            for second in keys[i + 1 :]:
                group_a, cluster_a = self.placements[first]
                group_b, cluster_b = self.placements[second]
                if cluster_a == cluster_b or group_a == group_b:
                    continue
                gain = (cost[group_a, cluster_a] + cost[group_b, cluster_b]) - (
                    cost[group_a, cluster_b] + cost[group_b, cluster_a]
                )
                if gain <= 1e-9 or not (passed[group_a, cluster_b] and passed[group_b, cluster_a]):
                    continue
                delta = demand[group_a] - demand[group_b]
                if (self.free[cluster_b] - delta < -1e-9).any() or (
                    self.free[cluster_a] + delta < -1e-9
                ).any():
                    continue
                self.free[cluster_b] -= delta
                self.free[cluster_a] += delta
                self.placements[first] = (group_a, cluster_b)
                self.placements[second] = (group_b, cluster_a)
                changed = True
        return changed

    # -- moving running shards --------------------------------------------------------------

    def move_running(self) -> None:
        """Move running shards off risky clusters (Proactive), and move others only when the
        gain passes both rebalance thresholds (Rebalance), at most a few per cycle."""
        if not (self.strategy.proactive or self.strategy.rebalance) or not self.occupied:
            return
        if not self.strategy.rebalance and not self._runs_at_risk():
            return
        m, config = self.m, self.config
        by_place: dict[tuple[int, int], list[int]] = defaultdict(list)
        for (job, shard), cluster in sorted(self.occupied.items()):
            by_place[(job, cluster)].append(shard)
        specs: list[GroupSpec] = []
        current_list: list[int] = []
        for (job, cluster), shards in by_place.items():
            for spec in split_into_groups(job, m.jobs[job], shards, self.strategy.tiers):
                specs.append(spec)
                current_list.append(cluster)
        groups = build_groups(m.jobs, specs, m.sites, config.default_risk_threshold)
        current = np.array(current_list, dtype=np.int64)
        allocated = m.clusters.capacity - self.free
        without_self = allocated.copy()
        np.subtract.at(without_self, current, groups.demand)
        rows = np.arange(len(specs), dtype=np.int64)
        here = cost_terms(
            groups,
            m.clusters,
            m.sites,
            config.latency_model,
            config.weights,
            rows,
            current,
            without_self,
        ).total
        risky = m.clusters.risk[current] > groups.risk_threshold
        risky &= np.array([m.jobs[spec.job].proactive for spec in specs], dtype=np.bool_)
        if not self.strategy.proactive:
            risky[:] = False
        # Only the rows that may move have options; the others gain nothing anywhere.
        moving = self._may_move(groups, here, risky)
        if not moving.size:
            return
        options = self._running_options(specs, groups, current, allocated, moving)
        moving_specs = [specs[row] for row in moving.tolist()]
        self._bar_settling_and_returns(options, moving_specs, risky[moving].tolist())
        # Where a move may go when nothing better will take it (see move_target_risk_share).
        wary = m.clusters.risk[None, :] > (
            config.move_target_risk_share * groups.risk_threshold[moving, None]
        )
        gain_bound = here[moving] - np.where(wary, np.inf, options).min(axis=1)
        worth = gain_bound >= np.maximum(
            config.rebalance_min_gain_usd_h, config.rebalance_min_gain_fraction * here[moving]
        )
        candidates = np.flatnonzero(risky[moving] | (worth & self.strategy.rebalance))
        # Positions in `moving`, taken in the order of (not risky, -gain bound, row).
        order = sorted(
            candidates.tolist(), key=lambda p: (not risky[moving[p]], -gain_bound[p], moving[p])
        )
        rebalances = 0
        for position in order:
            row = int(moving[position])
            if not risky[row] and rebalances >= config.max_rebalances_per_cycle:
                continue
            source = int(current[row])
            # A risky cluster is left by every shard; a rebalance moves one shard a cycle.
            shards = list(specs[row].shards) if risky[row] else [specs[row].shards[0]]
            for shard in shards:
                demand = groups.demand[row]
                fits = (self.free >= demand - 1e-9).all(axis=1)
                choice = np.where(fits, options[position], np.inf)
                calm = np.where(wary[position], np.inf, choice)
                # A rebalance never goes to a wary cluster; a risky shard does if it must.
                target = int(np.argmin(calm if np.isfinite(calm).any() or not risky[row]
                                       else choice))  # fmt: skip
                if not np.isfinite(choice[target]) or (not risky[row] and wary[position, target]):
                    break
                gain = float(here[row] - choice[target])
                if risky[row]:
                    reason = MigrationReason.PROACTIVE
                    detail = (
                        f"risk {m.clusters.risk[source]:.2f} of {m.clusters.names[source]} "
                        f"is above the threshold {groups.risk_threshold[row]:g}"
                    )
                else:
                    needed = max(
                        config.rebalance_min_gain_usd_h,
                        config.rebalance_min_gain_fraction * float(here[row]),
                    )
                    if gain < needed:
                        break
                    reason = MigrationReason.REBALANCE
                    detail = f"gains {gain:.3f} $/h over {m.clusters.names[source]}"
                    rebalances += 1
                self._move_running(specs[row].job, shard, source, target, demand)
                self.migrations.append(
                    Migration(
                        m.jobs[specs[row].job].key,
                        shard,
                        m.clusters.names[source],
                        m.clusters.names[target],
                        reason,
                        detail,
                    )
                )
                self.moved_reasons[(specs[row].job, shard)] = detail
                self.moved_terms[(specs[row].job, shard)] = (target, float(choice[target]))

    def _may_move(self, groups: Groups, here: FloatArray, risky: BoolArray) -> IntArray:
        """The running groups that may move: those on a risky cluster and, when the strategy
        rebalances, those whose move could gain enough.

        A move gains at most the group's cost where it runs when no cost can be negative, so
        a group that costs less than the least rebalancing gain moves only off a risky
        cluster.
        """
        m, config = self.m, self.config
        may_move = risky.copy()
        if self.strategy.rebalance:
            if _costs_are_non_negative(groups, m.clusters, config.weights):
                may_move |= here >= config.rebalance_min_gain_usd_h
            else:
                may_move[:] = True
        return np.flatnonzero(may_move)

    def _running_options(
        self,
        specs: list[GroupSpec],
        groups: Groups,
        current: IntArray,
        allocated: FloatArray,
        moving: IntArray,
    ) -> FloatArray:
        """(moving running groups × clusters): what each would cost on every other cluster
        past its filters, inf elsewhere."""
        m, config = self.m, self.config
        subset = build_groups(
            m.jobs, [specs[row] for row in moving.tolist()], m.sites, config.default_risk_threshold
        )
        filters = filter_matrices(m.snapshot, subset, m.clusters, m.sites, self.strategy.filters)
        elsewhere = cost_matrix_terms(
            subset, m.clusters, m.sites, config.latency_model, config.weights, allocated
        ).total
        options: FloatArray = np.where(filters.group_rows(), elsewhere, np.inf)
        options[np.arange(moving.size), current[moving]] = np.inf
        return options

    def _bar_settling_and_returns(
        self, options: FloatArray, specs: list[GroupSpec], risky: list[bool]
    ) -> None:
        """No rebalance for a shard within its minimum dwell, nor back to a cluster it left
        for failure or risk within the return cooldown: those options (rows aligned with
        `specs`) become inf. A shard on a risky cluster leaves whatever they say."""
        if all(risky):
            return
        barred = self._barred_returns()
        settling = self._settling()
        for row, spec in enumerate(specs):
            if risky[row]:
                continue
            if any((spec.job, shard) in settling for shard in spec.shards):
                options[row] = np.inf
                continue
            for shard in spec.shards:
                clusters = barred.get((spec.job, shard))
                if clusters:
                    options[row, sorted(clusters)] = np.inf

    def _barred_returns(self) -> dict[ShardKey, set[int]]:
        """The clusters each running shard left for failure or risk within the return
        cooldown: no rebalance takes it back there yet."""
        m, cooldown_s = self.m, self.config.return_cooldown_s
        index = {job.key: i for i, job in enumerate(m.jobs)}
        barred: dict[ShardKey, set[int]] = defaultdict(set)
        for running in m.snapshot.running:
            owner = index.get(running.job_key)
            for departure in running.departures:
                cluster = m.clusters.index.get(departure.cluster)
                recent = m.snapshot.now_s - departure.at_s < cooldown_s
                if owner is not None and cluster is not None and recent:
                    barred[(owner, running.shard_index)].add(cluster)
        return barred

    def _settling(self) -> set[ShardKey]:
        """The running shards a move brought where they run within the minimum dwell: no
        rebalance moves them yet."""
        m, dwell_s = self.m, self.config.rebalance_min_dwell_s
        index = {job.key: i for i, job in enumerate(m.jobs)}
        settling: set[ShardKey] = set()
        for running in m.snapshot.running:
            owner = index.get(running.job_key)
            arrived = running.arrived_at_s
            if owner is not None and arrived is not None and m.snapshot.now_s - arrived < dwell_s:
                settling.add((owner, running.shard_index))
        return settling

    def _runs_at_risk(self) -> bool:
        """Whether a running shard is on a cluster riskier than its job accepts: without
        rebalancing, only those move (the test of move_running, shard by shard)."""
        risk = self.m.clusters.risk.tolist()
        jobs = self.m.jobs
        default = self.config.default_risk_threshold
        for (job, _), cluster in self.occupied.items():
            if not jobs[job].proactive:
                continue
            threshold = jobs[job].risk_threshold
            if risk[cluster] > (default if threshold is None else threshold):
                return True
        return False

    def _move_running(
        self, job: int, shard: int, source: int, target: int, demand: FloatArray
    ) -> None:
        self.free[target] -= demand
        self.free[source] += demand
        del self.occupied[(job, shard)]

    # -- result -----------------------------------------------------------------------------

    def result(self) -> CycleResult:
        m = self.m
        total_clusters = len(m.clusters.names)
        chosen = sorted(set(self.placements.values()))
        terms = self._chosen_terms(chosen)
        reasons: dict[tuple[int, int], tuple[str, ...]] = dict.fromkeys(chosen, ())
        if self.config.explain:
            reasons = self._all_reasons(chosen, terms, total_clusters)
        scores = dict(zip(chosen, terms.total.tolist(), strict=True))
        names = m.clusters.names
        job_keys = [job.key for job in m.jobs]
        decisions = [
            Decision(job_keys[job], shard, names[pair[1]], scores[pair], reasons[pair])
            for (job, shard), pair in sorted(self.placements.items())
        ]
        failure_migrations = [
            Migration(
                m.jobs[job].key,
                shard,
                m.clusters.names[source] if source >= 0 else "",
                self.m.clusters.names[self.placements[(job, shard)][1]],
                MigrationReason.FAILURE,
                "its cluster is unhealthy or gone",
            )
            for (job, shard), source in sorted(m.failed.items())
            if (job, shard) in self.placements
        ]
        for key, (target, score) in sorted(self.moved_terms.items()):
            job = m.jobs[key[0]]
            decisions.append(
                Decision(
                    job.key,
                    key[1],
                    m.clusters.names[target],
                    score,
                    (f"moved: {self.moved_reasons[key]}",),
                )
            )
        unschedulable = [
            self._unschedulable(job, running, fitting)
            if self.config.explain
            else Unschedulable(m.jobs[job].key, "")
            for job, running, fitting in self.blocked
        ]
        end = self.config.clock()
        timing = CycleTiming(
            total_ms=(end - self.clock_start) * 1000,
            filter_ms=(self.filtered_at - self.clock_start) * 1000,
            score_ms=(self.scored_at - self.filtered_at) * 1000,
            assign_ms=(end - self.scored_at) * 1000,
        )
        return CycleResult(
            policy=self.strategy.name,
            decisions=tuple(decisions),
            unschedulable=tuple(sorted(unschedulable, key=lambda u: u.job_key)),
            preemptions=tuple(self.preemptions),
            migrations=tuple(failure_migrations + self.migrations),
            timing=timing,
        )

    def _chosen_terms(self, chosen: Sequence[tuple[int, int]]) -> CostTerms:
        pairs = np.array(chosen, dtype=np.int64).reshape(-1, 2)
        config = self.config
        return cost_terms(
            self.m.groups,
            self.m.clusters,
            self.m.sites,
            config.latency_model,
            config.weights,
            pairs[:, 0],
            pairs[:, 1],
            self.m.clusters.allocated,
        )

    def _no_room(self, groups: list[int]) -> dict[int, int]:
        """Per group, the clusters past its filters without room for one more of its shards
        once the cycle is done."""
        if not groups:
            return {}
        # The count depends only on the group's shard size and filter class: computed once
        # per pair of them that occurs.
        index = np.array(groups, dtype=np.int64)
        kinds = np.column_stack([np.array(self.demand_class)[index], self.m.filters.row_of[index]])
        representative, kind_of = unique_rows(kinds)
        first = index[representative]
        demand = self.m.groups.demand[first]
        lacking = np.zeros((first.size, len(self.m.clusters.names)), dtype=np.bool_)
        for resource in range(3):
            wanted = demand[:, resource] > 0
            if wanted.any():
                short = self.free[None, :, resource] < demand[:, resource, None] - 1e-9
                lacking |= short & wanted[:, None]
        lacking &= self.m.filters.group_rows(first)
        counts = np.count_nonzero(lacking, axis=1)[kind_of.reshape(-1)].tolist()
        return dict(zip(groups, counts, strict=True))

    def _all_reasons(
        self, chosen: list[tuple[int, int]], terms: CostTerms, total_clusters: int
    ) -> dict[tuple[int, int], tuple[str, ...]]:
        """Reasons per chosen (group, cluster): the filter rejections of the group, then the
        chosen cluster's terms. Values go through tolist() once: numpy scalars are slow to
        format one by one, and a big cycle has thousands of pairs."""
        m = self.m
        groups = sorted({group for group, _ in chosen})
        no_room = self._no_room(groups)
        # Groups of one filter class share their rejection counts: one sentence per
        # (class, clusters without room).
        row_of = m.filters.row_of.tolist()
        sentences: dict[tuple[int, int], str] = {}
        rejected = {}
        for group in groups:
            key = (row_of[group], no_room[group])
            sentence = sentences.get(key)
            if sentence is None:
                counts = m.rejections[group].tolist()
                sentence = rejection_reason(
                    list(zip(m.filters.names, counts, strict=True)), key[1], total_clusters
                )
                sentences[key] = sentence
            rejected[group] = sentence
        policy = f"policy {self.strategy.name}: {self.strategy.summary}"
        slo = m.groups.slo_ms.tolist()
        assert terms.wan_mbps is not None and terms.wan_usd_h is not None
        assert terms.compute_usd_h is not None and terms.risk is not None
        columns = zip(
            terms.total.tolist(),
            terms.p99_ms.tolist(),
            terms.wan_mbps.tolist(),
            terms.wan_usd_h.tolist(),
            terms.compute_usd_h.tolist(),
            terms.utilisation.tolist(),
            terms.risk.tolist(),
            strict=True,
        )
        result = {}
        for (group, cluster), values in zip(chosen, columns, strict=True):
            total, p99, wan, wan_usd, compute, utilisation, risk = values
            described = chosen_reasons(
                m.clusters.names[cluster],
                total,
                p99,
                slo[group],
                wan,
                wan_usd,
                compute,
                utilisation,
                risk,
            )
            result[(group, cluster)] = (rejected[group], *described, policy)
        return result

    def _unschedulable(self, job: int, running: int, fitting: int) -> Unschedulable:
        m = self.m
        if fitting < 0:
            fitting = self._fitting_shards(job)
        spec = m.jobs[job]
        group = m.groups_of_job[job][0]
        needed = max(spec.gang_size - running, 1) if self.strategy.gang else 1
        for candidate in m.groups_of_job[job]:
            fit = fit_counts(self.free, m.groups.demand[candidate])
            if not (m.filters.passes(candidate) & (fit > 0)).any():
                group = candidate
                break
        masks = m.filters.mask_rows(group)
        sentence = unschedulable_sentence(
            spec,
            m.groups.specs[group],
            masks,
            m.clusters,
            m.sites,
            self.free,
            needed,
            fitting,
        )
        return Unschedulable(spec.key, sentence)


def _costs_are_non_negative(
    groups: Groups, clusters: ClusterArrays, weights: ObjectiveWeights
) -> bool:
    """Whether every term of a pair's cost is at least 0 (see scoring.cost_terms)."""
    return (
        min(weights.slo_miss_usd_h, weights.wan_usd_per_gb, weights.balance_usd_h) >= 0
        and weights.risk_usd_h >= 0
        and bool((groups.source_rate >= 0).all())
        and bool((clusters.cost_per_hour >= 0).all())
        and bool((clusters.risk >= 0).all())
    )


def static_targets(m: CycleMatrices, group: int) -> tuple[IntArray, list[int]]:
    """Karmada's split of a group's pending replicas over the clusters that pass its filters:
    (the clusters given at least one, how many each). See static_split."""
    clusters = m.candidates(group)
    return static_split(clusters, m.clusters.capacity[clusters, 0], int(m.groups.count[group]))


def static_split(clusters: IntArray, cpu: FloatArray, count: int) -> tuple[IntArray, list[int]]:
    """Karmada's static weighted split of `count` replicas over these clusters, weighted by
    their cpu capacity alone: (the clusters given at least one, how many each)."""
    if cpu.sum() <= 0:
        return np.zeros(0, dtype=np.int64), []
    quota = cpu / cpu.sum() * count
    target = np.floor(quota).astype(np.int64)
    remainder = count - int(target.sum())
    if remainder:
        # Largest remainder first; a stable sort keeps name order among equal ones.
        order = np.argsort(-(quota - target), kind="stable")[:remainder]
        target[order] += 1
    positions = np.flatnonzero(target)
    return clusters[positions], target[positions].tolist()


def job_due_s(job: Job) -> float:
    """When the job is due, on the snapshot's clock: submission plus its deadline; infinity
    without a deadline."""
    return math.inf if job.deadline_s is None else job.submit_time_s + job.deadline_s


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the length of a cycle.

    A large cycle allocates hundreds of thousands of short-lived tuples and lists, which
    trigger about 200 collections, each walking every live object of the process (the
    snapshot's jobs among them): a tenth of the cycle. The cycle builds no reference cycles
    that would need the collector, so reference counting frees its garbage either way; the
    collector is enabled again afterwards if it was on.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def run_cycle(snapshot: Snapshot, strategy: Strategy, config: PolicyConfig) -> CycleResult:
    with _collector_paused():
        start = config.clock()
        cycle = _Cycle(snapshot, strategy, config, start)
        cycle.assign_all()
        if strategy.repair and cycle.blocked:
            cycle.repair_blocked()
            cycle.repack()
        if strategy.preempt and cycle.blocked:
            cycle.preempt_for_blocked()
        if strategy.improve:
            cycle.improve()
        cycle.move_running()
        return cycle.result()


def placement_groups(matrices: CycleMatrices) -> dict[ShardKey, int]:
    """(job index, shard) -> the group that holds it, for every pending shard."""
    return {
        (spec.job, shard): group
        for group, spec in enumerate(matrices.groups.specs)
        for shard in spec.shards
    }
