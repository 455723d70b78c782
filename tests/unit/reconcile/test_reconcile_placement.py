"""A cycle's result as Placement specs and the MLJob's scheduling status (beyond
test_plan_job.py and test_merge_scheduling.py)."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from continuum.operator.api import (
    MigrationReason,
    MLJobPhase,
    MLJobStatus,
    Placement,
    PlacementReference,
)
from continuum.operator.api.keys import JobKey
from continuum.operator.api.placement import MAX_MIGRATIONS
from continuum.operator.reconcile.placement import (
    SCORE_LIMIT,
    JobPlan,
    merge_scheduling,
    placements_by_job,
    plan_job,
    results_by_job,
    scheduling_status,
    suspended_status,
)
from continuum.operator.reconcile.shards import desired_resources
from continuum.schedulers import model
from tests.wrappers import MLJobWrapper, PlacementWrapper

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 6, 9, tzinfo=UTC)
EARLIER = datetime(2026, 12, 1, 9, tzinfo=UTC)
KEY = "team-a/j"


def result(
    *decisions: tuple[int, str],
    key: str = KEY,
    unschedulable: str | None = None,
    preempted: tuple[int, ...] = (),
    migrations: tuple[tuple[int, str, str], ...] = (),
) -> model.CycleResult:
    return model.CycleResult(
        "continuum",
        decisions=tuple(
            model.Decision(key, shard, cluster, 1.0, (f"{cluster} fits",))
            for shard, cluster in decisions
        ),
        unschedulable=(model.Unschedulable(key, unschedulable),) if unschedulable else (),
        preemptions=tuple(model.Preemption(key, s, "m1", "over its share") for s in preempted),
        migrations=tuple(
            model.Migration(key, shard, source, target, model.MigrationReason.PROACTIVE)
            for shard, source, target in migrations
        ),
    )


def job(shards: int = 2, min_available: int | None = None) -> MLJobWrapper:
    return MLJobWrapper("j").uid("uid-j").shards(shards, min_available)


def placed(clusters: dict[int, str], epoch: int = 3, decision_epoch: int | None = 2) -> Placement:
    return PlacementWrapper("j", "uid-j").epoch(epoch).decisions(clusters, decision_epoch).obj()


# plan_job


def test_a_first_placement_is_epoch_one_with_every_decision_at_it() -> None:
    plan = plan_job(job().obj(), None, result((1, "m2"), (0, "m1")), NOW)
    assert plan.placement is not None
    assert plan.placement.epoch == 1
    assert (plan.placement.job_ref.name, plan.placement.job_ref.uid) == ("j", "uid-j")
    assert [(d.shard, d.cluster, d.epoch, d.reasons) for d in plan.placement.decisions] == [
        (0, "m1", 1, ["m1 fits"]),
        (1, "m2", 1, ["m2 fits"]),
    ]
    assert plan.placement.migrations == []
    assert (plan.scheduled, plan.message) == (True, "2 of 2 shards placed on m1, m2")


def test_nothing_changed_is_no_new_placement() -> None:
    previous = placed({0: "m1", 1: "m2"})
    for same in (result(), result((0, "m1"))):
        plan = plan_job(job().obj(), previous, same, NOW)
        assert plan.placement is None
        assert (plan.scheduled, plan.message) == (True, "2 of 2 shards placed on m1, m2")


def test_a_moved_shard_raises_the_epoch_and_only_it_takes_the_new_one() -> None:
    previous = placed({0: "m1", 1: "m2"}, epoch=3, decision_epoch=2)
    plan = plan_job(job().obj(), previous, result((1, "m3")), NOW)
    assert plan.placement is not None
    assert plan.placement.epoch == 4
    assert [(d.shard, d.cluster, d.epoch) for d in plan.placement.decisions] == [
        (0, "m1", 2),  # kept where it was: its resources keep their epoch, it does not restart
        (1, "m3", 4),
    ]


def test_a_preempted_shard_is_taken_out() -> None:
    previous = placed({0: "m1", 1: "m2"})
    plan = plan_job(job().obj(), previous, result(preempted=(1,)), NOW)
    assert plan.placement is not None
    assert [d.shard for d in plan.placement.decisions] == [0]
    assert plan.message == "1 of 2 shards placed on m1"


def test_a_scaled_down_job_drops_the_shards_beyond_its_count() -> None:
    previous = placed({0: "m1", 1: "m2", 2: "m2"})
    plan = plan_job(job(2).obj(), previous, result(), NOW)
    assert plan.placement is not None
    assert [d.shard for d in plan.placement.decisions] == [0, 1]
    assert plan.placement.epoch == 4


def test_moves_are_recorded_at_the_time_of_the_cycle_after_the_history() -> None:
    previous = (
        PlacementWrapper("j", "uid-j")
        .epoch(3)
        .decisions({0: "m1"})
        .migration(0, "m0", "m1", "Failure")
        .obj()
    )
    moves = result((0, "m2"), migrations=((0, "m1", "m2"), (0, "m2", "m2")))
    plan = plan_job(job(1).obj(), previous, moves, NOW)
    assert plan.placement is not None
    assert [
        (m.shard, m.from_cluster, m.to_cluster, m.reason, m.time) for m in plan.placement.migrations
    ] == [
        (0, "m0", "m1", MigrationReason.FAILURE, EARLIER),
        (0, "m1", "m2", MigrationReason.PROACTIVE, NOW),  # a move to where it is is none
    ]


def test_a_move_off_a_deleted_member_names_it_from_the_placement() -> None:
    # The scheduler no longer knows the member, so it names no source for the move.
    gone = model.Migration(KEY, 0, "", "m2", model.MigrationReason.FAILURE, "its cluster is gone")
    cycle = replace(result((0, "m2")), migrations=(gone,))
    plan = plan_job(job(1).obj(), placed({0: "deleted-member"}), cycle, NOW)
    assert plan.placement is not None
    assert [(m.shard, m.from_cluster, m.to_cluster) for m in plan.placement.migrations] == [
        (0, "deleted-member", "m2")
    ]
    # Without a Placement to say where it was, there is no move to record, only the decision.
    plan = plan_job(job(1).obj(), None, cycle, NOW)
    assert plan.placement is not None and plan.placement.migrations == []
    assert [d.cluster for d in plan.placement.decisions] == ["m2"]


def test_the_cycles_new_moves_come_with_their_event() -> None:
    previous = placed({0: "m1", 1: "m1"})
    risky = model.Migration(KEY, 0, "m1", "m2", model.MigrationReason.PROACTIVE, "risk 0.91")
    failed = model.Migration(KEY, 1, "m1", "m3", model.MigrationReason.FAILURE)
    cycle = replace(result((0, "m2"), (1, "m3")), migrations=(risky, failed))
    plan = plan_job(job(2).obj(), previous, cycle, NOW)
    assert [(move.event_type, move.message) for move in plan.moves] == [
        ("Normal", "shard 0: m1 -> m2 (Proactive): risk 0.91"),
        ("Warning", "shard 1: m1 -> m3 (Failure)"),
    ]
    assert plan.placement is not None
    assert [move.migration for move in plan.moves] == plan.placement.migrations


def test_a_move_alone_is_a_new_placement() -> None:
    previous = placed({0: "m1"})
    moves = result(migrations=((0, "m0", "m1"),))
    plan = plan_job(job(1).obj(), previous, moves, NOW)
    assert plan.placement is not None
    assert plan.placement.epoch == 4
    assert len(plan.placement.migrations) == 1


def test_the_history_keeps_the_newest_moves() -> None:
    wrapper = PlacementWrapper("j", "uid-j").decisions({0: "m1"})
    for index in range(MAX_MIGRATIONS):
        wrapper.migration(0, f"old-{index}", "m1")
    plan = plan_job(job(1).obj(), wrapper.obj(), result(migrations=((0, "m1", "m2"),)), NOW)
    assert plan.placement is not None
    history = plan.placement.migrations
    assert len(history) == MAX_MIGRATIONS
    assert (history[0].from_cluster, history[-1].from_cluster) == ("old-1", "m1")


@pytest.mark.parametrize(
    ("score", "kept"),
    [(math.inf, SCORE_LIMIT), (-math.inf, -SCORE_LIMIT), (math.nan, SCORE_LIMIT), (2.5, 2.5)],
)
def test_scores_are_kept_finite(score: float, kept: float) -> None:
    cycle = model.CycleResult("continuum", decisions=(model.Decision(KEY, 0, "m1", score, ()),))
    plan = plan_job(job(1).obj(), None, cycle, NOW)
    assert plan.placement is not None
    assert plan.placement.decisions[0].score == kept


def test_reasons_are_cut_to_what_the_api_keeps() -> None:
    reasons = tuple("x" * 2000 for _ in range(40))
    cycle = model.CycleResult("continuum", decisions=(model.Decision(KEY, 0, "m1", 1.0, reasons),))
    plan = plan_job(job(1).obj(), None, cycle, NOW)
    assert plan.placement is not None
    (decision,) = plan.placement.decisions
    assert len(decision.reasons) == 32
    assert {len(reason) for reason in decision.reasons} == {1024}


def test_an_unschedulable_job_short_of_its_gang_says_why() -> None:
    plan = plan_job(job(3).obj(), None, result(unschedulable="no cluster has 1 cpu free"), NOW)
    assert plan == JobPlan(None, scheduled=False, message="no cluster has 1 cpu free")


def test_a_gang_placed_in_part_is_unschedulable_but_keeps_what_it_has() -> None:
    previous = placed({0: "m1"})
    plan = plan_job(job(3, 2).obj(), previous, result(unschedulable="full"), NOW)
    assert (plan.placement, plan.scheduled, plan.message) == (None, False, "full")


def test_a_placed_gang_is_scheduled_though_other_shards_wait() -> None:
    plan = plan_job(job(3, 2).obj(), None, result((0, "m1"), (1, "m1"), unschedulable="x"), NOW)
    assert plan.scheduled
    assert plan.message == "2 of 3 shards placed on m1"


def test_no_decision_and_no_reason_is_not_scheduled() -> None:
    plan = plan_job(job().obj(), None, result(), NOW)
    assert plan == JobPlan(None, scheduled=False, message="0 of 2 shards placed on no cluster")


def test_other_jobs_results_are_not_this_jobs() -> None:
    other = result((0, "m1"), key="team-b/j", unschedulable="full", preempted=(0,))
    assert plan_job(job().obj(), None, other, NOW).message == "0 of 2 shards placed on no cluster"


def test_a_kept_shard_without_its_own_epoch_keeps_the_epoch_its_resources_carry() -> None:
    the_job = job().obj()
    previous = placed({0: "m1", 1: "m2"}, epoch=3, decision_epoch=None)
    plan = plan_job(the_job, previous, result((1, "m3")), NOW)
    assert plan.placement is not None
    after = PlacementWrapper("j", "uid-j").obj().model_copy(update={"spec": plan.placement})
    before_m1 = desired_resources(the_job, previous)["m1"]
    assert desired_resources(the_job, after)["m1"] == before_m1


# results_by_job


def test_each_job_gets_only_its_entries_and_the_cycles_policy_and_timing() -> None:
    timing = model.CycleTiming(total_ms=5.0)
    whole = model.CycleResult(
        "baseline",
        decisions=(model.Decision("a/x", 0, "m1", 1.0, ()),),
        preemptions=(model.Preemption("b/y", 0, "m1", "r"),),
        timing=timing,
    )
    parts = results_by_job(whole)
    assert set(parts) == {JobKey("a", "x"), JobKey("b", "y")}
    x, y = parts[JobKey("a", "x")], parts[JobKey("b", "y")]
    assert (x.policy, x.timing, len(x.decisions), x.preemptions) == ("baseline", timing, 1, ())
    assert (y.decisions, len(y.preemptions), y.unschedulable, y.migrations) == ((), 1, (), ())


def test_an_empty_result_has_no_parts() -> None:
    assert results_by_job(model.CycleResult("continuum")) == {}


# placements_by_job


def test_placements_are_keyed_by_their_jobs() -> None:
    a = PlacementWrapper("a").namespace("ns-1").obj()
    b = PlacementWrapper("other-name").job_ref("b").namespace("ns-2").obj()
    assert placements_by_job([a, b]) == {JobKey("ns-1", "a"): a, JobKey("ns-2", "b"): b}
    assert placements_by_job([]) == {}


# scheduling_status


def conditions(status: MLJobStatus) -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in status.conditions}


def test_a_scheduled_job_is_admitted_placed_and_points_at_its_placement() -> None:
    the_job = job().generation(3).obj()
    plan = JobPlan(None, scheduled=True, message="2 of 2 shards placed on m1")
    status = scheduling_status(the_job, plan, "j", 4, NOW)
    assert conditions(status) == {
        "Admitted": ("True", "Admitted", "the spec is valid and the tenant exists"),
        "Scheduled": ("True", "Placed", "2 of 2 shards placed on m1"),
    }
    assert {c.observed_generation for c in status.conditions} == {3}
    assert status.phase == MLJobPhase.PLACED
    assert status.placement_ref == PlacementReference(name="j", epoch=4)


def test_an_unscheduled_job_is_pending_with_the_plans_reason() -> None:
    wrapper = job().status({"placementRef": {"name": "j", "epoch": 2}, "phase": "Admitted"})
    plan = JobPlan(None, scheduled=False, message="full", reason="Unschedulable")
    status = scheduling_status(wrapper.obj(), plan, "j", 9, NOW)
    assert conditions(status)["Scheduled"] == ("False", "Unschedulable", "full")
    assert status.phase == MLJobPhase.PENDING
    assert status.placement_ref == PlacementReference(name="j", epoch=2)  # not moved


@pytest.mark.parametrize("phase", ["Running", "Recovering", "Succeeded", "Failed"])
@pytest.mark.parametrize("scheduled", [True, False])
def test_from_running_on_the_phase_is_not_the_cycles(phase: str, scheduled: bool) -> None:
    plan = JobPlan(None, scheduled=scheduled, message="m")
    status = scheduling_status(job().phase(phase).obj(), plan, "j", 1, NOW)
    assert status.phase == MLJobPhase(phase)


def test_a_placed_job_that_is_no_longer_scheduled_stays_placed_for_the_controller() -> None:
    # Placed is not among the early phases here (though merge_scheduling takes the cycle's
    # word up to Placed): the placement controller's job_status makes it Pending, from the
    # Placement's decisions.
    plan = JobPlan(None, scheduled=False, message="evicted")
    assert scheduling_status(job().phase("Placed").obj(), plan, "j", 1, NOW).phase == "Placed"


def test_conditions_keep_their_transition_time_while_they_hold() -> None:
    plan = JobPlan(None, scheduled=True, message="placed")
    first = scheduling_status(job().obj(), plan, "j", 1, EARLIER)
    again = scheduling_status(job().status(first.to_dict()).obj(), plan, "j", 1, NOW)
    assert {c.last_transition_time for c in again.conditions} == {EARLIER}
    unscheduled = JobPlan(None, scheduled=False, message="full")
    moved = scheduling_status(job().status(first.to_dict()).obj(), unscheduled, "j", 1, NOW)
    times = {c.type: c.last_transition_time for c in moved.conditions}
    assert times == {"Admitted": EARLIER, "Scheduled": NOW}


# suspended_status


def test_a_suspended_job_is_admitted_not_scheduled_and_suspended() -> None:
    status = suspended_status(job().suspend().obj(), NOW)
    assert conditions(status) == {
        "Admitted": ("True", "Admitted", "the spec is valid and the tenant exists"),
        "Scheduled": (
            "False",
            "Suspended",
            "spec.suspend is true: no shard runs until it is false",
        ),
    }
    assert status.phase == MLJobPhase.SUSPENDED
    assert status.placement_ref is None


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        (None, MLJobPhase.SUSPENDED),
        ("Pending", MLJobPhase.SUSPENDED),
        ("Placed", MLJobPhase.PLACED),  # the placement controller says Suspended (job_phase)
        ("Running", MLJobPhase.RUNNING),  # the placement controller's, until the shards are gone
        ("Succeeded", MLJobPhase.SUCCEEDED),
    ],
)
def test_the_suspended_phase_is_the_cycles_only_early(
    phase: str | None, expected: MLJobPhase
) -> None:
    assert suspended_status(job().suspend().phase(phase).obj(), NOW).phase == expected


# merge_scheduling (beyond test_merge_scheduling.py)


def test_the_cycles_placement_reference_wins_and_an_absent_one_keeps_the_current() -> None:
    current = MLJobStatus(placement_ref=PlacementReference(name="j", epoch=1))
    newer = MLJobStatus(placement_ref=PlacementReference(name="j", epoch=2))
    assert merge_scheduling(current, newer).placement_ref == newer.placement_ref
    assert merge_scheduling(current, MLJobStatus()).placement_ref == current.placement_ref


def test_only_the_cycles_conditions_are_taken_from_it() -> None:
    current = job().condition("Ready", True).obj().status
    scheduled = (
        job().condition("Ready", False).condition("Admitted", True).condition("Scheduled", False)
    ).obj()
    assert current is not None and scheduled.status is not None
    merged = merge_scheduling(current, scheduled.status)
    assert [(c.type, c.status) for c in merged.conditions] == [
        ("Ready", "True"),  # the placement controller's, untouched
        ("Admitted", "True"),
        ("Scheduled", "False"),
    ]


def test_the_controllers_other_fields_are_kept() -> None:
    current = job().shard_status(0, "m1").obj().status
    assert current is not None
    current = current.model_copy(update={"ready": "1/2", "observed_generation": 5})
    merged = merge_scheduling(current, MLJobStatus(phase=MLJobPhase.PLACED))
    assert (merged.ready, merged.observed_generation, merged.shards) == (
        "1/2",
        5,
        current.shards,
    )


def test_a_kept_shard_assigned_at_epoch_0_stays_at_epoch_0() -> None:
    plan = plan_job(job().obj(), placed({0: "m1", 1: "m2"}, decision_epoch=0),
                    result((0, "m1"), (1, "m3")), NOW)  # fmt: skip
    assert plan.placement is not None
    assert [(d.shard, d.epoch) for d in plan.placement.decisions] == [(0, 0), (1, 4)]
