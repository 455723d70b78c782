"""Every state has a status: a job suspended, evicted whole, or with a shard whose member cannot
be reached; a Tenant; a member registered twice. And the Events that go with them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from continuum.operator.adapters.member_writes import replacement
from continuum.operator.api import (
    ApplyState,
    MemberCluster,
    MLJob,
    MLJobPhase,
    MLJobStatus,
    Placement,
    Tenant,
)
from continuum.operator.controller.convergence import members_of
from continuum.operator.controller.status import announce
from continuum.operator.reconcile.admission import tenant_status
from continuum.operator.reconcile.membership import duplicate_of, is_usable
from continuum.operator.reconcile.placement import merge_scheduling, suspended_status
from continuum.operator.reconcile.shards import ClusterOutcome, job_status, placement_status

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 6, 9, tzinfo=UTC)


def job(phase: str | None = None, suspend: bool = False) -> MLJob:
    status = {"phase": phase} if phase else None
    return MLJob.model_validate({
        "apiVersion": "continuum.dev/v1alpha1", "kind": "MLJob",
        "metadata": {"name": "j", "namespace": "ns", "uid": "u1", "generation": 1},
        "spec": {"mode": "Training", "tenant": "t", "suspend": suspend,
                 "shards": {"count": 2, "resources": {"cpu": "1", "memory": "1Gi"}},
                 "ray": {"image": "rayproject/ray:2.50.0", "entrypoint": "python t.py"}},
        "status": status,
    })  # fmt: skip


def placement(
    decisions: Mapping[int, str], migrations: tuple[tuple[str, str], ...] = ()
) -> Placement:
    return Placement.model_validate({
        "apiVersion": "continuum.dev/v1alpha1", "kind": "Placement",
        "metadata": {"name": "j", "namespace": "ns", "generation": 3},
        "spec": {"jobRef": {"name": "j", "uid": "u1"}, "epoch": 3,
                 "decisions": [{"shard": s, "cluster": c, "score": 1.0}
                               for s, c in decisions.items()],
                 "migrations": [{"shard": 0, "from": a, "to": b, "reason": "Proactive",
                                 "time": "2026-12-06T08:00:00Z"} for a, b in migrations]},
    })  # fmt: skip


def running(name: str, shard: int) -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1", "kind": "RayJob",
        "metadata": {"name": f"j-{shard}", "namespace": "ns",
                     "labels": {"continuum.dev/shard": str(shard)}},
        "status": {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
    }  # fmt: skip


def condition(status: MLJobStatus, kind: str) -> Any:
    return next(c for c in status.conditions if c.type == kind)


def test_a_job_evicted_whole_goes_back_to_pending() -> None:
    status = job_status(job(phase="Running"), placement({}), {}, NOW)
    assert status.phase == MLJobPhase.PENDING
    assert condition(status, "Ready").status == "False"
    finished = job_status(job(phase="Succeeded"), placement({}), {}, NOW)
    assert finished.phase == MLJobPhase.SUCCEEDED


def test_a_shard_whose_member_does_not_answer_makes_the_job_say_so() -> None:
    outcomes = {
        "edge-1": ClusterOutcome("edge-1", ApplyState.APPLIED, "", (running("edge-1", 0),)),
        "edge-2": ClusterOutcome("edge-2", ApplyState.UNREACHABLE, "edge-2 is not answering"),
    }  # fmt: skip
    status = job_status(job(phase="Running"), placement({0: "edge-1", 1: "edge-2"}), outcomes, NOW)
    unavailable = condition(status, "ShardsUnavailable")
    assert (unavailable.status, unavailable.reason) == ("True", "MemberUnreachable")
    assert unavailable.message == "shard 1 on edge-2: edge-2 is not answering"
    assert status.phase == MLJobPhase.RECOVERING
    applied = placement_status(placement({0: "edge-1", 1: "edge-2"}), outcomes.values(), NOW)
    assert [(c.type, c.status, c.reason) for c in applied.conditions] == [
        ("Applied", "False", "MembersUnreachable")
    ]


def test_a_member_that_refuses_the_shard_resource_is_named_too() -> None:
    outcomes = {"edge-1": ClusterOutcome("edge-1", ApplyState.FAILED, "HTTP 422: Invalid")}
    status = job_status(job(), placement({0: "edge-1"}), outcomes, NOW)
    unavailable = condition(status, "ShardsUnavailable")
    assert (unavailable.status, unavailable.reason) == ("True", "MemberRefused")
    healthy = {"edge-1": ClusterOutcome("edge-1", ApplyState.APPLIED, "", (running("edge-1", 0),))}
    status = job_status(job(), placement({0: "edge-1"}), healthy, NOW)
    assert condition(status, "ShardsUnavailable").status == "False"


def test_a_job_created_suspended_is_admitted_and_suspended() -> None:
    status = merge_scheduling(MLJobStatus(), suspended_status(job(suspend=True), NOW))
    assert status.phase == MLJobPhase.SUSPENDED
    scheduled = condition(status, "Scheduled")
    assert (scheduled.status, scheduled.reason) == ("False", "Suspended")
    # From Running on, the placement controller says Suspended once the shards are gone.
    assert suspended_status(job(phase="Running", suspend=True), NOW).phase == MLJobPhase.RUNNING


def test_a_tenant_is_active_or_says_what_is_wrong() -> None:
    tenant = Tenant.model_validate({
        "apiVersion": "continuum.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "t"}, "spec": {"namespaces": ["a"]},
    })  # fmt: skip
    active = tenant_status(None, 2, tenant, [], NOW)
    assert [(c.type, c.status, c.message) for c in active.conditions] == [
        ("Active", "True", "admits MLJobs from namespaces a")
    ]
    assert active.observed_generation == 2


def member(
    name: str, created: str, cluster_id: str | None, reachable: bool = True
) -> MemberCluster:
    return MemberCluster.model_validate({
        "apiVersion": "continuum.dev/v1alpha1", "kind": "MemberCluster",
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {"tier": "Edge", "site": "s", "region": "r",
                 "kubeconfigSecretRef": {"name": name}},
        "status": {"clusterID": cluster_id, "conditions": [
            {"type": "Reachable", "status": "True" if reachable else "False", "reason": "x",
             "message": "", "lastTransitionTime": "2026-12-06T08:00:00Z"}]},
    })  # fmt: skip


def test_the_younger_of_two_registrations_of_one_cluster_is_the_duplicate() -> None:
    older = member("a", "2026-12-01T00:00:00Z", "kube-system-uid")
    younger = member("b", "2026-12-02T00:00:00Z", None)
    elsewhere = member("c", "2026-11-01T00:00:00Z", "another")
    members = [older, younger, elsewhere]
    assert duplicate_of(younger, "kube-system-uid", members) == "a"
    assert duplicate_of(older, "kube-system-uid", members) is None
    assert duplicate_of(younger, None, members) is None
    assert is_usable(older)
    assert not is_usable(member("d", "2026-12-01T00:00:00Z", "x", reachable=False))


def test_the_members_a_placement_ever_used() -> None:
    assert members_of(placement({0: "edge-1"}, (("edge-2", "edge-1"),))) == {"edge-1", "edge-2"}
    assert members_of(None) == set()


def test_an_update_keeps_other_writers_metadata() -> None:
    ours = {"apiVersion": "ray.io/v1", "kind": "RayJob",
            "metadata": {"name": "j-0", "labels": {"continuum.dev/epoch": "4"},
                         "annotations": {"continuum.dev/spec-hash": "new"}},
            "spec": {"entrypoint": "python t.py"}}  # fmt: skip
    current = {"metadata": {"name": "j-0", "resourceVersion": "7", "finalizers": ["ray.io/f"],
                            "labels": {"continuum.dev/epoch": "3", "team": "a"},
                            "annotations": {"continuum.dev/spec-hash": "old",
                                            "continuum.dev/last-checkpoint": "t"}}}  # fmt: skip
    sent = replacement(ours, current)
    assert sent["metadata"]["resourceVersion"] == "7"
    assert sent["metadata"]["finalizers"] == ["ray.io/f"]
    assert sent["metadata"]["labels"] == {"continuum.dev/epoch": "4", "team": "a"}
    assert sent["metadata"]["annotations"] == {
        "continuum.dev/spec-hash": "new", "continuum.dev/last-checkpoint": "t"
    }  # fmt: skip
    assert sent["spec"] == ours["spec"]


class Events:
    def __init__(self) -> None:
        self.recorded: list[tuple[str, str]] = []

    def record_event(
        self, involved: Mapping[str, Any], kind: str, reason: str, message: str
    ) -> None:
        self.recorded.append((kind, reason))


def conditions(**states: tuple[str, str]) -> dict[str, Any]:
    return {"conditions": [{"type": kind, "status": status, "reason": reason, "message": reason}
                           for kind, (status, reason) in states.items()]}  # fmt: skip


def test_events_come_once_per_change_of_what_people_act_on() -> None:
    events = Events()
    raw = {"metadata": {"name": "j"}, "status": conditions(ShardsUnavailable=("False", "Ok"))}
    down = conditions(ShardsUnavailable=("True", "MemberUnreachable"),
                      Scheduled=("False", "PlacementRefused"))  # fmt: skip
    announce(events, raw, down)
    announce(events, {**raw, "status": down}, down)  # nothing changed: nothing said
    announce(events, {**raw, "status": down}, conditions(ShardsUnavailable=("False", "Ok")))
    assert events.recorded == [
        ("Warning", "PlacementRefused"),
        ("Warning", "ShardsUnavailable"),
        ("Normal", "ShardsAvailable"),
    ]
    events.recorded.clear()
    announce(events, {"metadata": {}}, conditions(Scheduled=("False", "Suspended")))
    assert events.recorded == []
