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
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from continuum.schedulers.sim.bench import PolicyRuns
    from continuum.schedulers.trace import Workload

DEFAULT_SEEDS = {"small": 20, "contended": 3, "large": 3, "trace3k": 1, "trace": 1}
# As continuum.schedulers.sim.scenarios.SCENARIO_NAMES, spelled out so that building the parser
# does not import numpy.
SCENARIOS = ("small", "contended", "large", "trace3k")


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


def _select_policies(text: str) -> list[str]:
    from continuum.schedulers.policy import POLICY_NAMES

    if text == "all":
        return list(POLICY_NAMES)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in POLICY_NAMES]
    if unknown:
        raise SystemExit(f"unknown policy {unknown[0]!r}; known: {', '.join(POLICY_NAMES)}")
    return names


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from continuum.schedulers.loaders import FormatError, load_workload, write_workload
    from continuum.schedulers.sim import bench
    from continuum.schedulers.sim.scenarios import (
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
    runs = {name: bench.PolicyRuns() for name in policies}
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
            extra["shape"] = bench.large_cycles(seeds, args.clusters, policies, runs)
        else:
            bench.simulate_all_policies(
                workloads, policies, args.cycle_interval, args.workers, runs, advance
            )
        yardstick: PolicyRuns | None = None
        if scenario == "small":
            yardstick = bench.milp_small(seeds, policies, args.milp_max_variables, runs)

    table = bench.summaries(runs, large=scenario == "large")
    if yardstick is not None:
        milp_row: dict[str, Any] = dict.fromkeys(bench.FIELDS)
        milp_row["objective"] = bench.median(yardstick.objectives)
        milp_row["optimality_gap"] = 0.0 if yardstick.objectives else None
        table["milp"] = milp_row
    report: dict[str, Any] = {
        "scenario": scenario,
        "machine": bench.machine(),
        "seconds": round(time.perf_counter() - started, 2),
        "seeds": seeds,
        **extra,
        "policies": table,
    }
    _print(Console(width=220), report, Table)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.markdown is not None:
        args.markdown.write_text(bench.markdown(report), encoding="utf-8")
    if args.plot is not None:
        bench.plot(runs, args.plot)
    return 0


def _print(console: Any, report: dict[str, Any], table_type: Any) -> None:
    from continuum.schedulers.sim.bench import format_cell, report_columns

    table = table_type(title=f"continuum bench: {report['scenario']} ({report['seconds']} s)")
    columns = report_columns(report)
    table.add_column("policy")
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    for name, row in report["policies"].items():
        table.add_row(name, *(format_cell(row.get(column)) for column in columns))
    console.print(table)
