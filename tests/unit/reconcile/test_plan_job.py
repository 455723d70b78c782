"""Planning each job from its own part of the cycle's result plans it as from the whole."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from continuum.operator.api import MLJob
from continuum.operator.api.keys import JobKey
from continuum.operator.reconcile.placement import plan_job, results_by_job
from continuum.schedulers.model import (
    CycleResult,
    Decision,
    Migration,
    MigrationReason,
    Preemption,
    Unschedulable,
)

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def job(name: str) -> MLJob:
    return MLJob.model_validate({
        "apiVersion": "continuum.dev/v1alpha1", "kind": "MLJob",
        "metadata": {"name": name, "namespace": "team-a", "uid": f"uid-{name}"},
        "spec": {"mode": "Training", "tenant": "team-a",
                 "shards": {"count": 2, "resources": {"cpu": "1", "memory": "1Gi"}},
                 "ray": {"image": "rayproject/ray:2.50.0", "entrypoint": "python t.py"}},
    })  # fmt: skip


def test_each_jobs_part_of_the_result_plans_it_as_the_whole_result_does() -> None:
    result = CycleResult(
        "continuum",
        decisions=(
            Decision("team-a/a", 0, "edge-1", 1.0, ("near its data",)),
            Decision("team-a/b", 0, "edge-2", 2.0, ()),
            Decision("team-a/a", 1, "cloud", 3.0, ()),
        ),
        unschedulable=(Unschedulable("team-a/c", "no cluster has 1 cpu free"),),
        preemptions=(Preemption("team-a/b", 1, "edge-2", "over its fair share"),),
        migrations=(Migration("team-a/b", 0, "edge-1", "edge-2", MigrationReason.PROACTIVE),),
    )
    parts = results_by_job(result)
    assert {str(key) for key in parts} == {"team-a/a", "team-a/b", "team-a/c"}
    assert [d.shard_index for d in parts[JobKey("team-a", "a")].decisions] == [0, 1]
    for name in ("a", "b", "c", "d"):
        part = parts.get(JobKey("team-a", name), CycleResult("continuum"))
        assert plan_job(job(name), None, part, NOW) == plan_job(job(name), None, result, NOW)
