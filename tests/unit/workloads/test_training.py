"""The training workload's loop and its checkpoints, without Ray: a step is the model's own SGD."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from continuum.workloads import checkpoints, training
from continuum.workloads.fedavg import initial_weights, sgd
from continuum.workloads.sensors import FloatArray, site_dataset

pytestmark = pytest.mark.unit

TRAIN, TEST = site_dataset("delft", 400)


class Clock:
    """Time that moves only when the loop sleeps or a step works."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def stepper(clock: Clock, work_s: float) -> training.Step:
    def step(weights: FloatArray, index: int) -> FloatArray:
        clock.now += work_s
        return sgd(weights, TRAIN, 2, 32, 0.5, index)

    return step


def run(location: str | None, steps: int, interval_s: float, lines: list[str]) -> training.Outcome:
    clock = Clock()
    plan = training.Plan(steps=steps, step_s=1.0, location=location, interval_s=interval_s)
    return training.train(plan, stepper(clock, 0.25), TEST, lines.append, clock, clock.sleep)


def test_it_checkpoints_every_interval_and_at_the_end_then_a_successor_resumes_there(
    tmp_path: Path,
) -> None:
    location = training.location_of(f"file://{tmp_path}/ckpt/", "3")
    assert location == f"file://{tmp_path}/ckpt/shard-3"
    lines: list[str] = []
    first = run(location, steps=10, interval_s=3.0, lines=lines)
    # A step a second, its work the first quarter: 3 s have passed during steps 4, 7 and 10.
    assert (first.resumed_at, first.finished_at, first.checkpoints) == (0, 10, (4, 7, 10))
    assert sorted(p.name for p in (tmp_path / "ckpt" / "shard-3").iterdir()) == [
        "step-00004.npz", "step-00007.npz", "step-00010.npz",
    ]  # fmt: skip
    assert lines[0] == "resumes at step 0 of 10" and lines[-1].startswith("done at step 10")

    # The job asks for more steps: its next copy continues from step 10, not from scratch.
    second = run(location, steps=12, interval_s=3.0, lines=[])
    assert (second.resumed_at, second.finished_at, second.checkpoints) == (10, 12, (12,))


def test_the_resumed_weights_are_the_checkpointed_ones_and_training_improves_them(
    tmp_path: Path,
) -> None:
    location = str(tmp_path / "plain-folder")  # a folder without a scheme works too
    run(location, steps=20, interval_s=100.0, lines=[])
    stored = checkpoints.latest_checkpoint(location, training.PREFIX)
    assert stored is not None
    index, weights = stored
    assert index == 20
    assert not np.allclose(weights, initial_weights())
    expected = initial_weights()
    for step in range(20):
        expected = sgd(expected, TRAIN, 2, 32, 0.5, step)
    np.testing.assert_allclose(weights, expected)


def test_without_a_checkpoint_uri_it_trains_and_writes_nothing(tmp_path: Path) -> None:
    outcome = run(None, steps=3, interval_s=1.0, lines=[])
    assert (outcome.finished_at, outcome.checkpoints) == (3, ())
    assert list(tmp_path.iterdir()) == []


def test_a_half_written_checkpoint_is_never_loaded(tmp_path: Path) -> None:
    checkpoints.save_checkpoint(str(tmp_path), 4, initial_weights() + 1.0, "step-")
    (tmp_path / "step-00009.tmp.npz").write_bytes(b"cut short")
    stored = checkpoints.latest_checkpoint(str(tmp_path), "step-")
    assert stored is not None and stored[0] == 4
