"""Builders for scheduler tests: small continuums whose answers can be reasoned out by hand."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from continuum.schedulers import (
    Cluster,
    DataSource,
    Job,
    Link,
    Mode,
    Network,
    Residency,
    Resources,
    RunningShard,
    Site,
    Snapshot,
    Taint,
    Tenant,
    Tier,
)

SITES = (
    Site("delft", "nl"),
    Site("eindhoven", "nl"),
    Site("lyon", "fr"),
    Site("cloud", "eu-cloud"),
)
NETWORK = Network(
    links=(
        Link("delft", "eindhoven", 6.0, 1000.0),
        Link("delft", "lyon", 40.0, 300.0),
        Link("eindhoven", "lyon", 38.0, 300.0),
        Link("delft", "cloud", 30.0, 500.0),
        Link("eindhoven", "cloud", 28.0, 500.0),
        Link("lyon", "cloud", 25.0, 500.0),
    ),
)


def edge(
    name: str,
    site: str,
    cpu: float = 4.0,
    memory: float = 16.0,
    gpu: float = 0.0,
    allocated: Resources | None = None,
    risk: float = 0.0,
    labels: Mapping[str, str] | None = None,
    taints: Sequence[Taint] = (),
    healthy: bool = True,
) -> Cluster:
    return Cluster(
        name=name,
        tier=Tier.EDGE,
        site=site,
        capacity=Resources(cpu, memory, gpu),
        allocated=allocated or Resources(),
        cost_per_hour=0.04 * cpu,
        labels=dict(labels or {}),
        taints=tuple(taints),
        risk=risk,
        healthy=healthy,
    )


def cloud(name: str, cpu: float = 64.0, allocated: Resources | None = None) -> Cluster:
    return Cluster(
        name=name,
        tier=Tier.CLOUD,
        site="cloud",
        capacity=Resources(cpu, cpu * 4, 8.0),
        allocated=allocated or Resources(),
        cost_per_hour=0.05 * cpu,
    )


def job(
    key: str,
    tenant: str = "t1",
    cpu: float = 1.0,
    shards: int = 1,
    min_available: int | None = None,
    data_site: str | None = None,
    residency: Residency = Residency.ANY,
    rate_mbps: float = 10.0,
    slo_ms: float | None = None,
    mode: Mode = Mode.TRAINING,
    priority: int = 0,
    submit: float = 0.0,
    **extra: object,
) -> Job:
    data = () if data_site is None else (DataSource("data", data_site, rate_mbps, residency),)
    built = Job(
        key=key,
        tenant=tenant,
        demand=Resources(cpu, 1.0, 0.0),
        shards=shards,
        min_available=min_available,
        mode=mode,
        priority=priority,
        data=data,
        latency_slo_ms=slo_ms,
        submit_time_s=submit,
    )
    return replace(built, **extra) if extra else built


def federated(key: str, sites: Sequence[str], tenant: str = "t1", cpu: float = 1.0) -> Job:
    return Job(
        key=key,
        tenant=tenant,
        demand=Resources(cpu, 1.0, 0.0),
        shards=len(sites) + 1,
        mode=Mode.FEDERATED,
        data=tuple(DataSource(f"d{i}", s, 5.0, Residency.SITE) for i, s in enumerate(sites)),
    )


def snapshot(
    clusters: Sequence[Cluster],
    jobs: Sequence[Job] = (),
    tenants: Sequence[Tenant] = (),
    running: Sequence[RunningShard] = (),
) -> Snapshot:
    return Snapshot(
        sites=SITES,
        clusters=tuple(clusters),
        jobs=tuple(jobs),
        tenants=tuple(tenants),
        running=tuple(running),
        network=NETWORK,
    )


def with_running(base: Snapshot, running: Sequence[RunningShard]) -> Snapshot:
    """The snapshot after `running` started: their demand is allocated on their clusters."""
    demand = {j.key: j.demand for j in base.jobs}
    clusters = []
    for cluster in base.clusters:
        used = [demand[r.job_key] for r in running if r.cluster == cluster.name]
        allocated = Resources(
            cluster.allocated.cpu + sum(d.cpu for d in used),
            cluster.allocated.memory_gib + sum(d.memory_gib for d in used),
            cluster.allocated.gpu + sum(d.gpu for d in used),
        )
        clusters.append(replace(cluster, allocated=allocated))
    return replace(base, clusters=tuple(clusters), running=tuple(running))
