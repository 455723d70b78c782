"""The simulations of a benchmark, one per (workload, policy), side by side in worker processes.

Each simulation is deterministic and depends on nothing but its workload, policy and seed, so
where it runs changes none of its figures; only the timings of its cycles see the cores it
shares. Workers are spawned, not forked: the parent runs a progress thread.
"""

from __future__ import annotations

import functools
import multiprocessing
import queue
import resource
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from continuum.schedulers.sim.simulator import SimulationResult
    from continuum.schedulers.trace import Workload

# A worker reports its progress at most this often (as a fraction of the simulated time).
PROGRESS_STEP = 0.01


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass(frozen=True)
class Outcome:
    seed: int
    policy: str
    result: SimulationResult
    # Of the process that ran the simulation, so far.
    peak_rss_mb: float
    seconds: float
    cpu_seconds: float


def simulate_one(
    workload: Workload,
    infeasible: frozenset[str],
    seed: int,
    policy: str,
    interval: float,
    progress: Callable[[float], None] | None,
) -> Outcome:
    from continuum.schedulers.config import PolicyConfig
    from continuum.schedulers.sim.simulator import SimulationConfig, simulate

    config = SimulationConfig(
        cycle_interval_s=interval, policy=PolicyConfig(seed=seed, explain=False)
    )
    wall, cpu = time.perf_counter(), time.process_time()
    result = simulate(workload, policy, config, progress=progress, infeasible=infeasible)
    return Outcome(
        seed,
        policy,
        result,
        peak_rss_mb(),
        time.perf_counter() - wall,
        time.process_time() - cpu,
    )


def simulate_all(
    workloads: Sequence[Workload],
    policies: Sequence[str],
    interval: float,
    workers: int,
    progress: Callable[[str, float], None],
) -> list[Outcome]:
    """Every policy on every workload, in seed-then-policy order; `progress(policy, fraction)`
    hears of each simulation's progress, and of its end with 1.0. With one worker they run
    one after the other in this process."""
    from continuum.schedulers.sim.simulator import infeasible_jobs

    infeasible = [infeasible_jobs(workload) for workload in workloads]
    tasks = [(seed, policy) for seed in range(len(workloads)) for policy in policies]
    if workers <= 1 or len(tasks) <= 1:
        outcomes = []
        for seed, policy in tasks:
            report = functools.partial(progress, policy)
            outcomes.append(
                simulate_one(workloads[seed], infeasible[seed], seed, policy, interval, report)
            )
            progress(policy, 1.0)
        return outcomes
    context = multiprocessing.get_context("spawn")
    reports: multiprocessing.Queue[tuple[str, float]] = context.Queue()
    done: dict[tuple[int, str], Outcome] = {}
    with ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)),
        mp_context=context,
        initializer=_start_worker,
        initargs=(reports,),
    ) as pool:
        running: dict[Future[Outcome], tuple[int, str]] = {
            pool.submit(
                _simulate_in_worker, workloads[seed], infeasible[seed], seed, policy, interval
            ): (seed, policy)
            for seed, policy in sorted(tasks, key=_heaviest_first)
        }
        pending = set(running)
        while pending:
            finished, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            _drain(reports, progress)
            for future in finished:
                task = running[future]
                done[task] = future.result()
                progress(task[1], 1.0)
    return [done[task] for task in tasks]


def _heaviest_first(task: tuple[int, str]) -> tuple[bool, int]:
    """Policies in DRF order schedule every job every cycle and take longest; started first,
    they do not leave one worker busy alone at the end."""
    from continuum.schedulers.config import Order
    from continuum.schedulers.policy import STRATEGIES

    seed, policy = task
    return (STRATEGIES[policy].order is not Order.DRF, seed)


def _drain(
    reports: multiprocessing.Queue[tuple[str, float]], progress: Callable[[str, float], None]
) -> None:
    while True:
        try:
            policy, fraction = reports.get_nowait()
        except queue.Empty:
            return
        progress(policy, fraction)


_reports: multiprocessing.Queue[tuple[str, float]] | None = None


def _start_worker(reports: multiprocessing.Queue[tuple[str, float]]) -> None:
    global _reports  # noqa: PLW0603 - the queue a worker inherits, for all its tasks
    _reports = reports


def _simulate_in_worker(
    workload: Workload, infeasible: frozenset[str], seed: int, policy: str, interval: float
) -> Outcome:
    reported = [0.0]

    def report(fraction: float) -> None:
        if _reports is not None and fraction - reported[0] >= PROGRESS_STEP and fraction < 1.0:
            reported[0] = fraction
            _reports.put((policy, fraction))

    return simulate_one(workload, infeasible, seed, policy, interval, report)
