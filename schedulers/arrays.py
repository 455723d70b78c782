"""Numpy views of a snapshot: clusters as rows of arrays, pending work as placement groups.

A placement group is a set of interchangeable shards of one job: the same demand, the same data
sources, the same allowed tiers. Training and Inference jobs have one group; a Federated job has
one group per data shard plus one for its aggregator. Filters and scores are computed at most
once per (group, cluster) pair, so their cost grows with groups × clusters, never with shards ×
clusters; filters once per filter class of groups, and the costs of groups without a residency
bound as dense blocks (see engine.Block).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from continuum.schedulers.model import (
    BLOCKING_TAINT_EFFECTS,
    DataSource,
    Job,
    Mode,
    Residency,
    Snapshot,
    Tier,
    Toleration,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

TIER_INDEX: Mapping[Tier, int] = {Tier.EDGE: 0, Tier.CLOUD: 1}
RESIDENCY_CODE: Mapping[Residency, int] = {Residency.SITE: 0, Residency.REGION: 1, Residency.ANY: 2}
NO_SITE = -1

Key = TypeVar("Key")


@dataclass(frozen=True)
class SiteIndex:
    names: tuple[str, ...]
    index: Mapping[str, int]
    region_names: tuple[str, ...]
    region_of: IntArray
    region_known: BoolArray
    """Per site: whether the snapshot's `sites` give its region. A site they do not list (the
    site of a data source no cluster is at, say) is a region of its own, which no other site
    shares, whatever the names: a residency rule is never met by a coincidence of names."""
    rtt_ms: FloatArray
    bandwidth_mbps: FloatArray


def build_site_index(snapshot: Snapshot) -> SiteIndex:
    """Every site the snapshot names; a site not listed in `sites` is its own region."""
    region_by_site = {site.name: site.region for site in snapshot.sites}
    names: list[str] = list(region_by_site)
    seen = set(names)
    unlisted: list[str] = []
    extra = [c.site for c in snapshot.clusters] + [d.site for j in snapshot.jobs for d in j.data]
    for name in extra:
        if name not in seen:
            seen.add(name)
            names.append(name)
            unlisted.append(name)
    index = {name: i for i, name in enumerate(names)}
    listed_regions = sorted(set(region_by_site.values()))
    # The listed regions by name, then one region per unlisted site, named after it.
    region_names = (*listed_regions, *unlisted)
    region_index = {name: i for i, name in enumerate(listed_regions)}
    own_region = {name: len(listed_regions) + i for i, name in enumerate(unlisted)}
    region_of = np.array(
        [region_index[region_by_site[n]] if n in region_by_site else own_region[n] for n in names],
        dtype=np.int64,
    )
    region_known = np.array([n in region_by_site for n in names], dtype=np.bool_)

    network = snapshot.network
    count = len(names)
    rtt = np.full((count, count), network.default_rtt_ms)
    bandwidth = np.full((count, count), network.default_bandwidth_mbps)
    np.fill_diagonal(rtt, network.intra_site_rtt_ms)
    np.fill_diagonal(bandwidth, network.intra_site_bandwidth_mbps)
    known = [
        (index[link.from_site], index[link.to_site], link.rtt_ms, link.bandwidth_mbps)
        for link in network.links
        if link.from_site in index and link.to_site in index
    ]
    if known:
        sources, targets, rtts, bandwidths = (list(column) for column in zip(*known, strict=True))
        # A link serves the way back too, unless that direction is given itself (second).
        rtt[targets, sources] = rtts
        bandwidth[targets, sources] = bandwidths
        rtt[sources, targets] = rtts
        bandwidth[sources, targets] = bandwidths
    return SiteIndex(tuple(names), index, region_names, region_of, region_known, rtt, bandwidth)


@dataclass(frozen=True)
class ClusterArrays:
    """Clusters sorted by name, so that index order is a deterministic tie-break."""

    names: tuple[str, ...]
    index: Mapping[str, int]
    capacity: FloatArray
    allocated: FloatArray
    cost_per_hour: FloatArray
    risk: FloatArray
    tier: IntArray
    site: IntArray
    region: IntArray
    healthy: BoolArray


def build_cluster_arrays(snapshot: Snapshot, sites: SiteIndex) -> ClusterArrays:
    clusters = sorted(snapshot.clusters, key=lambda c: c.name)
    names = tuple(c.name for c in clusters)
    site = np.array([sites.index[c.site] for c in clusters], dtype=np.int64)
    return ClusterArrays(
        names=names,
        index={name: i for i, name in enumerate(names)},
        capacity=np.array([c.capacity.as_tuple() for c in clusters], dtype=np.float64).reshape(
            -1, 3
        ),
        allocated=np.array([c.allocated.as_tuple() for c in clusters], dtype=np.float64).reshape(
            -1, 3
        ),
        cost_per_hour=np.array([c.cost_per_hour for c in clusters], dtype=np.float64),
        risk=np.array([c.risk for c in clusters], dtype=np.float64),
        tier=np.array([TIER_INDEX[c.tier] for c in clusters], dtype=np.int64),
        site=site,
        region=sites.region_of[site] if clusters else np.zeros(0, dtype=np.int64),
        healthy=np.array([c.healthy for c in clusters], dtype=np.bool_),
    )


@dataclass(frozen=True)
class GroupSpec:
    """One group before vectorisation: which job, which shards, which of its data sources."""

    job: int
    shards: tuple[int, ...]
    sources: tuple[DataSource, ...]
    rate_share: float
    tiers: tuple[Tier, ...]


def split_into_groups(
    job_index: int, job: Job, shards: Iterable[int], tiers: tuple[Tier, ...] = ()
) -> list[GroupSpec]:
    """Group a job's shards by what they need (see Job for how shards map to data).

    `tiers`, when given, replaces the job's allowed tiers (as cloud-only does)."""
    wanted = sorted(set(shards))
    if not wanted:
        return []
    allowed = tiers or job.allowed_tiers
    if job.mode is not Mode.FEDERATED:
        return [GroupSpec(job_index, tuple(wanted), job.data, 1.0 / job.shards, allowed)]
    aggregator = len(job.data)
    groups = []
    for shard in wanted:
        if shard == aggregator:
            groups.append(GroupSpec(job_index, (shard,), (), 0.0, (Tier.CLOUD,)))
        else:
            groups.append(GroupSpec(job_index, (shard,), (job.data[shard],), 1.0, allowed))
    return groups


@dataclass(frozen=True)
class Groups:
    specs: tuple[GroupSpec, ...]
    job: IntArray
    demand: FloatArray
    count: IntArray
    tier_ok: BoolArray
    selector: IntArray
    selectors: tuple[tuple[tuple[str, str], ...], ...]
    toleration: IntArray
    tolerations: tuple[tuple[Toleration, ...], ...]
    source_site: IntArray
    source_residency: IntArray
    source_rate: FloatArray
    slo_ms: FloatArray
    request_kb: FloatArray
    service_ms: FloatArray
    risk_threshold: FloatArray

    def __len__(self) -> int:
        return len(self.specs)


def _interned(value: Key, table: dict[Key, int]) -> int:
    return table.setdefault(value, len(table))


def build_groups(
    jobs: Sequence[Job],
    specs: Sequence[GroupSpec],
    sites: SiteIndex,
    default_risk_threshold: float,
) -> Groups:
    count = len(specs)
    width = max(max((len(spec.sources) for spec in specs), default=0), 1)
    job_of = [spec.job for spec in specs]
    # What comes from the job is read once per job, then spread over its groups.
    owner_ids = sorted(set(job_of))
    owners = [jobs[j] for j in owner_ids]
    position = {j: i for i, j in enumerate(owner_ids)}
    owner_of = np.array([position[j] for j in job_of], dtype=np.int64)
    source_site = np.full((count, width), NO_SITE, dtype=np.int64)
    source_residency = np.full((count, width), RESIDENCY_CODE[Residency.ANY], dtype=np.int64)
    source_rate = np.zeros((count, width))
    site_index = sites.index
    for slot in range(width):
        rows = [row for row, spec in enumerate(specs) if len(spec.sources) > slot]
        if not rows:
            continue
        sources = [specs[row].sources[slot] for row in rows]
        source_site[rows, slot] = [site_index[s.site] for s in sources]
        source_residency[rows, slot] = [RESIDENCY_CODE[s.residency] for s in sources]
        source_rate[rows, slot] = [
            s.rate_mbps * specs[row].rate_share for s, row in zip(sources, rows, strict=True)
        ]
    tier_ok = np.ones((count, 2), dtype=np.bool_)
    restricted = [row for row, spec in enumerate(specs) if spec.tiers]
    if restricted:
        tier_ok[restricted] = [
            [tier in specs[row].tiers for tier in (Tier.EDGE, Tier.CLOUD)] for row in restricted
        ]
    selector_table: dict[tuple[tuple[str, str], ...], int] = {}
    toleration_table: dict[tuple[Toleration, ...], int] = {}
    selector = np.array(
        [_interned(tuple(sorted(job.cluster_selector.items())), selector_table) for job in owners],
        dtype=np.int64,
    )
    toleration = np.array(
        [_interned(job.tolerations, toleration_table) for job in owners], dtype=np.int64
    )
    per_job = np.array(
        [
            (
                *job.demand.as_tuple(),
                np.inf if job.latency_slo_ms is None else job.latency_slo_ms,
                job.request_kb,
                job.service_ms,
                default_risk_threshold if job.risk_threshold is None else job.risk_threshold,
            )
            for job in owners
        ],
        dtype=np.float64,
    ).reshape(-1, 7)[owner_of]
    return Groups(
        specs=tuple(specs),
        job=np.array(job_of, dtype=np.int64),
        demand=np.ascontiguousarray(per_job[:, :3]),
        count=np.array([len(spec.shards) for spec in specs], dtype=np.int64),
        tier_ok=tier_ok,
        selector=selector[owner_of],
        selectors=tuple(selector_table),
        toleration=toleration[owner_of],
        tolerations=tuple(toleration_table),
        source_site=source_site,
        source_residency=source_residency,
        source_rate=source_rate,
        slo_ms=np.ascontiguousarray(per_job[:, 3]),
        request_kb=np.ascontiguousarray(per_job[:, 4]),
        service_ms=np.ascontiguousarray(per_job[:, 5]),
        risk_threshold=np.ascontiguousarray(per_job[:, 6]),
    )


def blocking_taints_tolerated(
    snapshot: Snapshot, clusters: ClusterArrays, tolerations: tuple[Toleration, ...]
) -> BoolArray:
    """For each cluster, whether these tolerations cover all of its blocking taints."""
    by_name = {c.name: c for c in snapshot.clusters}
    result = np.ones(len(clusters.names), dtype=np.bool_)
    for i, name in enumerate(clusters.names):
        for taint in by_name[name].taints:
            if taint.effect in BLOCKING_TAINT_EFFECTS and not any(
                t.tolerates(taint) for t in tolerations
            ):
                result[i] = False
                break
    return result


def selector_matches(
    snapshot: Snapshot, clusters: ClusterArrays, selector: tuple[tuple[str, str], ...]
) -> BoolArray:
    by_name = {c.name: c for c in snapshot.clusters}
    return np.array(
        [
            all(by_name[name].labels.get(key) == value for key, value in selector)
            for name in clusters.names
        ],
        dtype=np.bool_,
    )


def fit_counts(free: FloatArray, demand: FloatArray) -> IntArray:
    """How many shards of `demand` fit in each row of `free`."""
    needed = demand > 0
    if not needed.any():
        return np.full(free.shape[0], np.iinfo(np.int32).max, dtype=np.int64)
    # The epsilon forgives float noise from adding and removing the same demand.
    ratios = (free[:, needed] + 1e-9) / demand[needed]
    result: IntArray = np.floor(ratios.min(axis=1)).clip(min=0).astype(np.int64)
    return result


def ragged_ranges(starts: IntArray, lengths: IntArray) -> IntArray:
    """The concatenation of range(start, start + length) for each pair, without a loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    size = int(lengths.sum())
    if not size:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    shift = np.repeat(np.asarray(starts, dtype=np.int64) - (ends - lengths), lengths)
    result: IntArray = np.arange(size, dtype=np.int64) + shift
    return result


# Below this many rows a dictionary numbers distinct rows faster than np.unique(axis=0), whose
# fixed cost dominates the small cycles of a simulation.
SMALL_UNIQUE = 2048


def unique_rows(rows: npt.NDArray[np.generic]) -> tuple[IntArray, IntArray]:
    """(index of one row per distinct value, the number of each row's value).

    Distinct values are numbered in an order of their own (callers only compare numbers).
    """
    table = np.asarray(rows)
    if table.ndim == 1:
        table = table[:, None]
    if len(table) > SMALL_UNIQUE:
        _, first, inverse = np.unique(table, axis=0, return_index=True, return_inverse=True)
        return first.astype(np.int64), inverse.reshape(-1).astype(np.int64)
    numbers: dict[tuple[object, ...], int] = {}
    firsts: list[int] = []
    values: list[int] = []
    for index, row in enumerate(table.tolist()):
        key = tuple(row)
        number = numbers.get(key)
        if number is None:
            number = numbers[key] = len(firsts)
            firsts.append(index)
        values.append(number)
    return np.array(firsts, dtype=np.int64), np.array(values, dtype=np.int64)
