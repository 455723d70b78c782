"""Hard filters as (groups × clusters) boolean matrices, and the rejections they explain.

Capacity is not here: it changes with every shard placed in a cycle, so the assignment checks
it against the free capacity of the moment (see `arrays.fit_counts`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from continuum.schedulers.arrays import (
    NO_SITE,
    RESIDENCY_CODE,
    BoolArray,
    ClusterArrays,
    Groups,
    IntArray,
    SiteIndex,
    blocking_taints_tolerated,
    selector_matches,
    unique_rows,
)
from continuum.schedulers.model import Residency, Snapshot

# The order in which rejections are attributed: a cluster is counted once, under the first
# filter it fails, so the counts of one decision add up to the clusters rejected.
FILTER_ORDER: tuple[str, ...] = ("health", "tier", "selector", "taint", "residency", "risk")
KUBERNETES_FILTERS = frozenset({"health", "tier", "selector", "taint"})
ALL_FILTERS = frozenset(FILTER_ORDER)


@dataclass(frozen=True)
class FilterMatrices:
    """The filters of every (filter class, cluster) pair.

    Groups that ask for the same things (tiers, selector, tolerations, risk threshold, and the
    sites and residency of their data) pass the same clusters, so the masks are computed once
    per such class; `row_of[g]` is group g's row in them.
    """

    names: tuple[str, ...]
    masks: tuple[BoolArray, ...]
    passed: BoolArray
    row_of: IntArray

    def group_rows(self, groups: IntArray | slice | None = None) -> BoolArray:
        """(groups × clusters): which clusters pass every filter, one row per group."""
        rows = self.row_of if groups is None else self.row_of[groups]
        result: BoolArray = self.passed[rows]
        return result

    def passes(self, group: int) -> BoolArray:
        result: BoolArray = self.passed[self.row_of[group]]
        return result

    def mask_rows(self, group: int) -> list[tuple[str, BoolArray]]:
        row = self.row_of[group]
        return [(name, mask[row]) for name, mask in zip(self.names, self.masks, strict=True)]

    def rejection_counts(self) -> IntArray:
        """(groups × filters): how many clusters each filter rejected first, per group."""
        classes, clusters = self.passed.shape
        counts = np.zeros((classes, len(self.names)), dtype=np.int64)
        alive = np.ones((classes, clusters), dtype=np.bool_)
        before = np.full(classes, clusters, dtype=np.int64)
        for column, mask in enumerate(self.masks):
            alive &= mask
            after = np.count_nonzero(alive, axis=1)
            counts[:, column] = before - after
            before = after
        result: IntArray = counts[self.row_of]
        return result


def residency_mask(
    groups: Groups, rows: IntArray, clusters: ClusterArrays, sites: SiteIndex
) -> BoolArray:
    mask = np.ones((len(rows), len(clusters.names)), dtype=np.bool_)
    for slot in range(groups.source_site.shape[1]):
        site = groups.source_site[rows, slot]
        code = groups.source_residency[rows, slot]
        has_site = site != NO_SITE
        safe_site = np.where(has_site, site, 0)
        by_site = (code == RESIDENCY_CODE[Residency.SITE]) & has_site
        by_region = (code == RESIDENCY_CODE[Residency.REGION]) & has_site
        if by_site.any():
            same_site = clusters.site[None, :] == safe_site[:, None]
            mask &= np.where(by_site[:, None], same_site, True)
        if by_region.any():
            same_region = clusters.region[None, :] == sites.region_of[safe_site][:, None]
            mask &= np.where(by_region[:, None], same_region, True)
    return mask


def filter_classes(groups: Groups, enabled: frozenset[str]) -> tuple[IntArray, IntArray]:
    """(one representative group per filter class, each group's class)."""
    columns = [
        groups.tier_ok.astype(np.float64),
        groups.selector[:, None],
        groups.toleration[:, None],
        groups.risk_threshold[:, None],
    ]
    if "residency" in enabled:
        bound = groups.source_residency != RESIDENCY_CODE[Residency.ANY]
        # Only a bound source's site matters to the filters.
        columns += [np.where(bound, groups.source_site, NO_SITE), groups.source_residency]
    keys = np.column_stack(columns)
    return unique_rows(keys)


def filter_matrices(
    snapshot: Snapshot,
    groups: Groups,
    clusters: ClusterArrays,
    sites: SiteIndex,
    enabled: frozenset[str] = ALL_FILTERS,
) -> FilterMatrices:
    if not len(groups):
        empty = np.ones((0, len(clusters.names)), dtype=np.bool_)
        return FilterMatrices((), (), empty, np.zeros(0, dtype=np.int64))
    rows, row_of = filter_classes(groups, enabled)
    shape = (len(rows), len(clusters.names))
    names: list[str] = []
    masks: list[BoolArray] = []

    def add(name: str, mask: BoolArray) -> None:
        if name in enabled:
            names.append(name)
            masks.append(np.broadcast_to(mask, shape))

    add("health", clusters.healthy[None, :])
    add("tier", groups.tier_ok[rows][:, clusters.tier])
    if "selector" in enabled:
        by_selector = np.stack(
            [selector_matches(snapshot, clusters, s) for s in groups.selectors]
        ).astype(np.bool_)
        add("selector", by_selector[groups.selector[rows]])
    if "taint" in enabled:
        by_toleration = np.stack(
            [blocking_taints_tolerated(snapshot, clusters, t) for t in groups.tolerations]
        ).astype(np.bool_)
        add("taint", by_toleration[groups.toleration[rows]])
    if "residency" in enabled:
        add("residency", residency_mask(groups, rows, clusters, sites))
    add("risk", clusters.risk[None, :] <= groups.risk_threshold[rows, None])
    passed = np.ones(shape, dtype=np.bool_)
    for mask in masks:
        passed &= mask
    return FilterMatrices(tuple(names), tuple(masks), passed, row_of)
