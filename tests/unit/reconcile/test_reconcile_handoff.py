"""Make-before-break moves: the old copy of a shard moved off a working member stays until its
replacement runs, or the handoff times out; and what a pass that removes it completes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from continuum.operator.api import ApplyState, MigrationReason, MLJob, Placement, ShardState
from continuum.operator.api.shard_resources import SHARD_LABELS
from continuum.operator.reconcile.handoff import (
    HandoffStep,
    completed_moves,
    pending_handoffs,
    with_handoffs,
)
from continuum.operator.reconcile.kuberay import build_shard_resource
from continuum.operator.reconcile.shards import ClusterOutcome, shard_statuses
from tests.wrappers import MLJobWrapper, PlacementWrapper

pytestmark = pytest.mark.unit
MOVED_AT = datetime(2026, 12, 6, 9, tzinfo=UTC)
NOW = MOVED_AT + timedelta(seconds=10)
TIMEOUT_S = 120.0
RUNNING = {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}
STARTING = {"jobDeploymentStatus": "Initializing", "jobStatus": ""}


def the_job(shards: int = 2) -> MLJob:
    return MLJobWrapper("j").shards(shards).obj()


def moved(reason: str = "Proactive", source: str = "edge-a", target: str = "cloud") -> Placement:
    """Shard 0 moved from `source` to `target` at MOVED_AT; shard 1 stays on edge-b."""
    return (
        PlacementWrapper.of(the_job())
        .epoch(4)
        .decision(0, target, epoch=4)
        .decision(1, "edge-b", epoch=1)
        .migration(0, source, target, reason, MOVED_AT.strftime("%Y-%m-%dT%H:%M:%SZ"))
        .obj()
    )


def copy_of(shard: int, status: dict[str, Any] | None, epoch: int = 1) -> dict[str, Any]:
    manifest = build_shard_resource(the_job(), shard, epoch)
    if status is not None:
        manifest["status"] = status
    return manifest


def held(
    old: dict[str, Any] | None = None, new: dict[str, Any] | None = None
) -> dict[str, list[dict[str, Any]]]:
    return {
        "edge-a": [old] if old else [],
        "cloud": [new] if new else [],
        "edge-b": [copy_of(1, RUNNING)],
    }


def test_the_old_copy_stays_while_its_replacement_starts() -> None:
    old = copy_of(0, RUNNING)
    (handoff,) = pending_handoffs(
        the_job(), moved(), held(old, copy_of(0, STARTING, 4)), NOW, TIMEOUT_S
    )
    assert (handoff.shard, handoff.source, handoff.target) == (0, "edge-a", "cloud")
    assert handoff.reason is MigrationReason.PROACTIVE
    assert handoff.resource is old
    assert handoff.remaining_s == pytest.approx(110.0)
    # Not yet created at the target is the same: the replacement is not running.
    assert pending_handoffs(the_job(), moved(), held(old), NOW, TIMEOUT_S)


def test_a_rebalance_is_make_before_break_too() -> None:
    old = copy_of(0, RUNNING)
    assert pending_handoffs(the_job(), moved("Rebalance"), held(old), NOW, TIMEOUT_S)


@pytest.mark.parametrize("reason", ["Failure", "Preemption"])
def test_failure_and_preemption_moves_do_not_wait(reason: str) -> None:
    # A failed member does not answer; a preempted shard's room is wanted by another one now.
    assert not pending_handoffs(the_job(), moved(reason), held(copy_of(0, RUNNING)), NOW, 120)


def test_the_old_copy_goes_once_the_replacement_runs() -> None:
    placement, old = moved(), copy_of(0, RUNNING)
    assert not pending_handoffs(the_job(), placement, held(old, copy_of(0, RUNNING, 4)), NOW, 120)
    succeeded = {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}
    assert not pending_handoffs(the_job(), placement, held(old, copy_of(0, succeeded, 4)), NOW, 9)


def test_the_old_copy_goes_after_the_timeout_whatever_the_replacement_does() -> None:
    late = MOVED_AT + timedelta(seconds=TIMEOUT_S)
    assert not pending_handoffs(the_job(), moved(), held(copy_of(0, RUNNING)), late, TIMEOUT_S)


def test_an_old_copy_that_does_not_run_is_not_waited_for() -> None:
    failed = {"jobDeploymentStatus": "Failed", "reason": "DeadlineExceeded"}
    assert not pending_handoffs(the_job(), moved(), held(copy_of(0, failed)), NOW, TIMEOUT_S)
    assert not pending_handoffs(the_job(), moved(), held(copy_of(0, None)), NOW, TIMEOUT_S)


def test_only_the_source_of_the_newest_move_is_kept() -> None:
    # Moved edge-a -> cloud, then cloud -> edge-c: a copy left on edge-a is not the one to wait
    # for; the one on cloud is.
    placement = (
        PlacementWrapper.of(the_job())
        .epoch(5)
        .decision(0, "edge-c", epoch=5)
        .migration(0, "edge-a", "cloud", time="2026-12-06T08:59:00Z")
        .migration(0, "cloud", "edge-c", time="2026-12-06T09:00:00Z")
        .obj()
    )
    holdings = {"edge-a": [copy_of(0, RUNNING)], "cloud": [copy_of(0, RUNNING, 4)], "edge-c": []}
    (handoff,) = pending_handoffs(the_job(), placement, holdings, NOW, TIMEOUT_S)
    assert handoff.source == "cloud"


def test_a_move_the_decision_no_longer_follows_keeps_nothing() -> None:
    # The shard moved edge-a -> cloud, then went back to edge-a by a decision that records no
    # move (it was preempted and placed anew): edge-a's copy is the decided one.
    placement = (
        PlacementWrapper.of(the_job()).epoch(6).decision(0, "edge-a", epoch=6)
        .migration(0, "edge-a", "cloud").obj()
    )  # fmt: skip
    assert not pending_handoffs(the_job(), placement, held(copy_of(0, RUNNING)), NOW, TIMEOUT_S)


def test_a_stopping_or_finished_job_keeps_no_old_copy() -> None:
    stopping = MLJobWrapper("j").shards(2).suspend().obj()
    assert not pending_handoffs(stopping, moved(), held(copy_of(0, RUNNING)), NOW, TIMEOUT_S)
    finished = MLJobWrapper("j").shards(2).phase("Succeeded").obj()
    assert not pending_handoffs(finished, moved(), held(copy_of(0, RUNNING)), NOW, TIMEOUT_S)


def annotations_of(manifest: dict[str, Any]) -> dict[str, str]:
    return dict(manifest["metadata"].get("annotations") or {})


def waiting(manifest: dict[str, Any], source: str = "edge-a") -> dict[str, Any]:
    manifest["metadata"]["annotations"][SHARD_LABELS.handover_from_annotation] = source
    return manifest


def test_the_kept_copy_joins_what_its_member_should_hold_as_it_is() -> None:
    old = copy_of(0, RUNNING)
    holdings = held(old)
    handoffs = pending_handoffs(the_job(), moved(), holdings, NOW, TIMEOUT_S)
    desired = {"cloud": [copy_of(0, None, 4)], "edge-b": [copy_of(1, None)]}
    merged = with_handoffs(desired, handoffs, holdings, NOW)
    assert merged["edge-a"] == [old]
    assert merged["edge-b"] == desired["edge-b"]
    assert "edge-a" not in desired  # not changed in place


def test_a_replacement_made_for_a_handoff_waits_for_it() -> None:
    holdings = held(copy_of(0, RUNNING))
    handoffs = pending_handoffs(the_job(), moved(), holdings, NOW, TIMEOUT_S)
    merged = with_handoffs({"cloud": [copy_of(0, None, 4)]}, handoffs, holdings, NOW)
    marks = annotations_of(merged["cloud"][0])
    assert marks[SHARD_LABELS.handover_from_annotation] == "edge-a"
    assert SHARD_LABELS.handover_done_annotation not in marks


def test_a_waiting_replacement_is_let_start_once_the_old_copy_handed_over() -> None:
    old = copy_of(0, RUNNING)
    asked = NOW - timedelta(seconds=3)
    old["metadata"]["annotations"] |= {
        SHARD_LABELS.checkpoint_request_annotation: asked.isoformat(),
        SHARD_LABELS.last_checkpoint_annotation: (asked + timedelta(seconds=1)).isoformat(),
    }
    holdings = held(old, waiting(copy_of(0, RUNNING, 4)))
    job = checkpointing_job()
    handoffs = pending_handoffs(job, moved(), holdings, NOW, TIMEOUT_S)
    assert not handoffs
    merged = with_handoffs({"cloud": [copy_of(0, None, 4)]}, handoffs, holdings, NOW)
    marks = annotations_of(merged["cloud"][0])
    assert marks[SHARD_LABELS.handover_done_annotation] == NOW.isoformat()


def test_a_waiting_replacement_waits_on_while_the_old_copy_drains() -> None:
    holdings = held(copy_of(0, RUNNING), waiting(copy_of(0, RUNNING, 4)))
    job = checkpointing_job()
    handoffs = pending_handoffs(job, moved(), holdings, NOW, TIMEOUT_S)
    assert [handoff.step for handoff in handoffs] == [HandoffStep.DRAINING]
    merged = with_handoffs({"cloud": [copy_of(0, None, 4)]}, handoffs, holdings, NOW)
    marks = annotations_of(merged["cloud"][0])
    assert marks[SHARD_LABELS.handover_from_annotation] == "edge-a"
    assert SHARD_LABELS.handover_done_annotation not in marks


def test_a_copy_the_target_already_ran_is_not_made_to_wait() -> None:
    # Moved back to where it still works before the handoff ended: it goes on working.
    holdings = held(copy_of(0, RUNNING), copy_of(0, RUNNING, 4))
    handoffs = pending_handoffs(the_job(), moved(), holdings, NOW, TIMEOUT_S)
    merged = with_handoffs({"cloud": [copy_of(0, None, 4)]}, handoffs, holdings, NOW)
    marks = annotations_of(merged["cloud"][0])
    assert SHARD_LABELS.handover_from_annotation not in marks
    assert SHARD_LABELS.handover_done_annotation not in marks


def test_a_handoff_from_a_member_declared_lost_ends_and_its_replacement_works() -> None:
    """The source stopped answering mid-handoff and was evicted: its old copy can neither
    hand over nor be stopped, and the replacement must not wait for it any longer."""
    holdings = held(copy_of(0, RUNNING), waiting(copy_of(0, RUNNING, 4)))
    assert pending_handoffs(checkpointing_job(), moved(), holdings, NOW, TIMEOUT_S)
    handoffs = pending_handoffs(checkpointing_job(), moved(), holdings, NOW, TIMEOUT_S,
                                lost={"edge-a"})  # fmt: skip
    assert not handoffs
    merged = with_handoffs({"cloud": [copy_of(0, None, 4)]}, handoffs, holdings, NOW)
    assert SHARD_LABELS.handover_done_annotation in annotations_of(merged["cloud"][0])


def test_an_old_copy_that_was_itself_waiting_has_nothing_to_hand_over() -> None:
    holdings = held(waiting(copy_of(0, RUNNING), "edge-b"), waiting(copy_of(0, RUNNING, 4)))
    job = checkpointing_job()
    assert not pending_handoffs(job, moved(), holdings, NOW, TIMEOUT_S)


def test_removing_the_old_copy_completes_the_move() -> None:
    old, new = copy_of(0, RUNNING), copy_of(0, RUNNING, 4)
    (done,) = completed_moves(moved(), {"edge-a": [old]}, held(None, new), NOW)
    assert (done.shard, done.source, done.target) == (0, "edge-a", "cloud")
    assert done.replacement_running and done.after_s == pytest.approx(10.0)
    (timed_out,) = completed_moves(
        moved(), {"edge-a": [old]}, held(None, copy_of(0, STARTING)), NOW
    )
    assert not timed_out.replacement_running


def test_removals_that_are_no_move_complete_nothing() -> None:
    # A shard that left for good (scaled down), and a copy removed from a member that is not
    # the source of the shard's move.
    assert not completed_moves(moved(), {"edge-b": [copy_of(1, RUNNING)]}, held(), NOW)
    assert not completed_moves(moved("Failure"), {"edge-a": [copy_of(0, RUNNING)]}, held(), NOW)


def test_a_moving_shard_is_reported_where_it_still_runs() -> None:
    job_wrapper = MLJobWrapper("j").shards(2)
    old = copy_of(0, RUNNING)
    holdings = held(old, copy_of(0, STARTING, 4))
    handoffs = pending_handoffs(the_job(), moved(), holdings, NOW, TIMEOUT_S)
    outcomes = {
        member: ClusterOutcome(member, ApplyState.APPLIED, "", tuple(resources))
        for member, resources in holdings.items()
    }
    first, second = shard_statuses(job_wrapper.obj(), moved(), outcomes, handoffs)
    assert (first.cluster, first.state) == ("edge-a", ShardState.RUNNING)
    assert first.message == "runs on edge-a while its replacement starts on cloud (Proactive move)"
    assert (second.cluster, second.state) == ("edge-b", ShardState.RUNNING)
    # Without the handoff, the shard is where it is decided, starting.
    first, _ = shard_statuses(job_wrapper.obj(), moved(), outcomes)
    assert (first.cluster, first.state) == ("cloud", ShardState.STARTING)


# draining: the old copy hands its last checkpoint over


def checkpointing_job() -> MLJob:
    return MLJobWrapper("j").shards(2).checkpoint("s3://ckpt/j").obj()


def annotated(resource: dict[str, Any], **times: datetime) -> dict[str, Any]:
    keys = {"requested": SHARD_LABELS.checkpoint_request_annotation,
            "checkpoint": SHARD_LABELS.last_checkpoint_annotation}  # fmt: skip
    for name, moment in times.items():
        resource["metadata"]["annotations"][keys[name]] = moment.isoformat()
    return resource


def test_once_the_replacement_runs_the_old_copy_is_asked_for_a_last_checkpoint() -> None:
    old = copy_of(0, RUNNING)
    holdings = held(old, copy_of(0, RUNNING, 4))
    (handoff,) = pending_handoffs(checkpointing_job(), moved(), holdings, NOW, TIMEOUT_S, 30.0)
    assert handoff.step is HandoffStep.DRAINING
    annotations = handoff.resource["metadata"]["annotations"]
    assert annotations[SHARD_LABELS.checkpoint_request_annotation] == NOW.isoformat()
    assert handoff.remaining_s == 30.0
    assert SHARD_LABELS.checkpoint_request_annotation not in old["metadata"]["annotations"]
    # The request, once written, stands as it is: a later pass asks nothing new.
    asked = annotated(copy_of(0, RUNNING), requested=NOW)
    later = NOW + timedelta(seconds=5)
    holdings = held(asked, copy_of(0, RUNNING, 4))
    (again,) = pending_handoffs(checkpointing_job(), moved(), holdings, later, TIMEOUT_S, 30.0)
    assert again.resource is asked and again.remaining_s == pytest.approx(25.0)


def test_the_old_copy_goes_once_it_has_checkpointed_for_its_replacement() -> None:
    before = annotated(copy_of(0, RUNNING), requested=NOW, checkpoint=NOW - timedelta(seconds=1))
    after = annotated(copy_of(0, RUNNING), requested=NOW, checkpoint=NOW + timedelta(seconds=1))
    new = copy_of(0, RUNNING, 4)
    later = NOW + timedelta(seconds=2)
    job = checkpointing_job()
    assert pending_handoffs(job, moved(), held(before, new), later, TIMEOUT_S, 30.0)
    assert not pending_handoffs(job, moved(), held(after, new), later, TIMEOUT_S, 30.0)
    (done,) = completed_moves(moved(), {"edge-a": [after]}, held(None, new), later)
    assert done.handed_over and done.outcome == "HandedOver"


def test_an_old_copy_that_does_not_answer_goes_after_the_drain_timeout() -> None:
    asked = annotated(copy_of(0, RUNNING), requested=NOW)
    new = copy_of(0, RUNNING, 4)
    late = NOW + timedelta(seconds=30)
    assert not pending_handoffs(checkpointing_job(), moved(), held(asked, new), late, 120, 30.0)
    (done,) = completed_moves(moved(), {"edge-a": [asked]}, held(None, new), late)
    assert not done.handed_over and done.outcome == "ReplacementRunning"


def test_a_draining_shard_says_so_in_its_status() -> None:
    holdings = held(copy_of(0, RUNNING), copy_of(0, RUNNING, 4))
    handoffs = pending_handoffs(checkpointing_job(), moved(), holdings, NOW, TIMEOUT_S)
    outcomes = {
        member: ClusterOutcome(member, ApplyState.APPLIED, "", tuple(resources))
        for member, resources in holdings.items()
    }
    first, _ = shard_statuses(checkpointing_job(), moved(), outcomes, handoffs)
    assert first.message == (
        "runs on edge-a, handing its last checkpoint over to its replacement on cloud "
        "(Proactive move)"
    )
