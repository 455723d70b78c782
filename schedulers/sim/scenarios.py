"""Built-in scenarios, each a pure function of a seed.

- `small`: 8 clusters and about 30 pending shards, small enough for the MILP yardstick; a short
  trace on the same topology feeds the simulator.
- `contended`: 30 clusters (3 cloud, 27 edge over 9 sites), 5 tenants, offered load above
  capacity, with outages and degradations.
- `large`: one cycle of 10,000 pending shards over 1,000 clusters (clusters can be scaled; the
  shards stay at ten per cluster).
- `trace3k`: the issue's long trace, 3,000 jobs over the 30 clusters of `contended` at 0.9 of
  its capacity (about 15 hours of arrivals) with 50 failures, for every policy in one run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from continuum.schedulers.model import Snapshot
from continuum.schedulers.sim.generators import (
    TopologySpec,
    WorkloadSpec,
    generate_failures,
    generate_jobs,
    generate_topology,
)
from continuum.schedulers.trace import Topology, TraceJob, Workload

SCENARIO_NAMES: tuple[str, ...] = ("small", "contended", "large", "trace3k")
TRACE3K_JOBS = 3000
TRACE3K_LOAD = 0.9

SMALL_TOPOLOGY = TopologySpec(
    cloud_sites=1,
    clusters_per_cloud_site=2,
    edge_regions=1,
    sites_per_region=3,
    clusters_per_edge_site=2,
    cloud_cpu=32.0,
    tenants=3,
)
CONTENDED_TOPOLOGY = TopologySpec(
    cloud_sites=1,
    clusters_per_cloud_site=3,
    edge_regions=3,
    sites_per_region=3,
    clusters_per_edge_site=3,
    cloud_cpu=48.0,
    tenants=5,
)


def large_topology(clusters: int) -> TopologySpec:
    cloud = max(clusters // 50, 1)
    edge = clusters - cloud
    regions = 10 if edge >= 200 else max(edge // 20, 1)
    return TopologySpec(
        cloud_sites=1 if cloud < 4 else 4,
        clusters_per_cloud_site=cloud if cloud < 4 else cloud // 4,
        edge_regions=regions,
        sites_per_region=max(edge // (2 * regions), 1),
        clusters_per_edge_site=2,
        edge_cpu_choices=(8.0, 16.0, 32.0),
        cloud_cpu=256.0,
        tenants=8,
    )


@dataclass(frozen=True)
class SnapshotScenario:
    """One cycle: everything pending at once."""

    name: str
    snapshot: Snapshot


def _snapshot(topology: Topology, jobs: tuple[TraceJob, ...]) -> Snapshot:
    return Snapshot(
        sites=topology.sites,
        clusters=topology.clusters,
        jobs=tuple(t.job for t in jobs),
        tenants=topology.tenants,
        network=topology.network,
    )


def small_snapshot(seed: int) -> Snapshot:
    rng = np.random.default_rng(seed)
    topology = generate_topology(SMALL_TOPOLOGY, rng)
    jobs = generate_jobs(topology, WorkloadSpec(jobs=12, max_training_shards=4), rng)
    return _snapshot(topology, jobs)


def small_workload(seed: int) -> Workload:
    rng = np.random.default_rng(seed)
    topology = generate_topology(SMALL_TOPOLOGY, rng)
    spec = WorkloadSpec(jobs=150, span_s=3600.0, load=1.0, max_training_shards=4)
    jobs = generate_jobs(topology, spec, rng)
    return Workload(topology, jobs, generate_failures(topology, 3, 3600.0, rng))


def contended_workload(
    seed: int, jobs: int = 600, span_s: float = 7200.0, load: float = 1.4
) -> Workload:
    rng = np.random.default_rng(seed)
    topology = generate_topology(CONTENDED_TOPOLOGY, rng)
    spec = WorkloadSpec(jobs=jobs, span_s=span_s, load=load)
    generated = generate_jobs(topology, spec, rng)
    # Arrivals follow the offered load, so failures spread over the arrivals actually made.
    arrivals = max((t.job.submit_time_s for t in generated), default=span_s)
    failures = generate_failures(topology, max(10, jobs // 60), arrivals, rng)
    return Workload(topology, generated, failures)


def trace3k_workload(seed: int) -> Workload:
    return contended_workload(seed, TRACE3K_JOBS, load=TRACE3K_LOAD)


def large_snapshot(seed: int, clusters: int = 1000, shards_per_cluster: int = 10) -> Snapshot:
    """Pending jobs are drawn until they hold exactly clusters × shards_per_cluster shards."""
    rng = np.random.default_rng(seed)
    topology = generate_topology(large_topology(clusters), rng)
    target = len(topology.clusters) * shards_per_cluster
    spec = WorkloadSpec(jobs=target // 3, max_training_shards=6, gpu_probability=0.02)
    pool = list(generate_jobs(topology, spec, rng))
    chosen: list[TraceJob] = []
    shards = 0
    index = 0
    while shards < target:
        if index == len(pool):
            pool.extend(generate_jobs(topology, spec, rng, prefix=f"more{len(pool)}"))
        trace = pool[index]
        index += 1
        if shards + trace.job.shards > target and trace.job.shards > 1:
            continue
        chosen.append(trace)
        shards += trace.job.shards
    return _snapshot(topology, tuple(chosen))
