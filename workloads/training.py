"""A training shard: trains the softmax-regression model on its data site's sensor data, one Ray
task per step, checkpoints to its job's checkpoint URI and resumes from the newest checkpoint
there, so that a shard moved to another member (or restarted) continues where its last copy
stopped, losing at most one checkpoint interval of work.

    python -m continuum.workloads.training [--site delft] [--steps 30] [--step-s 1]

What the operator puts in the shard's environment decides the rest: CONTINUUM_DATA_SITE (a
Federated participant's data site; a Training shard is told with --site), CONTINUUM_CHECKPOINT_URI
(no checkpoints without it), CONTINUUM_CHECKPOINT_INTERVAL_SECONDS (300 by default),
CONTINUUM_SHARD_INDEX (checkpoints go to `<uri>/shard-<index>/`) and CONTINUUM_EPOCH (the
placement epoch this copy runs for, printed with the step it resumes at). It prints one line
per checkpoint and one when done; it exits 0 once it has trained all its steps.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from continuum.workloads.checkpoints import latest_checkpoint, save_checkpoint
from continuum.workloads.fedavg import accuracy, initial_weights, sgd
from continuum.workloads.sensors import Dataset, FloatArray, site_dataset

PREFIX = "step-"
LOCAL_STEPS, BATCH, RATE = 5, 64, 0.5

# (weights, the step's index) -> the weights after the step
Step = Callable[[FloatArray, int], FloatArray]


@dataclass(frozen=True)
class Plan:
    steps: int
    step_s: float
    # Where this shard's checkpoints go (None: nowhere), and how often.
    location: str | None
    interval_s: float


@dataclass(frozen=True)
class Outcome:
    resumed_at: int
    finished_at: int
    checkpoints: tuple[int, ...]


def location_of(uri: str | None, shard: str) -> str | None:
    return f"{uri.rstrip('/')}/shard-{shard}" if uri else None


def train(
    plan: Plan,
    step: Step,
    test: Dataset,
    log: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Runs the plan's steps from the newest checkpoint, checkpointing every interval and at the
    end; each step takes at least `step_s` (a stand-in for a step's real work)."""
    resumed = latest_checkpoint(plan.location, PREFIX) if plan.location else None
    done, weights = resumed if resumed else (0, initial_weights())
    log(f"resumes at step {done} of {plan.steps}")
    saved: list[int] = []
    last_save = clock()
    while done < plan.steps:
        began = clock()
        weights = step(weights, done)
        done += 1
        due = clock() - last_save >= plan.interval_s or done == plan.steps
        if plan.location and due:
            save_checkpoint(plan.location, done, weights, PREFIX)
            saved.append(done)
            last_save = clock()
            log(f"checkpoint at step {done}, accuracy {accuracy(weights, test):.3f}")
        sleep(max(0.0, plan.step_s - (clock() - began)))
    log(f"done at step {done}, accuracy {accuracy(weights, test):.3f}")
    return Outcome(resumed[0] if resumed else 0, done, tuple(saved))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="training", description=__doc__.splitlines()[0])
    site = os.environ.get("CONTINUUM_DATA_SITE")
    parser.add_argument(
        "--site", default=site, required=site is None, help="whose data (CONTINUUM_DATA_SITE)"
    )
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--step-s", type=float, default=1.0)
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args(argv)
    shard = os.environ.get("CONTINUUM_SHARD_INDEX", "0")
    epoch = os.environ.get("CONTINUUM_EPOCH", "")
    plan = Plan(
        steps=args.steps,
        step_s=args.step_s,
        location=location_of(os.environ.get("CONTINUUM_CHECKPOINT_URI"), shard),
        interval_s=float(os.environ.get("CONTINUUM_CHECKPOINT_INTERVAL_SECONDS", "300")),
    )
    train_set, test_set = site_dataset(args.site, args.samples)

    import ray  # only here: the module's functions are used and tested without Ray

    ray.init()
    remote_sgd = ray.remote(sgd)

    def one_step(weights: FloatArray, index: int) -> FloatArray:
        trained: FloatArray = ray.get(
            remote_sgd.remote(weights, train_set, LOCAL_STEPS, BATCH, RATE, index)
        )
        return trained

    def log(line: str) -> None:
        print(f"continuum-training shard {shard} epoch {epoch}: {line}", flush=True)

    train(plan, one_step, test_set, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
