"""The placement controller's pure part: the shard resources each member should hold, the plan
to get them there, and what the members' states mean for the Placement and the MLJob."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from continuum.operator.api import (
    ApplyState,
    MLJob,
    MLJobPhase,
    MLJobStatus,
    Placement,
    PlacementStatus,
    ShardState,
    ShardStatus,
)
from continuum.operator.api.plans import ClusterPlan
from continuum.operator.api.shard_resources import SHARD_LABELS
from continuum.operator.reconcile.kuberay import build_shard_resource
from continuum.operator.reconcile.shards import (
    ClusterOutcome,
    desired_resources,
    job_phase,
    job_status,
    placement_status,
    plan_cluster,
    shard_statuses,
    to_create,
    unavailable_shards,
)
from tests.wrappers import MLJobWrapper, PlacementWrapper

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 6, 9, tzinfo=UTC)
EARLIER = datetime(2026, 12, 1, 9, tzinfo=UTC)
CHECKPOINT = "2026-12-06T08:30:00+00:00"

RAY_JOB_RUNNING = {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}
RAY_JOB_SUCCEEDED = {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}
RAY_JOB_FAILED = {"jobDeploymentStatus": "Failed", "reason": "DeadlineExceeded"}


def job(shards: int = 2) -> MLJobWrapper:
    return MLJobWrapper("j").shards(shards)


def placement_of(wrapper: MLJobWrapper, clusters: dict[int, str], epoch: int = 3) -> Placement:
    return PlacementWrapper.of(wrapper.obj()).epoch(epoch).decisions(clusters).obj()


def resource(
    of: MLJob, shard: int, status: dict[str, Any] | None = None, checkpoint: str | None = None
) -> dict[str, Any]:
    """The shard's resource as a member holds it, with KubeRay's status."""
    manifest = build_shard_resource(of, shard, epoch=1)
    if status is not None:
        manifest["status"] = status
    if checkpoint is not None:
        manifest["metadata"]["annotations"][SHARD_LABELS.last_checkpoint_annotation] = checkpoint
    return manifest


def applied(cluster: str, *resources: dict[str, Any], message: str = "") -> ClusterOutcome:
    return ClusterOutcome(cluster, ApplyState.APPLIED, message, tuple(resources))


def condition(status: MLJobStatus | PlacementStatus, kind: str) -> tuple[str, str, str]:
    found = next(c for c in status.conditions if c.type == kind)
    return found.status, found.reason, found.message


# desired_resources


def test_each_member_gets_the_resources_of_the_shards_placed_on_it() -> None:
    wrapper = job(3)
    the_job = wrapper.obj()
    placement = (
        PlacementWrapper.of(the_job)
        .epoch(5)
        .decision(0, "m1", epoch=2)
        .decision(1, "m2")
        .decision(2, "m1", epoch=4)
        .obj()
    )
    desired = desired_resources(the_job, placement)
    assert desired == {
        "m1": [build_shard_resource(the_job, 0, 2), build_shard_resource(the_job, 2, 4)],
        # A decision without its own epoch takes the Placement's.
        "m2": [build_shard_resource(the_job, 1, 5)],
    }


def test_no_placement_no_resources() -> None:
    assert desired_resources(job().obj(), None) == {}


@pytest.mark.parametrize(
    "wrapper", [job().suspend(), job().deleting()], ids=["suspended", "deleting"]
)
def test_a_stopping_job_wants_no_resources(wrapper: MLJobWrapper) -> None:
    assert desired_resources(wrapper.obj(), placement_of(wrapper, {0: "m1", 1: "m2"})) == {}


def test_a_finished_job_keeps_the_resources_it_finished_in() -> None:
    wrapper = job().phase("Succeeded")
    desired = desired_resources(wrapper.obj(), placement_of(wrapper, {0: "m1", 1: "m1"}))
    assert [len(manifests) for manifests in desired.values()] == [2]


def test_shards_beyond_a_scaled_down_count_are_not_wanted() -> None:
    wrapper = job(1)
    desired = desired_resources(wrapper.obj(), placement_of(wrapper, {0: "m1", 1: "m2", 2: "m2"}))
    assert list(desired) == ["m1"]
    assert [m["metadata"]["labels"][SHARD_LABELS.shard] for m in desired["m1"]] == ["0"]


# plan_cluster


def manifests(shards: int = 3) -> list[dict[str, Any]]:
    the_job = job(shards).obj()
    return [build_shard_resource(the_job, shard, 1) for shard in range(shards)]


def test_nothing_wanted_and_nothing_held_is_an_empty_plan() -> None:
    plan = plan_cluster([], [])
    assert plan == ClusterPlan()
    assert plan.is_empty


def test_what_is_wanted_and_missing_is_created() -> None:
    wanted = manifests(2)
    plan = plan_cluster(wanted, [])
    assert plan.create == tuple(wanted)
    assert (plan.update, plan.delete) == ((), ())
    assert not plan.is_empty


def test_what_is_held_as_wanted_is_left_alone_even_with_what_the_server_added() -> None:
    wanted = manifests(2)
    held = copy.deepcopy(wanted)
    for item in held:
        item["metadata"].update(resourceVersion="7", uid="x", generation=2)
        item["metadata"]["labels"]["other-controller"] = "yes"
        item["spec"]["submissionMode"] = "K8sJobMode"  # a default the API server fills in
        item["status"] = RAY_JOB_RUNNING
    assert plan_cluster(wanted, held).is_empty


def test_what_is_held_but_differs_is_updated_with_the_object_it_replaces() -> None:
    wanted = manifests(2)
    held = copy.deepcopy(wanted)
    held[1]["spec"]["entrypoint"] = "python old.py"
    plan = plan_cluster(wanted, held)
    assert plan.update == ((wanted[1], held[1]),)
    assert (plan.create, plan.delete) == ((), ())


def test_what_is_held_and_not_wanted_is_deleted_in_name_order() -> None:
    held = manifests(3)
    plan = plan_cluster(held[1:2], list(reversed(held)))
    assert plan.delete == (held[0], held[2])
    assert (plan.create, plan.update) == ((), ())


def test_a_finished_jobs_resources_are_neither_made_again_nor_changed() -> None:
    wanted = manifests(3)
    held = copy.deepcopy(wanted[:2])
    held[1]["spec"]["entrypoint"] = "python old.py"
    stray = copy.deepcopy(wanted[2])
    stray["metadata"]["name"] = "left-over-0"
    plan = plan_cluster(wanted, [*held, stray], finished=True)
    assert (plan.create, plan.update) == ((), ())
    assert plan.delete == (stray,)
    assert plan_cluster(wanted, [*held, stray]).create == (wanted[2],)


def test_a_resource_of_another_kind_with_the_same_name_is_another_resource() -> None:
    (wanted,) = manifests(1)
    other = {**copy.deepcopy(wanted), "kind": "RayService"}
    plan = plan_cluster([wanted], [other])
    assert plan.create == (wanted,)
    assert plan.delete == (other,)


# shard_statuses


def test_each_placed_shard_has_its_member_and_the_state_kuberay_reports() -> None:
    wrapper = job(3)
    the_job = wrapper.obj()
    placement = placement_of(wrapper, {2: "m2", 0: "m1", 1: "m1"})
    outcomes = {
        "m1": applied("m1", resource(the_job, 0, RAY_JOB_RUNNING), resource(the_job, 1)),
        "m2": applied("m2", resource(the_job, 2, RAY_JOB_SUCCEEDED)),
    }
    statuses = shard_statuses(the_job, placement, outcomes)
    assert [(s.index, s.cluster, s.state) for s in statuses] == [
        (0, "m1", ShardState.RUNNING),
        (1, "m1", ShardState.PENDING),  # created, no status from KubeRay yet
        (2, "m2", ShardState.SUCCEEDED),
    ]
    assert statuses[0].message == "the Ray job is running"


def test_a_shard_on_a_member_the_operator_does_not_know_is_unknown() -> None:
    wrapper = job(1)
    (status,) = shard_statuses(wrapper.obj(), placement_of(wrapper, {0: "gone"}), {})
    assert (status.state, status.message) == (ShardState.UNKNOWN, "member gone is not known")


def test_a_shard_on_an_unreachable_member_is_unknown_and_keeps_what_was_known() -> None:
    wrapper = job(1).shard_status(0, "m1", "Running", restarts=2, last_checkpoint=CHECKPOINT)
    outcomes = {"m1": ClusterOutcome("m1", ApplyState.UNREACHABLE, "m1 timed out")}
    (status,) = shard_statuses(wrapper.obj(), placement_of(wrapper, {0: "m1"}), outcomes)
    assert (status.state, status.message) == (ShardState.UNKNOWN, "m1 timed out")
    assert status.restarts == 2
    assert status.last_checkpoint == datetime.fromisoformat(CHECKPOINT)


def test_a_shard_not_created_yet_is_pending_and_says_why() -> None:
    wrapper = job(2).shard_status(0, "m0", "Running", last_checkpoint=CHECKPOINT)
    outcomes = {
        "m1": applied("m1"),
        "m2": ClusterOutcome("m2", ApplyState.FAILED, "HTTP 422: spec.entrypoint: Invalid"),
    }
    statuses = shard_statuses(wrapper.obj(), placement_of(wrapper, {0: "m1", 1: "m2"}), outcomes)
    assert [(s.state, s.message) for s in statuses] == [
        (ShardState.PENDING, "not created yet"),
        (ShardState.PENDING, "HTTP 422: spec.entrypoint: Invalid"),
    ]
    # The shard moved from m0: its new copy resumes from the checkpoint it last reported,
    # which status keeps until the new copy reports a newer one.
    assert statuses[0].last_checkpoint == datetime.fromisoformat(CHECKPOINT)


def test_an_older_checkpoint_on_a_resource_does_not_take_the_newer_known_one_back() -> None:
    wrapper = job(1).shard_status(0, "m1", last_checkpoint="2026-12-06T09:00:00Z")
    the_job = wrapper.obj()
    outcomes = {"m1": applied("m1", resource(the_job, 0, RAY_JOB_RUNNING, checkpoint=CHECKPOINT))}
    (status,) = shard_statuses(the_job, placement_of(wrapper, {0: "m1"}), outcomes)
    assert status.last_checkpoint == datetime(2026, 12, 6, 9, tzinfo=UTC)


def test_the_checkpoint_is_the_resources_newest_or_else_the_one_known() -> None:
    wrapper = job(2).shard_status(0, "m1", last_checkpoint="2026-12-05T00:00:00Z")
    wrapper.shard_status(1, "m1", last_checkpoint="2026-12-05T00:00:00Z")
    the_job = wrapper.obj()
    outcomes = {
        "m1": applied(
            "m1",
            resource(the_job, 0, RAY_JOB_RUNNING, checkpoint=CHECKPOINT),
            resource(the_job, 1, RAY_JOB_RUNNING),
        )
    }
    statuses = shard_statuses(the_job, placement_of(wrapper, {0: "m1", 1: "m1"}), outcomes)
    assert [s.last_checkpoint for s in statuses] == [
        datetime.fromisoformat(CHECKPOINT),
        datetime(2026, 12, 5, tzinfo=UTC),
    ]


def test_shard_statuses_skip_shards_beyond_the_count() -> None:
    wrapper = job(1)
    outcomes = {"m1": applied("m1")}
    statuses = shard_statuses(wrapper.obj(), placement_of(wrapper, {0: "m1", 1: "m1"}), outcomes)
    assert [s.index for s in statuses] == [0]


def test_a_long_message_is_cut_to_what_the_api_keeps() -> None:
    wrapper = job(1)
    outcomes = {"m1": ClusterOutcome("m1", ApplyState.UNREACHABLE, "x" * 5000)}
    (status,) = shard_statuses(wrapper.obj(), placement_of(wrapper, {0: "m1"}), outcomes)
    assert status.message == "x" * 1024


def test_a_shard_reports_the_restarts_kuberay_counted() -> None:
    wrapper = job(1)
    the_job = wrapper.obj()
    retrying = {"jobDeploymentStatus": "Retrying", "jobStatus": "", "failed": 2}
    outcomes = {"m1": applied("m1", resource(the_job, 0, retrying))}
    (status,) = shard_statuses(the_job, placement_of(wrapper, {0: "m1"}), outcomes)
    assert status.state == ShardState.STARTING
    assert status.restarts == 2


def test_the_restarts_already_counted_do_not_go_back_when_the_shard_moves() -> None:
    wrapper = job(1).shard_status(0, "m1", restarts=3)
    the_job = wrapper.obj()
    fresh = {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}
    outcomes = {"m2": applied("m2", resource(the_job, 0, fresh))}
    (status,) = shard_statuses(the_job, placement_of(wrapper, {0: "m2"}), outcomes)
    assert status.restarts == 3


# job_phase


def shards(*states: ShardState) -> list[ShardStatus]:
    return [ShardStatus(index=i, cluster="m1", state=state) for i, state in enumerate(states)]


R, S, F, P, U, ST = (
    ShardState.RUNNING,
    ShardState.SUCCEEDED,
    ShardState.FAILED,
    ShardState.PENDING,
    ShardState.UNKNOWN,
    ShardState.STARTING,
)


@pytest.mark.parametrize(
    ("previous", "states", "placed", "expected"),
    [
        # No shard status: placed once and every shard since evicted, or never placed.
        (None, (), False, MLJobPhase.PENDING),
        ("Placed", (), False, MLJobPhase.PLACED),
        ("Running", (), True, MLJobPhase.PENDING),
        ("Succeeded", (), True, MLJobPhase.SUCCEEDED),
        ("Failed", (), False, MLJobPhase.FAILED),
        # Every shard succeeded.
        ("Running", (S, S, S), True, MLJobPhase.SUCCEEDED),
        # One failed shard fails the job.
        ("Running", (R, F, R), True, MLJobPhase.FAILED),
        ("Running", (S, F, S), True, MLJobPhase.FAILED),
        # The gang (minAvailable 2) running, or done, is Running.
        (None, (R, R, P), True, MLJobPhase.RUNNING),
        (None, (R, S, U), True, MLJobPhase.RUNNING),
        # Fewer than the gang: Placed, or Recovering once it ran.
        (None, (R, ST, P), True, MLJobPhase.PLACED),
        ("Placed", (P, P, P), True, MLJobPhase.PLACED),
        ("Running", (R, U, U), True, MLJobPhase.RECOVERING),
        ("Recovering", (R, P, P), True, MLJobPhase.RECOVERING),
    ],
)
def test_the_job_phase_from_its_shards(
    previous: str | None, states: tuple[ShardState, ...], placed: bool, expected: MLJobPhase
) -> None:
    the_job = MLJobWrapper().shards(3, min_available=2).phase(previous).obj()
    assert job_phase(the_job, shards(*states), placed) == expected


def test_not_every_shard_succeeded_while_some_are_missing() -> None:
    the_job = MLJobWrapper().shards(3).phase("Running").obj()
    assert job_phase(the_job, shards(S, S), placed=True) == MLJobPhase.RECOVERING


def test_a_suspended_job_is_suspended_whatever_its_shards_say() -> None:
    the_job = MLJobWrapper().suspend().phase("Running").obj()
    assert job_phase(the_job, shards(R, R), placed=True) == MLJobPhase.SUSPENDED


@pytest.mark.parametrize("finished", ["Succeeded", "Failed"])
def test_a_finished_job_stays_finished_when_a_member_stops_answering(finished: str) -> None:
    the_job = MLJobWrapper().shards(2).phase(finished).obj()
    phase = job_phase(the_job, shards(S, U), placed=True)
    assert phase == MLJobPhase(finished)


# job_status


def two_members(wrapper: MLJobWrapper, first: dict[str, Any], second: dict[str, Any]) -> Any:
    the_job = wrapper.obj()
    return {
        "m1": applied("m1", resource(the_job, 0, first)),
        "m2": applied("m2", resource(the_job, 1, second)),
    }


def test_a_job_with_its_gang_running_is_ready() -> None:
    wrapper = job(2).phase("Placed").generation(4)
    outcomes = two_members(wrapper, RAY_JOB_RUNNING, RAY_JOB_RUNNING)
    status = job_status(wrapper.obj(), placement_of(wrapper, {0: "m1", 1: "m2"}), outcomes, NOW)
    assert status.phase == MLJobPhase.RUNNING
    assert condition(status, "Ready") == (
        "True",
        "ShardsRunning",
        "2 of 2 shards running; at least 2 needed",
    )
    assert condition(status, "ShardsUnavailable") == (
        "False",
        "ShardsReachable",
        "every shard's member cluster answers",
    )
    assert (status.ready_shards, status.total_shards, status.ready) == (2, 2, "2/2")
    assert status.clusters == "m1,m2"
    assert status.observed_generation == 4
    assert {c.observed_generation for c in status.conditions} == {4}


def test_a_job_short_of_its_gang_is_not_ready() -> None:
    wrapper = job(2).shards(2, min_available=2).phase("Placed")
    outcomes = two_members(wrapper, RAY_JOB_RUNNING, {})
    status = job_status(wrapper.obj(), placement_of(wrapper, {0: "m1", 1: "m2"}), outcomes, NOW)
    assert status.phase == MLJobPhase.PLACED
    assert condition(status, "Ready") == (
        "False",
        "ShardsNotRunning",
        "1 of 2 shards running; at least 2 needed",
    )
    assert status.ready == "1/2"


def test_a_job_whose_shards_succeeded_is_not_ready_but_succeeded() -> None:
    wrapper = job(2).phase("Running")
    outcomes = two_members(wrapper, RAY_JOB_SUCCEEDED, RAY_JOB_SUCCEEDED)
    status = job_status(wrapper.obj(), placement_of(wrapper, {0: "m1", 1: "m2"}), outcomes, NOW)
    assert status.phase == MLJobPhase.SUCCEEDED
    assert condition(status, "Ready")[:2] == ("False", "ShardsNotRunning")
    assert status.ready == "0/2"


def test_a_suspended_job_lists_no_shards_and_says_suspended() -> None:
    wrapper = job(2).phase("Running").suspend()
    outcomes = two_members(wrapper, RAY_JOB_RUNNING, RAY_JOB_RUNNING)
    status = job_status(wrapper.obj(), placement_of(wrapper, {0: "m1", 1: "m2"}), outcomes, NOW)
    assert status.phase == MLJobPhase.SUSPENDED
    assert status.shards == []
    assert condition(status, "Ready")[:2] == ("False", "Suspended")
    # Its shards are wanted by no one, so none is unavailable.
    assert condition(status, "ShardsUnavailable")[0] == "False"
    assert (status.ready, status.clusters) == ("0/2", "")


def test_a_job_without_placement_has_no_shards_unavailable_condition() -> None:
    status = job_status(job(2).obj(), None, {}, NOW)
    assert status.phase == MLJobPhase.PENDING
    assert [c.type for c in status.conditions] == ["Ready"]


def test_the_ready_condition_keeps_its_transition_time_while_it_holds() -> None:
    wrapper = job(2).phase("Running")
    outcomes = two_members(wrapper, RAY_JOB_RUNNING, RAY_JOB_RUNNING)
    placement = placement_of(wrapper, {0: "m1", 1: "m2"})
    first = job_status(wrapper.obj(), placement, outcomes, EARLIER)
    again = job_status(wrapper.status(first.to_dict()).obj(), placement, outcomes, NOW)
    ready = next(c for c in again.conditions if c.type == "Ready")
    assert ready.last_transition_time == EARLIER


def test_other_status_fields_are_kept() -> None:
    wrapper = job(1).status({"phase": "Placed", "placementRef": {"name": "j", "epoch": 3}})
    wrapper.condition("Scheduled", True, "Placed")
    status = job_status(wrapper.obj(), placement_of(wrapper, {0: "m1"}), {}, NOW)
    assert status.placement_ref is not None
    assert status.placement_ref.epoch == 3
    assert [c.type for c in status.conditions] == ["Scheduled", "Ready", "ShardsUnavailable"]


def test_shards_unavailable_names_each_shard_its_member_and_why() -> None:
    wrapper = job(3).phase("Running")
    the_job = wrapper.obj()
    outcomes = {
        "m1": applied("m1", resource(the_job, 0, RAY_JOB_RUNNING)),
        "m2": ClusterOutcome("m2", ApplyState.UNREACHABLE, ""),
        "m3": ClusterOutcome("m3", ApplyState.FAILED, "HTTP 422"),
    }
    placement = placement_of(wrapper, {0: "m1", 1: "m2", 2: "m3"})
    status = job_status(the_job, placement, outcomes, NOW)
    assert condition(status, "ShardsUnavailable") == (
        "True",
        "MemberUnreachable",  # one of them unreachable: not all refused
        "shard 1 on m2: not reachable; shard 2 on m3: HTTP 422",
    )


def test_shards_unavailable_says_refused_when_every_member_refused() -> None:
    wrapper = job(2)
    outcomes = {
        "m1": ClusterOutcome("m1", ApplyState.FAILED, "HTTP 403"),
        "m2": ClusterOutcome("m2", ApplyState.FAILED, "HTTP 422"),
    }
    placement = placement_of(wrapper, {0: "m1", 1: "m2"})
    status = job_status(wrapper.obj(), placement, outcomes, NOW)
    assert condition(status, "ShardsUnavailable")[:2] == ("True", "MemberRefused")


def test_shards_unavailable_counts_a_member_the_operator_does_not_know_as_unreachable() -> None:
    wrapper = job(1)
    status = job_status(wrapper.obj(), placement_of(wrapper, {0: "gone"}), {}, NOW)
    assert condition(status, "ShardsUnavailable") == (
        "True",
        "MemberUnreachable",
        "shard 0 on gone: not reachable",
    )


def test_a_long_shards_unavailable_message_is_cut() -> None:
    wrapper = job(40)
    placement = placement_of(wrapper, {shard: f"member-{shard}" for shard in range(40)})
    status = job_status(wrapper.obj(), placement, {}, NOW)
    assert len(condition(status, "ShardsUnavailable")[2]) == 1024


# unavailable_shards


def test_unavailable_shards_are_those_whose_member_is_unknown_unreachable_or_refuses() -> None:
    wrapper = job(5)
    outcomes = {
        "ok": applied("ok"),
        "pending": ClusterOutcome("pending", ApplyState.PENDING),
        "down": ClusterOutcome("down", ApplyState.UNREACHABLE, "timeout"),
        "refuses": ClusterOutcome("refuses", ApplyState.FAILED, "HTTP 422"),
    }
    placement = placement_of(
        wrapper, {4: "refuses", 0: "ok", 1: "pending", 2: "down", 3: "unknown", 5: "down"}
    )
    found = unavailable_shards(wrapper.obj(), placement, outcomes)
    assert found == [
        (2, "down", outcomes["down"]),
        (3, "unknown", None),
        (4, "refuses", outcomes["refuses"]),
    ]  # shard 5 is beyond the count


@pytest.mark.parametrize(
    "wrapper", [job(1).suspend(), job(1).deleting()], ids=["suspended", "deleting"]
)
def test_a_stopping_job_has_no_unavailable_shards(wrapper: MLJobWrapper) -> None:
    assert unavailable_shards(wrapper.obj(), placement_of(wrapper, {0: "gone"}), {}) == []


# placement_status


def test_every_member_of_the_placement_applied_is_the_applied_epoch() -> None:
    wrapper = job(3)
    the_job = wrapper.obj()
    placement = (
        PlacementWrapper.of(the_job).epoch(4).generation(6).decisions({2: "m2", 0: "m2", 1: "m1"})
    ).obj()
    outcomes = [applied("m2"), applied("m1")]
    status = placement_status(placement, outcomes, NOW)
    assert [(e.cluster, e.state, e.shards, e.applied_epoch) for e in status.clusters] == [
        ("m1", ApplyState.APPLIED, [1], 4),
        ("m2", ApplyState.APPLIED, [0, 2], 4),
    ]
    assert status.applied_epoch == 4
    assert condition(status, "Applied") == ("True", "Applied", "epoch 4 applied to every member")
    assert status.observed_generation == 6
    assert {e.last_update_time for e in status.clusters} == {NOW}


def test_a_member_with_nothing_of_the_job_and_nothing_to_do_is_left_out() -> None:
    wrapper = job(1)
    placement = placement_of(wrapper, {0: "m1"})
    status = placement_status(placement, [applied("m1"), applied("idle")], NOW)
    assert [entry.cluster for entry in status.clusters] == ["m1"]


def test_a_member_still_holding_resources_of_the_job_is_listed() -> None:
    wrapper = job(1)
    the_job = wrapper.obj()
    placement = placement_of(wrapper, {0: "m1"})
    leftover = applied("old", resource(the_job, 0))  # moved away, not yet deleted there
    status = placement_status(placement, [applied("m1"), leftover], NOW)
    assert [(e.cluster, e.shards) for e in status.clusters] == [("m1", [0]), ("old", [])]


def test_a_pending_member_holds_the_applied_epoch_back() -> None:
    wrapper = job(2)
    the_job = wrapper.obj()
    placement = (
        PlacementWrapper.of(the_job)
        .epoch(5)
        .decisions({0: "m1", 1: "m2"})
        .applied_epoch(4)
        .cluster_status("m2", "Applied", [1], applied_epoch=4)
        .obj()
    )
    outcomes = [applied("m1"), ClusterOutcome("m2", ApplyState.PENDING, "waiting")]
    status = placement_status(placement, outcomes, NOW)
    entries = {e.cluster: e for e in status.clusters}
    assert entries["m1"].applied_epoch == 5
    assert entries["m2"].applied_epoch == 4  # what it applied before
    assert entries["m2"].message == "waiting"
    assert status.applied_epoch == 4
    assert condition(status, "Applied") == ("False", "MembersPending", "not applied yet: m2")


def test_an_unreachable_member_is_named_in_the_applied_condition() -> None:
    wrapper = job(3)
    placement = placement_of(wrapper, {0: "m1", 1: "m2", 2: "m3"})
    outcomes = [
        ClusterOutcome("m3", ApplyState.FAILED, "HTTP 422"),
        ClusterOutcome("m2", ApplyState.UNREACHABLE, "timeout"),
        applied("m1"),
    ]
    status = placement_status(placement, outcomes, NOW)
    assert condition(status, "Applied") == (
        "False",
        "MembersUnreachable",
        "not applied yet: m2, m3",
    )
    assert status.applied_epoch is None
    assert [e.applied_epoch for e in status.clusters] == [3, None, None]


def test_a_members_update_time_moves_only_when_its_entry_changes() -> None:
    wrapper = job(2)
    the_job = wrapper.obj()
    placement = (
        PlacementWrapper.of(the_job)
        .decisions({0: "m1", 1: "m2"})
        .cluster_status("m1", "Applied", [0], last_update_time="2026-12-01T09:00:00Z")
        .cluster_status("m2", "Pending", [1], last_update_time="2026-12-01T09:00:00Z")
        .obj()
    )
    status = placement_status(placement, [applied("m1"), applied("m2")], NOW)
    times = {e.cluster: e.last_update_time for e in status.clusters}
    assert times == {"m1": EARLIER, "m2": NOW}


def test_a_placement_with_no_members_to_apply_to_is_applied() -> None:
    status = placement_status(placement_of(job(1), {}), [], NOW)
    assert status.clusters == []
    assert condition(status, "Applied")[:2] == ("True", "Applied")


# resume information


def test_every_shard_resource_says_where_its_checkpoints_are_and_the_epoch_it_resumes_at() -> None:
    the_job = job(2).checkpoint("s3://bucket/j/", interval_seconds=60).obj()
    annotations = build_shard_resource(the_job, 1, epoch=7)["metadata"]["annotations"]
    assert annotations[SHARD_LABELS.checkpoint_uri_annotation] == "s3://bucket/j/shard-1"
    assert annotations[SHARD_LABELS.resume_epoch_annotation] == "7"
    plain = build_shard_resource(job(1).obj(), 0, epoch=2)["metadata"]["annotations"]
    assert SHARD_LABELS.checkpoint_uri_annotation not in plain  # no checkpoint configured


def test_a_new_copy_is_created_with_the_checkpoint_its_shard_reported() -> None:
    the_job = job(2).shard_status(0, "m0", "Running", last_checkpoint=CHECKPOINT).obj()
    first, second = (build_shard_resource(the_job, shard, epoch=4) for shard in (0, 1))
    created = to_create(the_job, first)
    assert created["metadata"]["annotations"][SHARD_LABELS.resume_checkpoint_annotation] == (
        "2026-12-06T08:30:00Z"
    )
    assert to_create(the_job, second) == second  # shard 1 reported none
    # Neither the mark nor a checkpoint the workload reports later is a difference to write.
    created["metadata"]["annotations"][SHARD_LABELS.last_checkpoint_annotation] = CHECKPOINT
    assert plan_cluster([first], [created]) == ClusterPlan()
