"""Synthetic continuums and workloads, all drawn from an injected numpy Generator.

- Topology: one cloud region of a few big sites, and edge regions of many small sites.
- Tenants: weights and demand both skewed, and not in the same order, so fairness matters.
- Inference jobs serve requests from one edge site under a p99 SLO.
- Training jobs are gangs reading one larger stream.
- Federated jobs have one shard per data site of a region (residency Site) plus the aggregator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from continuum.schedulers.arrays import FloatArray
from continuum.schedulers.model import (
    Cluster,
    DataSource,
    Job,
    Link,
    Mode,
    Network,
    Residency,
    Resources,
    Site,
    Tenant,
    Tier,
)
from continuum.schedulers.trace import Failure, FailureKind, Topology, TraceJob

CLOUD_REGION = "cloud"


@dataclass(frozen=True)
class TopologySpec:
    cloud_sites: int = 1
    clusters_per_cloud_site: int = 2
    edge_regions: int = 2
    sites_per_region: int = 3
    clusters_per_edge_site: int = 1
    edge_cpu_choices: tuple[float, ...] = (4.0, 8.0, 16.0)
    cloud_cpu: float = 64.0
    edge_gpu_probability: float = 0.2
    tenants: int = 3
    with_quota: bool = True


@dataclass(frozen=True)
class WorkloadSpec:
    jobs: int = 20
    inference_fraction: float = 0.4
    federated_fraction: float = 0.2
    span_s: float = 0.0
    # Offered load relative to total cpu; with span_s = 0 every job arrives at once.
    load: float = 1.0
    max_training_shards: int = 6
    gpu_probability: float = 0.1
    durations_s: tuple[float, float] = (600.0, 2400.0)


def _round(value: float) -> float:
    return float(round(value, 3))


def generate_topology(spec: TopologySpec, rng: np.random.Generator) -> Topology:
    sites: list[Site] = []
    clusters: list[Cluster] = []
    links: list[Link] = []
    cloud_sites = [f"cloud-{i}" for i in range(spec.cloud_sites)]
    for name in cloud_sites:
        sites.append(Site(name, CLOUD_REGION))
        for index in range(spec.clusters_per_cloud_site):
            cpu = spec.cloud_cpu
            clusters.append(
                Cluster(
                    name=f"{name}-c{index}",
                    tier=Tier.CLOUD,
                    site=name,
                    capacity=Resources(cpu, cpu * 4, 8.0),
                    cost_per_hour=_round(cpu * 0.05),
                    labels={"continuum.dev/tier": "Cloud", "continuum.dev/site": name},
                    risk=0.01,
                )
            )
    for a, first in enumerate(cloud_sites):
        for second in cloud_sites[a + 1 :]:
            links.append(Link(first, second, _round(rng.uniform(2, 5)), 10_000.0))
    for region in range(spec.edge_regions):
        region_name = f"region-{region}"
        region_sites = [f"site-{region}-{i}" for i in range(spec.sites_per_region)]
        for name in region_sites:
            sites.append(Site(name, region_name))
            for cloud in cloud_sites:
                rtt = _round(rng.uniform(25, 45))
                links.append(Link(name, cloud, rtt, float(rng.choice([200.0, 500.0, 1000.0]))))
            for index in range(spec.clusters_per_edge_site):
                cpu = float(rng.choice(spec.edge_cpu_choices))
                gpu = 1.0 if rng.random() < spec.edge_gpu_probability else 0.0
                clusters.append(
                    Cluster(
                        name=f"{name}-e{index}",
                        tier=Tier.EDGE,
                        site=name,
                        capacity=Resources(cpu, cpu * 4, gpu),
                        cost_per_hour=_round(cpu * 0.04 * rng.uniform(0.8, 1.2)),
                        labels={"continuum.dev/tier": "Edge", "continuum.dev/site": name},
                        risk=_round(rng.uniform(0.0, 0.2)),
                    )
                )
        for a, first in enumerate(region_sites):
            for second in region_sites[a + 1 :]:
                links.append(Link(first, second, _round(rng.uniform(4, 12)), 1000.0))
    network = Network(links=tuple(links), default_rtt_ms=70.0, default_bandwidth_mbps=100.0)
    tenants = _tenants(spec, clusters, rng)
    return Topology(tuple(sites), tuple(clusters), tenants, network)


def _tenants(
    spec: TopologySpec, clusters: list[Cluster], rng: np.random.Generator
) -> tuple[Tenant, ...]:
    weights = [4.0, 2.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0]
    total = np.sum([c.capacity.as_tuple() for c in clusters], axis=0)
    weight_list = [weights[i % len(weights)] for i in range(spec.tenants)]
    weight_sum = sum(weight_list)
    tenants = []
    for i, weight in enumerate(weight_list):
        share = weight / weight_sum
        quota = (
            Resources(*(_round(v * share) for v in total))
            if spec.with_quota and rng.random() < 0.7
            else None
        )
        tenants.append(Tenant(f"tenant-{i}", weight, quota))
    return tuple(tenants)


def _tenant_popularity(count: int) -> FloatArray:
    # Demand is skewed the other way round from the weights: the heaviest weight is not the
    # biggest spender, so plain FIFO and weighted DRF part ways.
    ranks = np.arange(count, 0, -1, dtype=np.float64)
    popularity: FloatArray = 1.0 / ranks**0.8
    result: FloatArray = popularity / popularity.sum()
    return result


def generate_jobs(
    topology: Topology, spec: WorkloadSpec, rng: np.random.Generator, prefix: str = "job"
) -> tuple[TraceJob, ...]:
    edge_sites = [s for s in topology.sites if s.region != CLOUD_REGION]
    by_region: dict[str, list[Site]] = {}
    for site in edge_sites:
        by_region.setdefault(site.region, []).append(site)
    tenants = [t.name for t in topology.tenants] or ["default"]
    popularity = _tenant_popularity(len(tenants))
    drafts: list[tuple[Job, float]] = []
    for index in range(spec.jobs):
        tenant = str(rng.choice(tenants, p=popularity))
        draw = rng.random()
        key = f"{tenant}/{prefix}-{index}"
        if draw < spec.inference_fraction:
            drafts.append(_inference(key, tenant, edge_sites, spec, rng))
        elif draw < spec.inference_fraction + spec.federated_fraction:
            drafts.append(_federated(key, tenant, by_region, spec, rng))
        else:
            drafts.append(_training(key, tenant, edge_sites, topology, spec, rng))
    submits = _arrivals(topology, drafts, spec, rng)
    return tuple(
        TraceJob(_with_submit(job, submit), duration)
        for (job, duration), submit in zip(drafts, submits, strict=True)
    )


def _with_submit(job: Job, submit_s: float) -> Job:
    from dataclasses import replace

    return replace(job, submit_time_s=_round(submit_s))


def _arrivals(
    topology: Topology,
    drafts: list[tuple[Job, float]],
    spec: WorkloadSpec,
    rng: np.random.Generator,
) -> list[float]:
    if spec.span_s <= 0 or not drafts:
        return [0.0] * len(drafts)
    total_cpu = sum(c.capacity.cpu for c in topology.clusters)
    work = sum(job.demand.cpu * job.shards * duration for job, duration in drafts)
    # Poisson arrivals whose rate offers `load` times the continuum's cpu on average.
    mean_gap = work / (spec.load * total_cpu) / len(drafts)
    gaps = rng.exponential(mean_gap, size=len(drafts))
    times = np.cumsum(gaps)
    return [float(t) for t in times]


def _residency(rng: np.random.Generator, site: float, region: float) -> Residency:
    draw = rng.random()
    if draw < site:
        return Residency.SITE
    if draw < site + region:
        return Residency.REGION
    return Residency.ANY


def _duration(spec: WorkloadSpec, rng: np.random.Generator) -> float:
    low, high = spec.durations_s
    return _round(rng.uniform(low, high))


def _inference(
    key: str, tenant: str, edge_sites: list[Site], spec: WorkloadSpec, rng: np.random.Generator
) -> tuple[Job, float]:
    site = edge_sites[int(rng.integers(len(edge_sites)))]
    shards = int(rng.integers(1, 4))
    source = DataSource(
        "requests", site.name, _round(rng.uniform(2, 20)), _residency(rng, 0.25, 0.35)
    )
    job = Job(
        key=key,
        tenant=tenant,
        demand=Resources(float(rng.choice([0.5, 1.0, 2.0])), 2.0, 0.0),
        shards=shards,
        min_available=1,
        mode=Mode.INFERENCE,
        priority=int(rng.integers(0, 3)),
        data=(source,),
        latency_slo_ms=float(rng.choice([25.0, 40.0, 60.0])),
        service_ms=2.0,
    )
    return job, _duration(spec, rng) / 2


def _training(
    key: str,
    tenant: str,
    edge_sites: list[Site],
    topology: Topology,
    spec: WorkloadSpec,
    rng: np.random.Generator,
) -> tuple[Job, float]:
    all_sites = edge_sites or list(topology.sites)
    site = all_sites[int(rng.integers(len(all_sites)))]
    shards = int(rng.integers(2, spec.max_training_shards + 1))
    gpu = 1.0 if rng.random() < spec.gpu_probability else 0.0
    # Edge sites have a GPU or none, so a GPU gang confined to one region would rarely fit.
    residency = Residency.ANY if gpu else _residency(rng, 0, 0.3)
    source = DataSource("dataset", site.name, _round(rng.uniform(20, 100)), residency)
    job = Job(
        key=key,
        tenant=tenant,
        demand=Resources(float(rng.choice([1.0, 2.0, 4.0])), 8.0, gpu),
        shards=shards,
        mode=Mode.TRAINING,
        priority=int(rng.integers(0, 2)),
        data=(source,),
    )
    return job, _duration(spec, rng)


def _federated(
    key: str,
    tenant: str,
    by_region: dict[str, list[Site]],
    spec: WorkloadSpec,
    rng: np.random.Generator,
) -> tuple[Job, float]:
    regions = sorted(by_region)
    sites = by_region[regions[int(rng.integers(len(regions)))]]
    count = int(rng.integers(2, min(4, len(sites)) + 1)) if len(sites) > 1 else 1
    chosen = rng.choice(len(sites), size=count, replace=False)
    data = tuple(
        DataSource(f"sensors-{i}", sites[int(s)].name, _round(rng.uniform(5, 30)), Residency.SITE)
        for i, s in enumerate(sorted(chosen))
    )
    job = Job(
        key=key,
        tenant=tenant,
        demand=Resources(float(rng.choice([0.5, 1.0])), 2.0, 0.0),
        shards=len(data) + 1,
        mode=Mode.FEDERATED,
        priority=int(rng.integers(0, 2)),
        data=data,
    )
    return job, _duration(spec, rng)


def generate_failures(
    topology: Topology, count: int, span_s: float, rng: np.random.Generator
) -> tuple[Failure, ...]:
    """Outages and degradations; half the outages are announced by a degradation first."""
    edge = [c.name for c in topology.clusters if c.tier is Tier.EDGE]
    failures: list[Failure] = []
    for _ in range(count):
        cluster = edge[int(rng.integers(len(edge)))]
        at = _round(rng.uniform(0.05, 0.9) * span_s)
        duration = _round(rng.uniform(300, 1200))
        if rng.random() < 0.5:
            failures.append(Failure(at, cluster, FailureKind.DEGRADE, duration))
        else:
            if rng.random() < 0.5:
                warning = _round(rng.uniform(60, 240))
                failures.append(
                    Failure(max(at - warning, 0.0), cluster, FailureKind.DEGRADE, warning)
                )
            failures.append(Failure(at, cluster, FailureKind.DOWN, duration))
    return tuple(sorted(failures, key=lambda f: (f.at_s, f.cluster)))
