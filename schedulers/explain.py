"""Human-readable reasons: why a shard went where it went, and why a job went nowhere."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from continuum.schedulers.arrays import BoolArray, ClusterArrays, FloatArray, GroupSpec, SiteIndex
from continuum.schedulers.model import RESOURCE_NAMES, Job, Residency


def rejection_reason(counts: Sequence[tuple[str, int]], no_room: int, total: int) -> str:
    parts = [f"{name} {count}" for name, count in counts if count]
    if no_room:
        parts.append(f"capacity {no_room}")
    rejected = sum(count for _, count in counts) + no_room
    if not rejected:
        return f"filters: all {total} clusters pass"
    return f"filters: {rejected} of {total} clusters rejected ({', '.join(parts)})"


def chosen_reasons(
    cluster: str,
    score: float,
    p99_ms: float,
    slo_ms: float,
    wan_mbps: float,
    wan_usd_h: float,
    compute_usd_h: float,
    utilisation: float,
    risk: float,
) -> tuple[str, ...]:
    if math.isinf(slo_ms):
        latency = f"{cluster}: p99 {p99_ms:.1f} ms (no SLO)"
    elif p99_ms <= slo_ms:
        latency = f"{cluster}: p99 {p99_ms:.1f} ms meets SLO {slo_ms:g} ms"
    else:
        latency = f"{cluster}: p99 {p99_ms:.1f} ms misses SLO {slo_ms:g} ms (best reachable)"
    return (
        latency,
        f"off-site data {wan_mbps:.1f} Mbps ({wan_usd_h:.3f} $/h), compute {compute_usd_h:.3f} $/h",
        f"utilisation after {utilisation:.2f}, risk {risk:.2f}, score {score:.3f}",
    )


def _sites_in_no_known_region(spec: GroupSpec, sites: SiteIndex) -> list[str]:
    """The sites of the group's residency=Region sources whose region the snapshot does not give."""
    return sorted(
        {
            s.site
            for s in spec.sources
            if s.residency is Residency.REGION and not sites.region_known[sites.index[s.site]]
        }
    )


def _in_no_known_region(unknown: Sequence[str], clusters: ClusterArrays, sites: SiteIndex) -> str:
    """Such a site is a region of its own, so only clusters at it qualify; usually none is."""
    plural = "s" if len(unknown) > 1 else ""
    names = ", ".join(unknown)
    occupied = set(clusters.site.tolist())
    empty = all(sites.index[site] not in occupied for site in unknown)
    why = f" (no cluster is at site{plural} {names})" if empty else ""
    verb = "are" if plural else "is"
    return f"residency=Region: data site{plural} {names} {verb} in no known region{why}"


def _restricted_places(spec: GroupSpec, sites: SiteIndex) -> tuple[str, str]:
    """(kind, names) of the places residency confines this group to."""
    site_names = sorted({s.site for s in spec.sources if s.residency is Residency.SITE})
    if site_names:
        return "site", ", ".join(site_names)
    regions = sorted(
        {
            sites.region_names[sites.region_of[sites.index[s.site]]]
            for s in spec.sources
            if s.residency is Residency.REGION
        }
    )
    return "region", ", ".join(regions)


def _filter_phrase(
    name: str,
    excluded: int,
    nothing_left: bool,
    job: Job,
    spec: GroupSpec,
    clusters: ClusterArrays,
    sites: SiteIndex,
) -> str:
    every = "all " if nothing_left else ""
    noun = "cluster" if excluded == 1 else "clusters"
    if name == "health":
        return f"{excluded} {noun} unhealthy"
    if name == "tier":
        tiers = "/".join(t.value for t in spec.tiers)
        return f"tier={tiers} excludes {every}{excluded} {noun} of other tiers"
    if name == "selector":
        labels = ",".join(f"{k}={v}" for k, v in sorted(job.cluster_selector.items()))
        return f"selector {labels} excludes {every}{excluded} {noun}"
    if name == "taint":
        return f"untolerated taints exclude {every}{excluded} {noun}"
    if name == "residency":
        unknown = _sites_in_no_known_region(spec, sites)
        if unknown:
            lead = _in_no_known_region(unknown, clusters, sites)
            return f"{lead}, which excludes {every}{excluded} {noun}"
        kind, places = _restricted_places(spec, sites)
        residency = "Site" if kind == "site" else "Region"
        return f"residency={residency} excludes all {excluded} {noun} outside {kind} {places}"
    threshold = job.risk_threshold
    shown = f" {threshold:g}" if threshold is not None else " the default threshold"
    return f"risk above{shown} excludes {every}{excluded} {noun}"


def unschedulable_sentence(
    job: Job,
    spec: GroupSpec,
    masks: Sequence[tuple[str, BoolArray]],
    clusters: ClusterArrays,
    sites: SiteIndex,
    free: FloatArray,
    shards_needed: int,
    shards_fitting: int,
) -> str:
    """One sentence naming the filter that bites hardest and the capacity that is missing."""
    total = len(clusters.names)
    if total == 0:
        return "no member clusters are registered"
    alive = np.ones(total, dtype=np.bool_)
    steps: list[tuple[str, int]] = []
    for name, row in masks:
        excluded = int(np.count_nonzero(alive & ~row))
        alive &= row
        steps.append((name, excluded))
        if excluded and not alive.any():
            return _filter_phrase(name, excluded, True, job, spec, clusters, sites) + "."
    survivors = np.flatnonzero(alive)
    biggest = max(steps, key=lambda step: step[1], default=("", 0))
    lead = (
        _filter_phrase(biggest[0], biggest[1], False, job, spec, clusters, sites)
        if biggest[1]
        else f"all {total} clusters pass the filters"
    )
    if shards_fitting > 0:
        return (
            f"{lead}; the gang needs {shards_needed} shards at once but only "
            f"{shards_fitting} fit on the {survivors.size} clusters left."
        )
    demand = np.array(job.demand.as_tuple())
    best_free = free[survivors].max(axis=0)
    wanted = demand > 0
    shortfall = np.where(wanted, (demand - best_free) / np.where(wanted, demand, 1.0), -np.inf)
    resource = int(np.argmax(shortfall))
    name = RESOURCE_NAMES[resource].replace("_gib", " GiB")
    if survivors.size == 1:
        cluster = survivors[0]
        kind = "at " + sites.names[clusters.site[cluster]] if biggest[0] == "residency" else "left"
        where = f"the 1 {kind} ({clusters.names[cluster]})"
        has = "has"
    else:
        where, has = f"the {survivors.size} left", "have at most"
    return (
        f"{lead}; {where} {has} {best_free[resource]:.3g} {name} free and a shard needs "
        f"{demand[resource]:.3g}."
    )
