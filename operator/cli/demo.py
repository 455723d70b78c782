"""`continuum demo`: the embedded demo, the same fault act with and without foresight, on a
local Ray cluster whose member clusters are Ray resources (continuum.operator.demo)."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import TaskID


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fast", action="store_true", help="a shorter fault act (about a minute), as CI runs it"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="write summary.json, the plot and the checkpoints here (default: a temporary folder)",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the emulated packet loss")


def run(args: argparse.Namespace) -> int:
    import shutil

    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from continuum.operator.api import MemberCluster
    from continuum.operator.demo.app import (
        CASES,
        FAST,
        FULL,
        INFERENCE_JOB,
        TOPOLOGY,
        FaultAct,
        Network,
        RunRecord,
        build_store,
        build_summary,
        example_objects,
        print_summary,
        write_plot,
    )
    from continuum.operator.demo.ray_executor import LocalRay
    from continuum.workloads.fedavg import TrainingConfig

    profile = FAST if args.fast else FULL
    out: Path = args.out or Path(tempfile.mkdtemp(prefix="continuum-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    checkpoints = out / "checkpoints"
    # Shards resume from whatever checkpoints they find: a previous run's must not count.
    shutil.rmtree(checkpoints, ignore_errors=True)
    console = Console()
    latency_csv = (TOPOLOGY / "default-latency.csv").read_text()
    network = Network(latency_csv)
    members = build_store(latency_csv).list(MemberCluster).valid
    member_cpus = {
        member.metadata.name or "": member.spec.capacity.cpu.cores
        for member in members
        if member.spec.capacity is not None and member.spec.capacity.cpu is not None
    }
    inference_job = next(
        obj for obj in example_objects() if obj["metadata"]["name"] == INFERENCE_JOB
    )
    slo_ms = float(inference_job["spec"]["objectives"]["latencyP99Ms"])
    started = time.monotonic()
    ray = LocalRay(member_cpus)
    records: dict[str, RunRecord] = {}
    console.print(f"[bold]Continuum demo[/] ({profile.name}): starting Ray on 127.0.0.1 with "
                  f"{', '.join(f'cluster/{name}' for name in member_cpus)}")  # fmt: skip
    try:
        ray.start()
        console.print(f"Ray is up in {ray.started_in_s:.1f} s at {ray.node_address()}")
        columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            reuse: dict[tuple[int, str], Any] = {}
            for case in CASES:
                task: TaskID = progress.add_task(f"{case}: setting up", total=None)

                def advance(record: RunRecord, text: str, task: TaskID = task) -> None:
                    progress.update(task, description=f"{record.case}: {text}")

                act = FaultAct(
                    case, profile, ray, network, latency_csv, checkpoints,
                    TrainingConfig(local_compute_s=profile.local_compute_s),
                    say=progress.console.print, progress=advance, seed=args.seed, reuse=reuse,
                )  # fmt: skip
                records[case] = act.run()
                reuse = act.leftovers
                done = records[case]
                progress.update(task, description=f"{case}: done, {done.duration_s:.1f} s")
    finally:
        stopping = time.monotonic()
        ray.stop()
        stopped_in_s = time.monotonic() - stopping
    plotting = time.monotonic()
    plot = out / "demo.png"
    write_plot(records, plot)
    plotted_in_s = time.monotonic() - plotting
    duration = time.monotonic() - started
    summary = build_summary(records, profile, ray, slo_ms, duration, plot, checkpoints)
    summary["timings_s"].update(ray_stop=round(stopped_in_s, 2), plot=round(plotted_in_s, 2))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(console, summary)
    console.print(f"plot: {plot}", soft_wrap=True)
    console.print(f"summary: {out / 'summary.json'}", soft_wrap=True)
    if not all(record.recovered for record in records.values()):
        console.print("[red]a fault act did not recover; see the events above[/]")
        return 1
    return 0
