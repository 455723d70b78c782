"""The benchmark's harness: policies simulated side by side or timed on one large cycle, and
their figures summarised as a report (JSON-ready rows, a Markdown table, a plot).

`continuum bench` (continuum.operator.cli.bench) reads the arguments and prints; everything it
measures and every figure it reports is computed here.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from continuum.schedulers.sim.pool import peak_rss_mb

if TYPE_CHECKING:
    from continuum.schedulers.sim.metrics import SimulationMetrics, TimelinePoint
    from continuum.schedulers.trace import Workload

FIELDS = (
    "slo_attainment",
    "jain_index",
    "max_rho",
    "mean_jct_s",
    "p95_jct_s",
    "wan_gb",
    "cost",
    "residency_violations",
    "objective",
    "optimality_gap",
    "placements_per_s",
    "p99_cycle_ms",
    "peak_rss_mb",
)


@dataclass
class PolicyRuns:
    metrics: list[SimulationMetrics] = field(default_factory=list)
    objectives: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    cycle_ms: list[float] = field(default_factory=list)
    placements_per_s: list[float] = field(default_factory=list)
    cycle_cpu_ms: list[float] = field(default_factory=list)
    # Wall and CPU seconds of its simulations, in the process that ran each.
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    timeline: tuple[TimelinePoint, ...] = ()


def machine() -> dict[str, Any]:
    import numpy

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _p99(values: Sequence[float]) -> float | None:
    import numpy

    return float(numpy.percentile(values, 99)) if values else None


def simulate_all_policies(
    workloads: Sequence[Workload],
    policies: Sequence[str],
    interval: float,
    workers: int,
    runs: dict[str, PolicyRuns],
    advance: Callable[[str, float], None],
) -> None:
    from continuum.schedulers.sim.pool import simulate_all

    for outcome in simulate_all(workloads, policies, interval, workers, advance):
        run = runs[outcome.policy]
        metrics = outcome.result.metrics
        run.metrics.append(metrics)
        if metrics.p99_cycle_ms is not None:
            run.cycle_ms.append(metrics.p99_cycle_ms)
        if metrics.placements_per_s is not None:
            run.placements_per_s.append(metrics.placements_per_s)
        run.seconds.append(outcome.seconds)
        run.cpu_seconds.append(outcome.cpu_seconds)
        run.peak_rss_mb = max(run.peak_rss_mb, outcome.peak_rss_mb, peak_rss_mb())
        if outcome.seed == 0:
            run.timeline = outcome.result.timeline


def milp_small(
    seeds: int, policies: Sequence[str], max_variables: int, runs: dict[str, PolicyRuns]
) -> PolicyRuns:
    from continuum.schedulers.policy import schedule
    from continuum.schedulers.sim.milp import evaluate_objective, optimality_gap, solve_milp
    from continuum.schedulers.sim.scenarios import small_snapshot

    yardstick = PolicyRuns()
    for seed in range(seeds):
        snapshot = small_snapshot(seed)
        solution = solve_milp(snapshot)
        if solution.variables > max_variables or not solution.optimal:
            continue
        yardstick.objectives.append(solution.objective)
        yardstick.gaps.append(0.0)
        for policy in policies:
            objective = evaluate_objective(snapshot, schedule(snapshot, policy))
            runs[policy].objectives.append(objective)
            runs[policy].gaps.append(optimality_gap(objective, solution.objective))
    return yardstick


def large_cycles(
    seeds: int, clusters: int, policies: Sequence[str], runs: dict[str, PolicyRuns]
) -> dict[str, Any]:
    from continuum.schedulers.policy import schedule
    from continuum.schedulers.sim.milp import evaluate_objective
    from continuum.schedulers.sim.scenarios import large_snapshot

    shape: dict[str, Any] = {}
    for seed in range(seeds):
        snapshot = large_snapshot(seed, clusters)
        shape = {
            "clusters": len(snapshot.clusters),
            "jobs": len(snapshot.jobs),
            "pending_shards": sum(j.shards for j in snapshot.jobs),
        }
        for policy in policies:
            # CPU time next to wall time: on a shared machine the wall clock also counts
            # the time other processes held the cores.
            cpu_started = time.process_time()
            result = schedule(snapshot, policy)
            runs[policy].cycle_cpu_ms.append((time.process_time() - cpu_started) * 1000)
            seconds = result.timing.total_ms / 1000
            runs[policy].cycle_ms.append(result.timing.total_ms)
            runs[policy].placements_per_s.append(len(result.decisions) / seconds)
            runs[policy].peak_rss_mb = peak_rss_mb()
            if seed == 0:
                runs[policy].objectives.append(evaluate_objective(snapshot, result))
    return shape


def summaries(runs: dict[str, PolicyRuns], large: bool) -> dict[str, dict[str, Any]]:
    from continuum.schedulers.sim.metrics import combined_scores

    table: dict[str, dict[str, Any]] = {}
    for name, run in runs.items():
        metrics = run.metrics
        row: dict[str, Any] = dict.fromkeys(FIELDS)
        if metrics:
            row.update(
                slo_attainment=_mean([m.slo_attainment for m in metrics]),
                jain_index=_mean([m.jain_index for m in metrics]),
                max_rho=_mean([m.max_rho for m in metrics]),
                mean_jct_s=_mean([m.mean_jct_s for m in metrics]),
                p95_jct_s=_mean([m.p95_jct_s for m in metrics]),
                wan_gb=_mean([m.wan_gb for m in metrics]),
                cost=_mean([m.cost for m in metrics]),
                residency_violations=sum(m.residency_violations for m in metrics),
            )
        row["objective"] = median(run.objectives)
        row["optimality_gap"] = median(run.gaps)
        row["placements_per_s"] = _mean(run.placements_per_s)
        # On `large` every sample is one full cycle; in simulations each is a run's p99.
        row["p99_cycle_ms"] = _p99(run.cycle_ms) if large else _mean(run.cycle_ms)
        row["peak_rss_mb"] = run.peak_rss_mb or None
        if run.cycle_cpu_ms:
            row["p99_cycle_cpu_ms"] = _p99(run.cycle_cpu_ms)
            row["min_cycle_ms"] = min(run.cycle_ms)
        if run.seconds:
            row["simulate_s"] = sum(run.seconds)
            row["simulate_cpu_s"] = sum(run.cpu_seconds)
        table[name] = row
    simulated = {name: _averaged(run.metrics) for name, run in runs.items() if run.metrics}
    if len(simulated) > 1:
        for name, score in combined_scores(simulated).items():
            table[name]["combined_score"] = score
    return table


def _averaged(metrics: list[SimulationMetrics]) -> SimulationMetrics:
    from dataclasses import replace

    first = metrics[0]
    return replace(
        first,
        slo_attainment=_mean([m.slo_attainment for m in metrics]),
        jain_index=_mean([m.jain_index for m in metrics]),
        max_rho=_mean([m.max_rho for m in metrics]),
        mean_jct_s=_mean([m.mean_jct_s for m in metrics]),
        p95_jct_s=_mean([m.p95_jct_s for m in metrics]),
        wan_gb=statistics.fmean(m.wan_gb for m in metrics),
        cost=statistics.fmean(m.cost for m in metrics),
        residency_violations=sum(m.residency_violations for m in metrics),
        placements=sum(m.placements for m in metrics),
        completed_jobs=sum(m.completed_jobs for m in metrics) // len(metrics),
    )


def format_cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
    return str(value)


def report_columns(report: dict[str, Any]) -> list[str]:
    extra = ["combined_score", "p99_cycle_cpu_ms", "min_cycle_ms", "simulate_s", "simulate_cpu_s"]
    present = {key for row in report["policies"].values() for key in row}
    return [*FIELDS, *(column for column in extra if column in present)]


def markdown(report: dict[str, Any]) -> str:
    columns = report_columns(report)
    lines = [
        f"Scenario `{report['scenario']}`, {report['machine']['cpus']} cpus, "
        f"load average {report['machine']['load_average']}.",
        "",
        "| policy | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for name, row in report["policies"].items():
        cells = [format_cell(row.get(column)) for column in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(runs: dict[str, PolicyRuns], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (slo_axis, jain_axis) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    for name, run in runs.items():
        if not run.timeline:
            continue
        hours = [p.time_s / 3600 for p in run.timeline]
        slo = [float("nan") if p.slo_attainment is None else p.slo_attainment for p in run.timeline]
        jain = [float("nan") if p.jain_index is None else p.jain_index for p in run.timeline]
        slo_axis.plot(hours, slo, label=name)
        jain_axis.plot(hours, jain, label=name, linewidth=0.8)
    slo_axis.set_ylabel("SLO attainment (cumulative)")
    jain_axis.set_ylabel("Jain's index (under contention)")
    jain_axis.set_xlabel("hours")
    slo_axis.legend(ncol=4, fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
