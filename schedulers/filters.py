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
)
from continuum.schedulers.model import Residency, Snapshot

# The order in which rejections are attributed: a cluster is counted once, under the first
# filter it fails, so the counts of one decision add up to the clusters rejected.
FILTER_ORDER: tuple[str, ...] = ("health", "tier", "selector", "taint", "residency", "risk")
KUBERNETES_FILTERS = frozenset({"health", "tier", "selector", "taint"})
ALL_FILTERS = frozenset(FILTER_ORDER)


@dataclass(frozen=True)
class FilterMatrices:
    names: tuple[str, ...]
    masks: tuple[BoolArray, ...]
    passed: BoolArray

    def rejection_counts(self) -> IntArray:
        """(groups × filters): how many clusters each filter rejected first, per group."""
        groups, clusters = self.passed.shape
        counts = np.zeros((groups, len(self.names)), dtype=np.int64)
        alive = np.ones((groups, clusters), dtype=np.bool_)
        before = np.full(groups, clusters, dtype=np.int64)
        for column, mask in enumerate(self.masks):
            alive &= mask
            after = np.count_nonzero(alive, axis=1)
            counts[:, column] = before - after
            before = after
        return counts


def residency_mask(groups: Groups, clusters: ClusterArrays, sites: SiteIndex) -> BoolArray:
    mask = np.ones((len(groups), len(clusters.names)), dtype=np.bool_)
    for slot in range(groups.source_site.shape[1]):
        site = groups.source_site[:, slot]
        code = groups.source_residency[:, slot]
        has_site = site != NO_SITE
        safe_site = np.where(has_site, site, 0)
        same_site = clusters.site[None, :] == safe_site[:, None]
        same_region = clusters.region[None, :] == sites.region_of[safe_site][:, None]
        by_site = (code == RESIDENCY_CODE[Residency.SITE]) & has_site
        by_region = (code == RESIDENCY_CODE[Residency.REGION]) & has_site
        mask &= np.where(by_site[:, None], same_site, True)
        mask &= np.where(by_region[:, None], same_region, True)
    return mask


def filter_matrices(
    snapshot: Snapshot,
    groups: Groups,
    clusters: ClusterArrays,
    sites: SiteIndex,
    enabled: frozenset[str] = ALL_FILTERS,
) -> FilterMatrices:
    shape = (len(groups), len(clusters.names))
    if not len(groups):
        return FilterMatrices((), (), np.ones(shape, dtype=np.bool_))
    names: list[str] = []
    masks: list[BoolArray] = []

    def add(name: str, mask: BoolArray) -> None:
        if name in enabled:
            names.append(name)
            masks.append(np.broadcast_to(mask, shape))

    add("health", clusters.healthy[None, :])
    add("tier", groups.tier_ok[:, clusters.tier])
    if "selector" in enabled:
        by_selector = np.stack(
            [selector_matches(snapshot, clusters, s) for s in groups.selectors]
        ).astype(np.bool_)
        add("selector", by_selector[groups.selector])
    if "taint" in enabled:
        by_toleration = np.stack(
            [blocking_taints_tolerated(snapshot, clusters, t) for t in groups.tolerations]
        ).astype(np.bool_)
        add("taint", by_toleration[groups.toleration])
    if "residency" in enabled:
        add("residency", residency_mask(groups, clusters, sites))
    add("risk", clusters.risk[None, :] <= groups.risk_threshold[:, None])
    passed = np.ones(shape, dtype=np.bool_)
    for mask in masks:
        passed &= mask
    return FilterMatrices(tuple(names), tuple(masks), passed)
