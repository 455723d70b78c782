"""What a simulated run is judged by, and the combined score that ranks policies.

Combined score (0..100, higher is better), computed across the policies of one run:
    100 * (1 - v) * (0.30 S + 0.20 J + 0.15 r(mean JCT) + 0.10 r(p95 JCT) + 0.10 r(max rho)
                     + 0.075 r(WAN GB per completed job) + 0.075 r(cost per completed job))
where S is SLO attainment, J is Jain's index (1 when there was no contention), v is the
fraction of placements that broke residency, and r(x) = (best + d) / (x + d) compares a
lower-is-better figure with the best policy's, with d = 5% of the largest value so that a zero
does not make every other policy score nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from continuum.schedulers.model import Cluster, DataSource, Job, Mode, Residency, Site


@dataclass(frozen=True)
class SimulationMetrics:
    slo_attainment: float | None
    jain_index: float | None
    max_rho: float | None
    mean_jct_s: float | None
    p95_jct_s: float | None
    mean_queueing_s: float | None
    wan_gb: float
    cost: float
    residency_violations: int
    placements: int
    placements_per_s: float | None
    p99_cycle_ms: float | None
    cycles: int
    completed_jobs: int
    unfinished_jobs: int
    infeasible_jobs: int = 0


@dataclass(frozen=True)
class TimelinePoint:
    time_s: float
    slo_attainment: float | None
    jain_index: float | None


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values), q)) if len(values) else None


def mean(values: Sequence[float]) -> float | None:
    return float(np.mean(np.asarray(values))) if len(values) else None


def residency_violated(
    job: Job, shard: int, cluster: Cluster, region_of_site: Mapping[str, str]
) -> bool:
    """An independent check of the residency rule, for the simulator's own accounting."""
    sources: tuple[DataSource, ...]
    if job.mode is Mode.FEDERATED:
        if shard >= len(job.data):
            return False
        sources = (job.data[shard],)
    else:
        sources = job.data
    for source in sources:
        if source.residency is Residency.SITE and cluster.site != source.site:
            return True
        if source.residency is Residency.REGION and not _same_region(
            cluster.site, source.site, region_of_site
        ):
            return True
    return False


def _same_region(site: str, other: str, region_of_site: Mapping[str, str]) -> bool:
    """A site missing from `region_of_site` is a region of its own, shared with no other site."""
    if site == other:
        return True
    region = region_of_site.get(site)
    return region is not None and region == region_of_site.get(other)


def region_map(sites: Sequence[Site]) -> dict[str, str]:
    return {site.name: site.region for site in sites}


WEIGHTS: Mapping[str, float] = {
    "slo_attainment": 0.30,
    "jain_index": 0.20,
    "mean_jct_s": 0.15,
    "p95_jct_s": 0.10,
    "max_rho": 0.10,
    "wan_gb_per_job": 0.075,
    "cost_per_job": 0.075,
}


def _relative(values: Mapping[str, float | None]) -> dict[str, float]:
    """r(x) for lower-is-better figures; a missing figure scores 0."""
    known = [v for v in values.values() if v is not None]
    if not known:
        return dict.fromkeys(values, 0.0)
    best, largest = min(known), max(known)
    slack = 0.05 * largest if largest > 0 else 1.0
    return {
        name: 0.0 if value is None else (best + slack) / (value + slack)
        for name, value in values.items()
    }


def combined_scores(metrics: Mapping[str, SimulationMetrics]) -> dict[str, float]:
    def per_job(value: float, m: SimulationMetrics) -> float | None:
        return value / m.completed_jobs if m.completed_jobs else None

    lower_is_better = {
        "mean_jct_s": _relative({n: m.mean_jct_s for n, m in metrics.items()}),
        "p95_jct_s": _relative({n: m.p95_jct_s for n, m in metrics.items()}),
        "max_rho": _relative({n: m.max_rho for n, m in metrics.items()}),
        "wan_gb_per_job": _relative({n: per_job(m.wan_gb, m) for n, m in metrics.items()}),
        "cost_per_job": _relative({n: per_job(m.cost, m) for n, m in metrics.items()}),
    }
    scores = {}
    for name, m in metrics.items():
        total = WEIGHTS["slo_attainment"] * (m.slo_attainment or 0.0)
        total += WEIGHTS["jain_index"] * (1.0 if m.jain_index is None else m.jain_index)
        for figure, table in lower_is_better.items():
            total += WEIGHTS[figure] * table[name]
        violations = m.residency_violations / m.placements if m.placements else 0.0
        scores[name] = 100.0 * (1.0 - violations) * total
    return scores
