"""The KubeRay stand-in's checkpoints: when a Running shard is due one, by the interval its
pods carry or the default, counted from when it was first seen Running or its newest
checkpoint (not one carried over from an older copy)."""

from typing import Any

import pytest

from continuum.operator.api.shard_resources import RAY_JOB
from e2e.kuberay_sim import Checkpointer, Target, next_step, store_reachable

pytestmark = pytest.mark.unit


def ray_job(uid: str, interval: str | None = None, checkpoint: str | None = None,
            running: bool = True) -> dict[str, Any]:  # fmt: skip
    env = [{"name": "CONTINUUM_CHECKPOINT_INTERVAL_SECONDS", "value": interval}] if interval else []
    return {
        "metadata": {"uid": uid, "name": "j-0", "namespace": "ns",
                     "annotations": {"continuum.dev/last-checkpoint": checkpoint}
                     if checkpoint else {}},
        "spec": {"rayClusterSpec": {"headGroupSpec": {"template": {"spec": {"containers": [
            {"name": "ray-head", "env": env}]}}}}},
        "status": {"jobDeploymentStatus": "Running" if running else "Initializing"},
    }  # fmt: skip


def test_a_running_shard_is_due_once_per_its_own_interval() -> None:
    checkpointer = Checkpointer(default_interval_s=60.0)
    job = ray_job("a", interval="20")
    assert not checkpointer.due(job, RAY_JOB, now=1000.0)  # first seen Running
    assert not checkpointer.due(job, RAY_JOB, now=1019.0)
    assert checkpointer.due(job, RAY_JOB, now=1020.0)


def test_the_newest_checkpoint_counts_and_an_older_one_does_not() -> None:
    checkpointer = Checkpointer(default_interval_s=30.0)
    # 2001-09-09T01:46:40Z is 1000000000.
    assert not checkpointer.due(ray_job("b"), RAY_JOB, now=1_000_000_000.0)
    recent = ray_job("b", checkpoint="2001-09-09T01:47:00Z")
    assert not checkpointer.due(recent, RAY_JOB, now=1_000_000_040.0)
    assert checkpointer.due(recent, RAY_JOB, now=1_000_000_050.0)
    # A new copy carrying an old checkpoint: counted from its own start.
    carried = ray_job("c", checkpoint="2001-09-09T01:40:00Z")
    assert not checkpointer.due(carried, RAY_JOB, now=1_000_000_100.0)
    assert checkpointer.due(carried, RAY_JOB, now=1_000_000_130.0)


def test_a_shard_not_running_is_never_due_and_no_store_is_always_reachable() -> None:
    checkpointer = Checkpointer(default_interval_s=1.0)
    assert not checkpointer.due(ray_job("d", running=False), RAY_JOB, now=5000.0)
    assert store_reachable(None)
    assert not store_reachable(("127.0.0.1", 1), timeout_s=0.5)


def test_a_request_for_a_last_checkpoint_is_answered_at_once_and_once() -> None:
    checkpointer = Checkpointer(default_interval_s=60.0)
    asked = ray_job("e", checkpoint="2001-09-09T01:46:50Z")
    asked["metadata"]["annotations"]["continuum.dev/checkpoint-requested"] = (
        "2001-09-09T01:46:55.500000+00:00"
    )
    assert checkpointer.due(asked, RAY_JOB, now=1_000_000_000.0)  # interval not yet over
    asked["metadata"]["annotations"]["continuum.dev/last-checkpoint"] = "2001-09-09T01:46:56.000Z"
    assert not checkpointer.due(asked, RAY_JOB, now=1_000_000_001.0)


def test_a_replacement_waiting_for_its_hand_over_takes_no_checkpoint_until_let_start() -> None:
    checkpointer = Checkpointer(default_interval_s=10.0)
    waiting = ray_job("f", interval="10")
    waiting["metadata"]["annotations"]["continuum.dev/handover-from"] = "member-1"
    assert not checkpointer.due(waiting, RAY_JOB, now=1000.0)
    assert not checkpointer.due(waiting, RAY_JOB, now=1030.0)  # however long it waits
    waiting["metadata"]["annotations"]["continuum.dev/handover-done"] = "2001-09-09T01:46:40Z"
    assert not checkpointer.due(waiting, RAY_JOB, now=1040.0)  # its interval starts now
    assert checkpointer.due(waiting, RAY_JOB, now=1050.0)


def test_a_checkpoint_is_attempted_its_lead_before_the_interval_is_over() -> None:
    checkpointer = Checkpointer(default_interval_s=60.0, lead_s=2.0)
    job = ray_job("g", interval="20")
    assert not checkpointer.due(job, RAY_JOB, now=1000.0)
    assert not checkpointer.due(job, RAY_JOB, now=1017.9)
    assert checkpointer.due(job, RAY_JOB, now=1018.0)  # a slow store still lands it by 1020
    # A lead longer than half the interval would checkpoint twice as often: it is capped.
    short = Checkpointer(default_interval_s=60.0, lead_s=5.0)
    assert not short.due(ray_job("h", interval="4"), RAY_JOB, now=1000.0)
    assert not short.due(ray_job("h", interval="4"), RAY_JOB, now=1001.9)
    assert short.due(ray_job("h", interval="4"), RAY_JOB, now=1002.0)
    with pytest.raises(ValueError, match="lead"):
        Checkpointer(default_interval_s=1.0, lead_s=-1.0)


def test_a_suspended_ray_job_stops_and_starts_again_once_let() -> None:
    running = {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}
    assert next_step(RAY_JOB, running, suspend=True) == Target.SUSPENDING
    assert next_step(RAY_JOB, {"jobDeploymentStatus": "Suspending"}, True) == Target.SUSPENDED
    assert next_step(RAY_JOB, {"jobDeploymentStatus": "Suspended"}, True) is None
    assert next_step(RAY_JOB, {"jobDeploymentStatus": "Complete"}, True) is None
    assert next_step(RAY_JOB, {"jobDeploymentStatus": "Suspended"}) == Target.INITIALIZING
    assert next_step(RAY_JOB, running) is None
