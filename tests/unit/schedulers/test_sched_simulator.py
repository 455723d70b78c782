"""The simulator and the benchmark command on tiny workloads."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sched_builders import NETWORK, SITES, cloud, edge, federated, job

from continuum.operator.cli import bench
from continuum.schedulers.config import PolicyConfig
from continuum.schedulers.model import CycleResult, Job, Residency, Snapshot
from continuum.schedulers.policy import schedule
from continuum.schedulers.sim.bench import FIELDS
from continuum.schedulers.sim.generators import (
    TopologySpec,
    WorkloadSpec,
    generate_failures,
    generate_jobs,
    generate_topology,
)
from continuum.schedulers.sim.metrics import SimulationMetrics, combined_scores
from continuum.schedulers.sim.simulator import SimulationConfig, infeasible_jobs, simulate
from continuum.schedulers.trace import Failure, FailureKind, Topology, TraceJob, Workload

pytestmark = pytest.mark.unit


def tiny_workload(seed: int = 1, jobs: int = 25) -> Workload:
    rng = np.random.default_rng(seed)
    topology = generate_topology(TopologySpec(tenants=3), rng)
    generated = generate_jobs(topology, WorkloadSpec(jobs=jobs, span_s=900.0, load=1.2), rng)
    return Workload(topology, generated, generate_failures(topology, 2, 900.0, rng))


def test_every_job_finishes_and_continuum_keeps_residency() -> None:
    result = simulate(tiny_workload(), "continuum", SimulationConfig(cycle_interval_s=30.0))
    metrics = result.metrics
    assert metrics.completed_jobs + metrics.infeasible_jobs == 25
    assert metrics.residency_violations == 0
    assert metrics.slo_attainment is not None and 0.0 <= metrics.slo_attainment <= 1.0
    assert metrics.mean_jct_s is not None and metrics.p95_jct_s is not None
    assert metrics.p95_jct_s >= metrics.mean_jct_s * 0.5
    assert result.timeline and result.timeline[-1].time_s > 0


def test_an_outage_makes_shards_move() -> None:
    workload = tiny_workload(2, jobs=10)
    busiest = workload.topology.clusters[0].name
    quiet = simulate(replace(workload, failures=()), "continuum")
    outages = tuple(
        Failure(t, c.name, FailureKind.DOWN, 600.0)
        for t in (300.0,)
        for c in workload.topology.clusters
        if c.name != busiest
    )
    stormy = simulate(replace(workload, failures=outages), "continuum")
    assert stormy.metrics.placements > quiet.metrics.placements


def test_the_residency_blind_baselines_are_caught_breaking_residency() -> None:
    metrics = simulate(tiny_workload(), "cloud-only").metrics
    assert metrics.residency_violations > 0


def metrics(**overrides: float | int | None) -> SimulationMetrics:
    base: dict[str, float | int | None] = dict(
        slo_attainment=0.9,
        jain_index=0.95,
        max_rho=2.0,
        mean_jct_s=100.0,
        p95_jct_s=200.0,
        mean_queueing_s=10.0,
        wan_gb=10.0,
        cost=5.0,
        residency_violations=0,
        placements=100,
        placements_per_s=1000.0,
        p99_cycle_ms=5.0,
        cycles=10,
        completed_jobs=10,
        unfinished_jobs=0,
    )
    base.update(overrides)
    return SimulationMetrics(**base)  # type: ignore[arg-type]


def test_the_combined_score_rewards_better_figures_and_punishes_violations() -> None:
    scores = combined_scores(
        {
            "good": metrics(),
            "slow": metrics(mean_jct_s=300.0, p95_jct_s=900.0),
            "leaky": metrics(residency_violations=50),
        }
    )
    assert scores["good"] > scores["slow"]
    assert scores["leaky"] == pytest.approx(scores["good"] / 2)


def run_bench(arguments: list[str]) -> int:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return bench.run(parser.parse_args([*arguments, "--no-progress"]))


def test_bench_writes_json_and_markdown(tmp_path: Path) -> None:
    out = tmp_path / "small.json"
    markdown = tmp_path / "small.md"
    code = run_bench(
        [
            "--scenario",
            "small",
            "--seeds",
            "1",
            "--policies",
            "continuum,fifo",
            "--json",
            str(out),
            "--markdown",
            str(markdown),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert report["scenario"] == "small"
    assert set(report["policies"]) == {"continuum", "fifo", "milp"}
    for name in ("continuum", "fifo"):
        assert set(FIELDS) <= set(report["policies"][name])
    assert report["policies"]["continuum"]["residency_violations"] == 0
    assert report["policies"]["milp"]["slo_attainment"] is None
    assert "| continuum |" in markdown.read_text()


def test_bench_gives_the_same_figures_from_worker_processes(tmp_path: Path) -> None:
    timed = {"placements_per_s", "p99_cycle_ms", "peak_rss_mb", "simulate_s", "simulate_cpu_s"}
    figures = []
    for workers in ("1", "2"):
        out = tmp_path / f"workers-{workers}.json"
        arguments = ["--scenario", "small", "--seeds", "1", "--policies", "continuum,karmada"]
        assert run_bench([*arguments, "--workers", workers, "--json", str(out)]) == 0
        rows = json.loads(out.read_text())["policies"]
        assert all(rows[name]["simulate_cpu_s"] > 0 for name in ("continuum", "karmada"))
        figures.append(
            {name: {k: v for k, v in row.items() if k not in timed} for name, row in rows.items()}
        )
    assert figures[0] == figures[1]


def test_bench_times_a_scaled_down_large_cycle(tmp_path: Path) -> None:
    out = tmp_path / "large.json"
    code = run_bench(
        [
            "--scenario",
            "large",
            "--clusters",
            "20",
            "--seeds",
            "1",
            "--policies",
            "continuum,karmada",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert report["shape"]["pending_shards"] == 10 * report["shape"]["clusters"]
    row = report["policies"]["continuum"]
    assert row["p99_cycle_ms"] > 0 and row["placements_per_s"] > 0 and row["peak_rss_mb"] > 0
    assert row["slo_attainment"] is None


def test_infeasible_jobs_are_those_no_empty_continuum_can_hold() -> None:
    clusters = (
        edge("delft-1", "delft", cpu=2.0),
        edge("lyon-1", "lyon", cpu=4.0, allocated=None, risk=0.95),
        cloud("cloud-1", cpu=8.0),
    )
    jobs = (
        job("t/fits", shards=4, cpu=2.0),
        job("t/too-big-a-gang", shards=8, cpu=2.0),  # 1 + 2 + 4 = 7 fit at most
        job("t/elastic", shards=8, cpu=2.0, min_available=3),
        job("t/no-site", data_site="eindhoven", residency=Residency.SITE),
        job("t/site", data_site="delft", residency=Residency.SITE, shards=2, cpu=1.0),
        job("t/site-gang", data_site="delft", residency=Residency.SITE, shards=3, cpu=1.0),
        job("t/risky-is-fine-alone", data_site="lyon", residency=Residency.SITE),
        job("t/no-label", cluster_selector={"gpu": "a100"}),
        federated("t/fed-ok", ["delft", "lyon"], cpu=1.0),
        federated("t/fed-crowded", ["delft", "delft", "delft"], cpu=1.0),
    )
    topology = Topology(SITES, clusters, network=NETWORK)
    workload = Workload(topology, tuple(TraceJob(j, 60.0) for j in jobs), ())

    def alone(one: Job) -> bool:
        snapshot = Snapshot(
            SITES,
            tuple(replace(c, healthy=True) for c in clusters),
            (replace(one, risk_threshold=1.0),),
            network=NETWORK,
        )
        return len(schedule(snapshot).decisions) < max(one.gang_size, 1)

    expected = {j.key for j in jobs if alone(j)}
    assert infeasible_jobs(workload) == expected
    assert expected == {
        "t/too-big-a-gang",
        "t/no-site",
        "t/site-gang",
        "t/no-label",
        "t/fed-crowded",
    }


@pytest.mark.parametrize("seed", [3, 8, 13])
@pytest.mark.parametrize("policy", ["fifo", "multikueue", "karmada", "cloud-only", "nearest"])
def test_leaving_out_jobs_without_room_changes_nothing(
    policy: str, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An overloaded trace with outages, so that backlogs form and jobs wait through
    # completions, splits and failures; the run that retries every job every cycle must make
    # the very same decisions, cycle by cycle, and give the very same figures (all but the
    # timings).
    rng = np.random.default_rng(seed)
    topology = generate_topology(TopologySpec(tenants=3), rng)
    generated = generate_jobs(topology, WorkloadSpec(jobs=80, span_s=1200.0, load=2.5), rng)
    workload = Workload(topology, generated, generate_failures(topology, 4, 1200.0, rng))
    config = SimulationConfig(cycle_interval_s=20.0)

    def run() -> tuple[SimulationMetrics, list[tuple[float, list[tuple[str, int, str]]]]]:
        cycles: list[tuple[float, list[tuple[str, int, str]]]] = []

        def recording(snapshot: Snapshot, name: str, policy_config: PolicyConfig) -> CycleResult:
            result = schedule(snapshot, name, policy_config)
            placed = [(d.job_key, d.shard_index, d.cluster) for d in result.decisions]
            cycles.append((snapshot.now_s, placed))
            return result

        monkeypatch.setattr("continuum.schedulers.sim.simulator.schedule", recording)
        metrics = simulate(workload, policy, config, infeasible=frozenset()).metrics
        return metrics, cycles

    skipping, skipping_cycles = run()
    monkeypatch.setattr("continuum.schedulers.sim.backlog.skips_hopeless", lambda _: False)
    retrying, retrying_cycles = run()
    assert skipping_cycles == retrying_cycles
    untimed = {"placements_per_s": None, "p99_cycle_ms": None}
    assert replace(skipping, **untimed) == replace(retrying, **untimed)
