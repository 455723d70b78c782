"""The exact yardstick: one cycle as a MILP with the same objective and constraints.

Variables: x[g, k], the number of shards of placement group g put on cluster k (only for pairs
that pass every filter), and y[j], whether job j's gang is admitted.
Constraints: at most the pending shards of each group; a job with y = 1 gets at least the
shards its gang still misses and y = 0 gets none; per cluster and resource, the placed demand
fits the free capacity.
Objective: the cycle objective of `evaluate_objective`, the sum over placed shards of their
cost terms plus `unplaced_usd_h` for every pending shard left unplaced.
Running shards stay where they are: the yardstick is for the placement of new work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix

from continuum.schedulers.config import PolicyConfig
from continuum.schedulers.engine import CycleMatrices, placement_groups, prepare
from continuum.schedulers.filters import ALL_FILTERS
from continuum.schedulers.model import CycleResult, Snapshot
from continuum.schedulers.scoring import cost_terms


@dataclass(frozen=True)
class MilpSolution:
    objective: float
    optimal: bool
    status: str
    placement: dict[tuple[str, int], str]
    variables: int


def evaluate_objective(
    snapshot: Snapshot, result: CycleResult, config: PolicyConfig | None = None
) -> float:
    """The cycle objective of a result's new placements, as the MILP counts it.

    A placement that breaks a filter is still costed by its terms; residency violations are
    counted separately by the simulator.
    """
    config = config or PolicyConfig()
    matrices = prepare(snapshot, config, ALL_FILTERS)
    return _objective(matrices, config, result.placement())


def _objective(
    matrices: CycleMatrices, config: PolicyConfig, placement: dict[tuple[str, int], str]
) -> float:
    group_of = placement_groups(matrices)
    unplaced = 0
    chosen_groups: list[int] = []
    chosen_clusters: list[int] = []
    for (job, shard), group in group_of.items():
        cluster = placement.get((matrices.jobs[job].key, shard))
        if cluster is None:
            unplaced += 1
        else:
            chosen_groups.append(group)
            chosen_clusters.append(matrices.clusters.index[cluster])
    terms = cost_terms(
        matrices.groups,
        matrices.clusters,
        matrices.sites,
        config.latency_model,
        config.weights,
        np.array(chosen_groups, dtype=np.int64),
        np.array(chosen_clusters, dtype=np.int64),
        matrices.clusters.allocated,
    )
    return float(terms.total.sum()) + unplaced * config.weights.unplaced_usd_h


def solve_milp(
    snapshot: Snapshot, config: PolicyConfig | None = None, time_limit_s: float = 60.0
) -> MilpSolution:
    config = config or PolicyConfig()
    m = prepare(snapshot, config, ALL_FILTERS)
    groups, clusters = m.groups, m.clusters
    pair_group, pair_cluster, pair_total = m.all_pairs()
    pairs = np.stack([pair_group, pair_cluster], axis=1)
    pair_count = len(pairs)
    gang_jobs = sorted(m.groups_of_job)
    job_column = {job: pair_count + i for i, job in enumerate(gang_jobs)}
    columns = pair_count + len(gang_jobs)

    running = {job: 0 for job in gang_jobs}
    for job, _ in m.occupied:
        if job in running:
            running[job] += 1
    penalty = config.weights.unplaced_usd_h
    cost = np.zeros(columns)
    cost[:pair_count] = pair_total - penalty

    rows: list[int] = []
    cols: list[int] = []
    values: list[float] = []
    lower: list[float] = []
    upper: list[float] = []

    def constraint(entries: list[tuple[int, float]], low: float, high: float) -> None:
        row = len(lower)
        for column, value in entries:
            rows.append(row)
            cols.append(column)
            values.append(value)
        lower.append(low)
        upper.append(high)

    by_group: dict[int, list[int]] = {}
    by_cluster: dict[int, list[int]] = {}
    for column, (group, cluster) in enumerate(pairs):
        by_group.setdefault(int(group), []).append(column)
        by_cluster.setdefault(int(cluster), []).append(column)
    for group, group_columns in by_group.items():
        constraint([(c, 1.0) for c in group_columns], 0.0, float(groups.count[group]))
    for job in gang_jobs:
        job_columns = [c for g in m.groups_of_job[job] for c in by_group.get(g, [])]
        pending = int(groups.count[m.groups_of_job[job]].sum())
        needed = max(m.jobs[job].gang_size - running[job], 1)
        y = job_column[job]
        constraint([*((c, 1.0) for c in job_columns), (y, -float(needed))], 0.0, np.inf)
        constraint([*((c, 1.0) for c in job_columns), (y, -float(pending))], -np.inf, 0.0)
    for cluster, cluster_columns in by_cluster.items():
        for resource in range(3):
            entries = [
                (c, float(groups.demand[pairs[c, 0], resource]))
                for c in cluster_columns
                if groups.demand[pairs[c, 0], resource] > 0
            ]
            if entries:
                constraint(entries, -np.inf, float(m.free[cluster, resource]) + 1e-9)

    upper_bounds = np.ones(columns)
    upper_bounds[:pair_count] = groups.count[pairs[:, 0]]
    matrix = coo_matrix((values, (rows, cols)), shape=(len(lower), columns))
    solution = milp(
        cost,
        constraints=[LinearConstraint(matrix, np.array(lower), np.array(upper))] if lower else [],
        integrality=np.ones(columns),
        bounds=Bounds(np.zeros(columns), upper_bounds),
        options={"time_limit": time_limit_s, "mip_rel_gap": 1e-7},
    )
    total_pending = float(groups.count.sum())
    if solution.x is None:
        return MilpSolution(np.nan, False, solution.message, {}, columns)
    amounts = np.rint(solution.x[:pair_count]).astype(np.int64)
    placement: dict[tuple[str, int], str] = {}
    for position in np.flatnonzero(amounts).tolist():
        group, cluster = (int(v) for v in pairs[position])
        spec = groups.specs[group]
        taken = [s for s in spec.shards if (m.jobs[spec.job].key, s) not in placement]
        for shard in taken[: int(amounts[position])]:
            placement[(m.jobs[spec.job].key, shard)] = clusters.names[cluster]
    objective = float(solution.fun) + penalty * total_pending
    return MilpSolution(objective, solution.status == 0, solution.message, placement, columns)


def optimality_gap(policy_objective: float, optimum: float) -> float:
    """Relative gap to the optimum; 0 when both are 0."""
    if optimum == 0:
        return 0.0 if policy_objective == 0 else float("inf")
    return (policy_objective - optimum) / abs(optimum)
