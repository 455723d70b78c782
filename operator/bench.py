"""`continuum bench`: compare placement policies on a built-in scenario or on trace files.

- `small`: every policy simulated on a short trace, plus one cycle per seed against the MILP
  optimum (the median gap is reported).
- `contended`: every policy simulated on an over-subscribed continuum with failures.
- `large`: one full cycle of 10,000 pending shards over 1,000 clusters (`--clusters` scales
  it), for speed and memory.
- `trace3k`: every policy simulated on 3,000 jobs over the 30 clusters of `contended`.
- `--topology/--latency/--trace [--failures]`: every policy simulated on the given files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from continuum.schedulers.metrics import SimulationMetrics, TimelinePoint
    from continuum.schedulers.trace import Workload

DEFAULT_SEEDS = {"small": 20, "contended": 3, "large": 3, "trace3k": 1, "trace": 1}
# As continuum.schedulers.scenarios.SCENARIO_NAMES, spelled out so that building the parser
# does not import numpy.
SCENARIOS = ("small", "contended", "large", "trace3k")
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--scenario", choices=SCENARIOS)
    source.add_argument("--topology", type=Path, help="topology YAML (with --trace)")
    parser.add_argument("--latency", type=Path, help="latency CSV")
    parser.add_argument("--trace", type=Path, help="trace CSV")
    parser.add_argument("--failures", type=Path, help="failure CSV")
    parser.add_argument(
        "--policies", default="all", help="comma-separated policy names (default: all)"
    )
    parser.add_argument("--seeds", type=int, help="seeds to run (default depends on scenario)")
    parser.add_argument(
        "--sim-seeds",
        type=int,
        help="seeds simulated on `small` (default 3; the MILP comparison uses --seeds)",
    )
    parser.add_argument("--clusters", type=int, default=1000, help="clusters for `large`")
    parser.add_argument(
        "--jobs", type=int, help="jobs in the `contended` trace (default 600 over 2 h)"
    )
    parser.add_argument(
        "--load", type=float, default=1.4, help="offered load of the `contended` trace"
    )
    parser.add_argument("--cycle-interval", type=float, default=10.0, help="seconds per cycle")
    parser.add_argument(
        "--milp-max-variables",
        type=int,
        default=20_000,
        help="skip the MILP (null fields) above this many variables",
    )
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--markdown", type=Path, help="write the results as a Markdown table")
    parser.add_argument("--plot", type=Path, help="plot SLO attainment and fairness over time")
    parser.add_argument("--export", type=Path, help="write the scenario's trace files here")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes that simulate policies side by side (default: one per cpu; 1 runs "
        "them one after the other in this process)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


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


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


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


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _p99(values: Sequence[float]) -> float | None:
    import numpy

    return float(numpy.percentile(values, 99)) if values else None


def _select_policies(text: str) -> list[str]:
    from continuum.schedulers.policy import POLICY_NAMES

    if text == "all":
        return list(POLICY_NAMES)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in POLICY_NAMES]
    if unknown:
        raise SystemExit(f"unknown policy {unknown[0]!r}; known: {', '.join(POLICY_NAMES)}")
    return names


def _simulate_all(
    workloads: Sequence[Workload],
    policies: Sequence[str],
    interval: float,
    workers: int,
    runs: dict[str, PolicyRuns],
    advance: Callable[[str, float], None],
) -> None:
    from continuum.operator.simulation_pool import simulate_all

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


def _milp_small(
    seeds: int, policies: Sequence[str], max_variables: int, runs: dict[str, PolicyRuns]
) -> PolicyRuns:
    from continuum.schedulers.milp import evaluate_objective, optimality_gap, solve_milp
    from continuum.schedulers.policy import schedule
    from continuum.schedulers.scenarios import small_snapshot

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


def _large(
    seeds: int, clusters: int, policies: Sequence[str], runs: dict[str, PolicyRuns]
) -> dict[str, Any]:
    from continuum.schedulers.milp import evaluate_objective
    from continuum.schedulers.policy import schedule
    from continuum.schedulers.scenarios import large_snapshot

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


def _summaries(runs: dict[str, PolicyRuns], large: bool) -> dict[str, dict[str, Any]]:
    from continuum.schedulers.metrics import combined_scores

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
        row["objective"] = _median(run.objectives)
        row["optimality_gap"] = _median(run.gaps)
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


def _format(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
    return str(value)


def _columns(report: dict[str, Any]) -> list[str]:
    extra = ["combined_score", "p99_cycle_cpu_ms", "min_cycle_ms", "simulate_s", "simulate_cpu_s"]
    present = {key for row in report["policies"].values() for key in row}
    return [*FIELDS, *(column for column in extra if column in present)]


def markdown(report: dict[str, Any]) -> str:
    columns = _columns(report)
    lines = [
        f"Scenario `{report['scenario']}`, {report['machine']['cpus']} cpus, "
        f"load average {report['machine']['load_average']}.",
        "",
        "| policy | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for name, row in report["policies"].items():
        cells = [_format(row.get(column)) for column in columns]
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


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from continuum.schedulers.loaders import FormatError, load_workload, write_workload
    from continuum.schedulers.scenarios import (
        contended_workload,
        small_workload,
        trace3k_workload,
    )

    console = Console(stderr=True)
    if args.scenario is None and args.topology is None:
        console.print("give --scenario small|contended|large, or --topology and --trace")
        return 2
    if args.topology is not None and args.trace is None:
        console.print("--topology needs --trace (and optionally --latency, --failures)")
        return 2
    policies = _select_policies(args.policies)
    scenario = args.scenario or "trace"
    seeds = args.seeds or DEFAULT_SEEDS[scenario]
    runs = {name: PolicyRuns() for name in policies}
    workloads: list[Workload] = []
    try:
        if scenario == "trace":
            workloads = [load_workload(args.topology, args.latency, args.trace, args.failures)]
        elif scenario == "small":
            simulated = min(args.sim_seeds or 3, seeds)
            workloads = [small_workload(seed) for seed in range(simulated)]
        elif scenario == "contended":
            jobs = args.jobs or 600
            workloads = [contended_workload(seed, jobs, load=args.load) for seed in range(seeds)]
        elif scenario == "trace3k":
            workloads = [trace3k_workload(seed) for seed in range(seeds)]
    except FormatError as error:
        # Plain print: a console would wrap the path and line across lines.
        print(f"bad input: {error}", file=sys.stderr)
        return 2
    if args.export is not None:
        if not workloads:
            console.print("--export needs a trace scenario (small, contended or files)")
            return 2
        paths = write_workload(workloads[0], args.export)
        console.print("wrote " + ", ".join(str(p) for p in paths.values()))

    started = time.perf_counter()
    extra: dict[str, Any] = {}
    with Progress(console=console, transient=True, disable=args.no_progress) as progress:
        tasks = {
            name: progress.add_task(name, total=float(max(len(workloads), 1))) for name in policies
        }
        done_runs: dict[str, int] = dict.fromkeys(policies, 0)

        def advance(policy: str, fraction: float) -> None:
            if fraction >= 1.0:
                done_runs[policy] += 1
                progress.update(tasks[policy], completed=float(done_runs[policy]))
            else:
                progress.update(tasks[policy], completed=done_runs[policy] + fraction)

        if scenario == "large":
            extra["shape"] = _large(seeds, args.clusters, policies, runs)
        else:
            _simulate_all(workloads, policies, args.cycle_interval, args.workers, runs, advance)
        yardstick: PolicyRuns | None = None
        if scenario == "small":
            yardstick = _milp_small(seeds, policies, args.milp_max_variables, runs)

    table = _summaries(runs, large=scenario == "large")
    if yardstick is not None:
        milp_row: dict[str, Any] = dict.fromkeys(FIELDS)
        milp_row["objective"] = _median(yardstick.objectives)
        milp_row["optimality_gap"] = 0.0 if yardstick.objectives else None
        table["milp"] = milp_row
    report: dict[str, Any] = {
        "scenario": scenario,
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 2),
        "seeds": seeds,
        **extra,
        "policies": table,
    }
    _print(Console(width=220), report, Table)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.markdown is not None:
        args.markdown.write_text(markdown(report), encoding="utf-8")
    if args.plot is not None:
        plot(runs, args.plot)
    return 0


def _print(console: Any, report: dict[str, Any], table_type: Any) -> None:
    table = table_type(title=f"continuum bench: {report['scenario']} ({report['seconds']} s)")
    columns = _columns(report)
    table.add_column("policy")
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    for name, row in report["policies"].items():
        table.add_row(name, *(_format(row.get(column)) for column in columns))
    console.print(table)
