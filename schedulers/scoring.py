"""The objective, term by term, for any broadcastable set of (group, cluster) pairs.

All terms are in dollars per hour of one shard, so that they add up:
1. a missed latency SLO costs `slo_miss_usd_h`, far more than any cost difference, so the SLO
   comes first;
2. then WAN bytes moved off-site (priced per GB) plus the shard's share of the cluster's cost;
3. then balance (the cluster's dominant utilisation after the shard lands) and risk, with small
   weights, so that they only break near-ties.
Left-over exact ties break on the cluster's name (index order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from continuum.schedulers.arrays import (
    NO_SITE,
    BoolArray,
    ClusterArrays,
    FloatArray,
    Groups,
    IntArray,
    SiteIndex,
    ragged_ranges,
    unique_rows,
)
from continuum.schedulers.network.latency import LatencyModel

SECONDS_PER_HOUR = 3600.0
MEGABITS_PER_GIGABYTE = 8000.0


@dataclass(frozen=True)
class ObjectiveWeights:
    slo_miss_usd_h: float = 100.0
    wan_usd_per_gb: float = 0.05
    balance_usd_h: float = 0.02
    risk_usd_h: float = 0.02
    # What a pending shard left unplaced costs in the cycle objective (and the MILP): more
    # than an SLO miss, so that a shard is placed even where it misses its SLO.
    unplaced_usd_h: float = 1000.0


@dataclass(frozen=True)
class CostTerms:
    p99_ms: FloatArray
    slo_miss: BoolArray
    wan_mbps: FloatArray | None
    wan_usd_h: FloatArray | None
    compute_usd_h: FloatArray | None
    utilisation: FloatArray
    risk: FloatArray | None
    total: FloatArray


def wan_usd_per_hour(wan_mbps: FloatArray, weights: ObjectiveWeights) -> FloatArray:
    result: FloatArray = (
        wan_mbps * SECONDS_PER_HOUR / MEGABITS_PER_GIGABYTE * weights.wan_usd_per_gb
    )
    return result


def cost_terms(
    groups: Groups,
    clusters: ClusterArrays,
    sites: SiteIndex,
    latency: LatencyModel,
    weights: ObjectiveWeights,
    group_index: IntArray,
    cluster_index: IntArray,
    allocated: FloatArray,
    all_latencies: bool = True,
    detailed: bool = True,
) -> CostTerms:
    """Terms for the pairs (group_index, cluster_index), broadcast against each other.

    Without `detailed`, only what decisions need (total, p99, SLO miss, utilisation) is kept;
    the other terms are for reasons, which recompute them for the chosen pairs.

    Utilisation is the cluster's dominant utilisation, over the resources the shard asks for,
    once this one shard is added to `allocated`.
    """
    shape = np.broadcast_shapes(group_index.shape, cluster_index.shape)
    tables = ClusterTables.of(groups, clusters, allocated, weights)
    pair_class = tables.demand_class[group_index]
    utilisation = tables.utilisation[pair_class, cluster_index]

    if all_latencies:
        p99 = _p99_ms(groups, clusters, sites, latency, group_index, cluster_index, utilisation)
    else:
        # Only a missed SLO enters the objective. The round trip alone is a lower bound of
        # the p99, so a pair whose RTT already exceeds the SLO is a miss without the full
        # estimate, and keeps that bound as its p99. Reasons recompute the chosen pairs.
        bounded = np.flatnonzero(np.isfinite(groups.slo_ms[group_index]))
        bound = _rtt_bound_ms(groups, clusters, sites, group_index[bounded], cluster_index[bounded])
        close = bound <= groups.slo_ms[group_index[bounded]]
        p99 = np.zeros(shape)
        p99[bounded] = bound
        chosen = bounded[close]
        p99[chosen] = _p99_ms(
            groups,
            clusters,
            sites,
            latency,
            group_index[chosen],
            cluster_index[chosen],
            utilisation[chosen],
        )
    cluster_site = clusters.site[cluster_index]
    wan_mbps = np.zeros(shape)
    for slot in range(groups.source_site.shape[1]):
        source = groups.source_site[group_index, slot]
        off_site = (source != NO_SITE) & (source != cluster_site)
        wan_mbps += np.where(off_site, groups.source_rate[group_index, slot], 0.0)

    slo_miss = p99 > groups.slo_ms[group_index]
    wan_usd_h = wan_usd_per_hour(wan_mbps, weights)
    total = tables.cluster_part[pair_class, cluster_index]
    total += wan_usd_h
    total += weights.slo_miss_usd_h * slo_miss
    if not detailed:
        return CostTerms(p99, slo_miss, None, None, None, utilisation, None, total)
    compute_usd_h = tables.compute[pair_class, cluster_index]
    risk = np.broadcast_to(clusters.risk[cluster_index], shape)
    return CostTerms(p99, slo_miss, wan_mbps, wan_usd_h, compute_usd_h, utilisation, risk, total)


@dataclass(frozen=True)
class ClusterTables:
    """The terms that depend only on a shard's demand and the cluster, per (distinct demand,
    cluster): jobs ask for few distinct shard sizes, so these are tabulated once and gathered,
    instead of computed per pair."""

    demand_class: IntArray
    utilisation: FloatArray
    compute: FloatArray
    # compute + balance + risk: the part of a pair's total that does not depend on its data.
    cluster_part: FloatArray

    @staticmethod
    def of(
        groups: Groups, clusters: ClusterArrays, allocated: FloatArray, weights: ObjectiveWeights
    ) -> ClusterTables:
        first, demand_class = unique_rows(groups.demand)
        demands = groups.demand[first]
        utilisation, dominant = capacity_tables(demands, clusters.capacity, allocated)
        compute = dominant * clusters.cost_per_hour[None, :]
        cluster_part = (
            compute
            + weights.balance_usd_h * utilisation
            + weights.risk_usd_h * clusters.risk[None, :]
        )
        return ClusterTables(demand_class, utilisation, compute, cluster_part)


def block_terms(
    groups: Groups,
    clusters: ClusterArrays,
    sites: SiteIndex,
    latency: LatencyModel,
    weights: ObjectiveWeights,
    tables: ClusterTables,
    rows: IntArray,
    columns: IntArray,
    all_latencies: bool,
) -> CostTerms:
    """`cost_terms(detailed=False)` for every pair of rows × columns, as (rows, columns) arrays.

    For groups that share their candidate clusters (no residency bound): their terms are dense
    blocks, where the per-cluster tables are gathered row by row instead of pair by pair, and
    the WAN term is one number per row (all its data read off-site) patched at the few
    clusters at its sources' sites. The arithmetic is the same, element by element, so the
    results are bit for bit those of `cost_terms`. Rows with an SLO should come first: their
    p99 bounds are then written in place.
    """
    shape = (rows.size, columns.size)
    demand_class = tables.demand_class[rows]
    utilisation = tables.utilisation[:, columns][demand_class]
    column_site = clusters.site[columns]
    slo = groups.slo_ms[rows]
    bounded = np.flatnonzero(np.isfinite(slo))
    if all_latencies:
        p99 = _p99_ms(
            groups, clusters, sites, latency, rows[:, None], columns[None, :], utilisation
        )
    else:
        # As in cost_terms: the RTT bound first, the full estimate only where it may meet
        # the SLO.
        p99 = np.zeros(shape)
        if bounded.size:
            prefix = int(bounded[-1]) == bounded.size - 1
            bound = p99[: bounded.size] if prefix else np.zeros((bounded.size, columns.size))
            for slot in range(groups.source_site.shape[1]):
                source = groups.source_site[rows[bounded], slot]
                valid = source != NO_SITE
                rtt = sites.rtt_ms[np.where(valid, source, 0)][:, column_site]
                if not valid.all():
                    rtt[~valid] = 0.0
                np.maximum(bound, rtt, out=bound)
            if not prefix:
                p99[bounded] = bound
            close_row, close_column = np.nonzero(bound <= slo[bounded, None])
            block_row = bounded[close_row]
            p99[block_row, close_column] = _p99_ms(
                groups,
                clusters,
                sites,
                latency,
                rows[block_row],
                columns[close_column],
                utilisation[block_row, close_column],
            )
    slo_miss = p99 > slo[:, None]
    sources = groups.source_site[rows]
    rates = groups.source_rate[rows]
    row_mbps = np.zeros(rows.size)
    for slot in range(sources.shape[1]):
        row_mbps += np.where(sources[:, slot] != NO_SITE, rates[:, slot], 0.0)
    cell_row, cell_column = _on_site_cells(sources, column_site)
    cell_mbps = np.zeros(cell_row.size)
    for slot in range(sources.shape[1]):
        source = sources[cell_row, slot]
        off_site = (source != NO_SITE) & (source != column_site[cell_column])
        cell_mbps += np.where(off_site, rates[cell_row, slot], 0.0)
    part = tables.cluster_part[:, columns]
    total = part[demand_class]
    total += wan_usd_per_hour(row_mbps, weights)[:, None]
    total[cell_row, cell_column] = part[demand_class[cell_row], cell_column] + wan_usd_per_hour(
        cell_mbps, weights
    )
    if bounded.size:
        # Only rows with an SLO can miss it; elsewhere the term adds 0.
        total[bounded] += weights.slo_miss_usd_h * slo_miss[bounded]
    return CostTerms(p99, slo_miss, None, None, None, utilisation, None, total)


def _on_site_cells(sources: IntArray, column_site: IntArray) -> tuple[IntArray, IntArray]:
    """(row, column) of the cells of a block where a row's data source sits at the column's
    site (a cell can repeat, once per source there)."""
    order = np.argsort(column_site, kind="stable")
    sorted_sites = column_site[order]
    cell_rows: list[IntArray] = []
    cell_columns: list[IntArray] = []
    for slot in range(sources.shape[1]):
        source = sources[:, slot]
        start = np.searchsorted(sorted_sites, source, side="left")
        end = np.searchsorted(sorted_sites, source, side="right")
        lengths = np.where(source != NO_SITE, end - start, 0)
        cell_rows.append(np.repeat(np.arange(source.size, dtype=np.int64), lengths))
        cell_columns.append(order[ragged_ranges(start, lengths)])
    return np.concatenate(cell_rows), np.concatenate(cell_columns)


def capacity_tables(
    demands: FloatArray, capacity: FloatArray, allocated: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """(demands × clusters) tables: the cluster's dominant utilisation, over the resources a
    shard of that demand asks for, once the shard is added; and the shard's dominant share of
    the cluster's capacity."""
    # A resource the cluster lacks reads as full, without 0 * inf turning into nan.
    inverse = np.where(capacity > 0, 1.0 / np.where(capacity > 0, capacity, 1.0), 1e12)
    share = np.minimum(demands[:, None, :] * inverse[None, :, :], 1.0)
    after = np.minimum(allocated[None, :, :] * inverse[None, :, :] + share, 1.0)
    wanted = demands[:, None, :] > 0
    utilisation: FloatArray = np.where(wanted, after, 0.0).max(axis=2)
    dominant: FloatArray = share.max(axis=2)
    return utilisation, dominant


def _rtt_bound_ms(
    groups: Groups,
    clusters: ClusterArrays,
    sites: SiteIndex,
    group_index: IntArray,
    cluster_index: IntArray,
) -> FloatArray:
    cluster_site = clusters.site[cluster_index]
    bound: FloatArray = np.zeros(np.broadcast_shapes(group_index.shape, cluster_index.shape))
    for slot in range(groups.source_site.shape[1]):
        source = groups.source_site[group_index, slot]
        valid = source != NO_SITE
        rtt = sites.rtt_ms[np.where(valid, source, 0), cluster_site]
        np.maximum(bound, np.where(valid, rtt, 0.0), out=bound)
    return bound


def _p99_ms(
    groups: Groups,
    clusters: ClusterArrays,
    sites: SiteIndex,
    latency: LatencyModel,
    group_index: IntArray,
    cluster_index: IntArray,
    utilisation: FloatArray,
) -> FloatArray:
    """The worst p99 over a group's data sources; a group without data only queues."""
    cluster_site = clusters.site[cluster_index]
    request_kb = groups.request_kb[group_index]
    service_ms = groups.service_ms[group_index]
    p99: FloatArray = np.zeros(np.broadcast_shapes(group_index.shape, cluster_index.shape))
    for slot in range(groups.source_site.shape[1]):
        source = groups.source_site[group_index, slot]
        valid = source != NO_SITE
        safe_source = np.where(valid, source, 0)
        rtt = np.where(valid, sites.rtt_ms[safe_source, cluster_site], 0.0)
        bandwidth = np.where(valid, sites.bandwidth_mbps[safe_source, cluster_site], np.inf)
        slot_p99 = latency.p99_ms(rtt, bandwidth, request_kb, service_ms, utilisation)
        np.maximum(p99, slot_p99, out=p99)
    return p99


def cost_matrix_terms(
    groups: Groups,
    clusters: ClusterArrays,
    sites: SiteIndex,
    latency: LatencyModel,
    weights: ObjectiveWeights,
    allocated: FloatArray,
) -> CostTerms:
    group_index = np.arange(len(groups), dtype=np.int64)[:, None]
    cluster_index = np.arange(len(clusters.names), dtype=np.int64)[None, :]
    return cost_terms(
        groups, clusters, sites, latency, weights, group_index, cluster_index, allocated
    )
