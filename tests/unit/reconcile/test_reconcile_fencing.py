"""Fencing on a Pull member: when the agent fences, which shards, when a fenced one may run
again, and that nothing in a plan lets one run before that."""

from __future__ import annotations

from typing import Any

import pytest

from continuum.operator.api import DisconnectAction, MLJob, validate_resource
from continuum.operator.api.membercluster import AgentTiming
from continuum.operator.api.plans import ClusterPlan
from continuum.operator.api.work import MemberWork
from continuum.operator.reconcile.fencing import (
    awaiting_session,
    fence_due,
    fenced,
    fenced_session,
    hold_fenced,
    resumable,
    resumed,
    to_fence,
)
from continuum.operator.reconcile.kuberay import build_shard_resource
from continuum.operator.reconcile.work import work_spec

pytestmark = pytest.mark.unit
TIMING = AgentTiming(lease_duration_seconds=15, renew_interval_seconds=5, fence_after_seconds=20)


def training() -> MLJob:
    job = validate_resource({
        "apiVersion": "continuum.dev/v1alpha1", "kind": "MLJob",
        "metadata": {"name": "train", "namespace": "team-a", "uid": "uid-1"},
        "spec": {"mode": "Training", "tenant": "team-a",
                 "shards": {"count": 2, "resources": {"cpu": "1", "memory": "1Gi"}},
                 "ray": {"image": "rayproject/ray:2.50.0", "entrypoint": "python train.py"}},
    })  # fmt: skip
    assert isinstance(job, MLJob)
    return job


def held(shard: int, deployment: str = "Running") -> dict[str, Any]:
    resource = build_shard_resource(training(), shard, 1)
    resource["metadata"]["resourceVersion"] = "7"
    resource["status"] = {"jobDeploymentStatus": deployment, "jobStatus": "RUNNING"}
    return resource


def work(session: int, shards: tuple[int, ...] = (0, 1), deleted: bool = False) -> MemberWork:
    job = training()
    desired = [build_shard_resource(job, shard, 1) for shard in shards]
    spec = work_spec(job, "munich", desired, desired, 3, session)
    spec = spec.model_copy(update={"job_deleted": deleted})
    metadata = {"name": "team-a.train", "namespace": "continuum-member-munich", "generation": 2}
    return MemberWork.model_validate({"metadata": metadata, "spec": spec.to_dict()})


def test_the_agent_fences_after_its_silence_or_at_once_if_it_never_renewed() -> None:
    assert not fence_due(19.9, 100.0, TIMING)
    assert fence_due(20.0, 100.0, TIMING)
    # Started, never renewed: it cannot tell how long the hub has not heard from it.
    assert not fence_due(None, 4.0, TIMING)
    assert fence_due(None, 5.0, TIMING)


def test_running_ray_jobs_are_fenced_unless_their_work_says_keep_running() -> None:
    running, ended, keep = held(0), held(1, "Complete"), held(0)
    keep["metadata"]["name"] = "train-keep"
    service = {**held(1), "kind": "RayService"}
    already = fenced(held(1), 2)
    actions = {("RayJob", "train-keep"): DisconnectAction.KEEP_RUNNING}
    assert to_fence([running, ended, keep, service, already], actions) == [running]
    # a RayJob no work of the agent lists is fenced too
    assert to_fence([running], {}) == [running]


def test_a_fenced_shard_is_suspended_marked_and_runs_again_only_in_a_later_session() -> None:
    stopped = fenced(held(0), 4)
    assert stopped["spec"]["suspend"] is True
    assert fenced_session(stopped) == 4
    assert stopped["metadata"]["resourceVersion"] == "7"  # written at the version read
    assert fenced_session(held(0)) is None
    assert not resumable(stopped, work(4))  # the session it was fenced in
    assert resumable(stopped, work(5))
    assert not resumable(stopped, work(5, shards=(1,)))  # moved away meanwhile: it goes
    assert not resumable(stopped, work(5, deleted=True))
    assert not resumable(held(0), work(5))  # not fenced
    running = resumed(stopped)
    assert running["spec"]["suspend"] is False
    assert fenced_session(running) is None
    assert awaiting_session([stopped, fenced(held(1), 2), held(0)]) == 2
    assert awaiting_session([held(0)]) is None


def test_no_plan_lets_a_fenced_shard_run() -> None:
    desired = [build_shard_resource(training(), shard, 1) for shard in (0, 1)]
    stopped = fenced(held(0), 4)
    plan = ClusterPlan(create=(desired[1],), update=((desired[0], stopped),))
    # An update would drop the suspension and keep the mark: never, even when resumable.
    assert hold_fenced(plan, work(5), fence_due_now=False) == ClusterPlan(create=(desired[1],))
    # While fenced, not even a create of a shard to fence.
    assert hold_fenced(plan, work(5), fence_due_now=True) == ClusterPlan()
    unfenced = ClusterPlan(update=((desired[0], held(0)),))
    assert hold_fenced(unfenced, work(5), fence_due_now=False) == unfenced
