"""The fault benchmark's figures from hand-made timelines: a proactive move before a down, a
reactive replacement after one (with the stale copy coming back), a partition ridden out, a
blip with a false move, and the shard watchers' records as observations."""

from dataclasses import replace

import pytest

from e2e.fault_metrics import (
    CopyObservation,
    Migration,
    ReachableChange,
    Settings,
    SiteChange,
    Timeline,
    duplicates_by_move_reason,
    observations_from_records,
    outages,
    shard_running,
    summarize,
)

pytestmark = pytest.mark.unit

MEMBERS = {"member-1": "delft", "member-2": "eindhoven", "member-4": "frankfurt"}
SETTINGS = Settings(min_failure_s=30.0, horizon_s=120.0)


def copy(t: float, member: str, uid: str, running: bool = True, present: bool = True,
         checkpoint: float | None = None, shard: int = 0) -> CopyObservation:  # fmt: skip
    return CopyObservation(t, member, "job-a", shard, uid, running, present, checkpoint)


def ramp_then_down(down_at: float = 60.0, restore_at: float = 100.0) -> list[SiteChange]:
    return [
        SiteChange(0.0, "delft", "up", 0.0),
        SiteChange(10.0, "delft", "up", 100.0, 10.0, 2.0),
        SiteChange(30.0, "delft", "up", 300.0, 20.0, 8.0),
        SiteChange(down_at, "delft", "down"),
        SiteChange(restore_at, "delft", "restore"),
    ]


def test_a_proactive_move_before_a_down_has_a_lead_and_a_handoff_overlap() -> None:
    timeline = Timeline(
        MEMBERS,
        end_t=150.0,
        sites=ramp_then_down(),
        copies=[
            copy(-30.0, "member-1", "old"),
            copy(-10.0, "member-1", "old", checkpoint=-10.0),
            copy(10.0, "member-1", "old", checkpoint=10.0),
            copy(30.0, "member-1", "old", checkpoint=30.0),
            copy(41.0, "member-2", "new", running=False),
            copy(45.0, "member-2", "new"),
            copy(47.0, "member-1", "old", present=False),
            copy(65.0, "member-2", "new", checkpoint=65.0),
        ],
        migrations=[Migration(40.0, "job-a", 0, "member-1", "member-2", "Proactive")],
        reachable=[
            ReachableChange(-60.0, "member-1", "True"),
            ReachableChange(70.0, "member-1", "False"),
        ],
    )
    result = summarize(timeline, SETTINGS)
    summary = result["summary"]
    assert summary["failures"] == 1
    assert summary["shards_at_failed_sites"] == 1
    assert summary["moved_before_failure"] == 1
    assert summary["proactive_lead_s"] == [15.0]
    assert summary["mttr_s"] == [0.0]
    # The replacement resumed from the checkpoint at 30 s and took over at 45 s.
    assert summary["lost_work_s"] == [15.0]
    assert summary["detect_s"] == [10.0]
    assert summary["false_migrations"] == 0
    assert summary["degradations_without_failure"] == 0
    assert summary["duplicate_shard_seconds"] == 2.0
    assert summary["duplicate_handoff_s"] == 2.0
    assert summary["duplicate_split_s"] == 0.0
    assert summary["duplicate_s_by_move_reason"] == {"Proactive": 2.0}
    failure = next(event for event in result["events"] if event["event"] == "failure")
    assert failure["shards"][0]["replacement"] == "member-2"


def test_a_handed_over_move_loses_no_work() -> None:
    """As above, but the operator asked the old copy for a last checkpoint once the replacement
    ran (45.5 s), and it took one (46 s) before it was removed: the replacement resumes there."""
    asked = CopyObservation(45.6, "member-1", "job-a", 0, "old", True, True, 30.0, 45.5)
    answered = CopyObservation(46.0, "member-1", "job-a", 0, "old", True, True, 46.0, 45.5)
    timeline = Timeline(
        MEMBERS,
        end_t=150.0,
        sites=ramp_then_down(),
        copies=[
            copy(-30.0, "member-1", "old"),
            copy(30.0, "member-1", "old", checkpoint=30.0),
            copy(41.0, "member-2", "new", running=False),
            copy(45.0, "member-2", "new"),
            asked,
            answered,
            copy(46.3, "member-1", "old", present=False),
        ],
        migrations=[Migration(40.0, "job-a", 0, "member-1", "member-2", "Proactive")],
    )
    result = summarize(timeline, SETTINGS)
    assert result["summary"]["lost_work_s"] == [0.0]
    assert result["summary"]["moved_before_failure"] == 1
    (failure,) = [event for event in result["events"] if event["event"] == "failure"]
    assert failure["shards"][0]["resumed_from_checkpoint_t"] == 46.0
    # A request the old copy never answered before it went: the work since 30 s is lost.
    unanswered = [o for o in timeline.copies if o is not answered]
    late = summarize(Timeline(MEMBERS, 150.0, timeline.sites, unanswered, timeline.migrations),
                     SETTINGS)  # fmt: skip
    assert late["summary"]["lost_work_s"] == [15.0]
    # The replacement worked from 45 s, the old copy until its last checkpoint at 46 s.
    assert result["summary"]["duplicate_shard_seconds"] == 1.0
    assert result["summary"]["copies_coexisting_s"] == 1.3


def test_a_replacement_that_waits_for_the_hand_over_never_works_beside_its_old_copy() -> None:
    def new(t: float, waiting: bool, checkpoint: float | None = None) -> CopyObservation:
        return CopyObservation(t, "member-2", "job-a", 0, "new", True, True, checkpoint,
                               None, waiting)  # fmt: skip

    timeline = Timeline(
        MEMBERS,
        end_t=150.0,
        sites=ramp_then_down(),
        copies=[
            copy(-30.0, "member-1", "old"),
            copy(30.0, "member-1", "old", checkpoint=30.0),
            new(45.0, waiting=True),
            CopyObservation(45.6, "member-1", "job-a", 0, "old", True, True, 30.0, 45.5),
            CopyObservation(46.0, "member-1", "job-a", 0, "old", True, True, 46.0, 45.5),
            new(46.2, waiting=False),
            copy(46.3, "member-1", "old", present=False),
            new(60.0, waiting=False, checkpoint=60.0),
        ],
        migrations=[Migration(40.0, "job-a", 0, "member-1", "member-2", "Proactive")],
    )
    summary = summarize(timeline, SETTINGS)["summary"]
    assert summary["duplicate_shard_seconds"] == 0.0
    assert summary["copies_coexisting_s"] == 1.3
    assert summary["lost_work_s"] == [0.0]
    assert summary["proactive_lead_s"] == [13.8]  # serving once let start, at 46.2 s
    # Let start only at 80 s, after the old copy's site went down at 60 s (a handoff stuck on
    # a copy that cannot answer): recovered 20 s after the failure, not before it.
    stuck = [o for o in timeline.copies if o.t < 46.0 or o.uid != "old"]
    stuck = [replace(o, waiting=True) if o.uid == "new" else o for o in stuck]
    stuck.append(new(80.0, waiting=False))
    late = summarize(Timeline(MEMBERS, 150.0, timeline.sites, sorted(stuck, key=lambda o: o.t),
                              timeline.migrations), SETTINGS)["summary"]  # fmt: skip
    assert late["moved_before_failure"] == 0
    assert late["mttr_s"] == [20.0]
    # Were it let start before the old copy handed over, the two would work at once.
    early = [
        replace(o, waiting=False) if o.uid == "new" and o.t == 45.0 else o for o in timeline.copies
    ]
    hasty = summarize(Timeline(MEMBERS, 150.0, timeline.sites, early, timeline.migrations),
                      SETTINGS)  # fmt: skip
    assert hasty["summary"]["duplicate_shard_seconds"] == 1.0


def test_a_reactive_replacement_after_a_down_and_the_stale_copy_that_comes_back() -> None:
    timeline = Timeline(
        MEMBERS,
        end_t=150.0,
        sites=ramp_then_down(),
        copies=[
            copy(-30.0, "member-1", "old"),
            copy(50.0, "member-1", "old", checkpoint=50.0),
            copy(76.0, "member-2", "new"),
            # The site is restored at 100 s; its watcher starts again and sees the old copy,
            # whose status still says Running, until the operator deletes it.
            copy(101.0, "member-1", "old", checkpoint=50.0),
            copy(104.0, "member-1", "old", present=False),
        ],
        migrations=[Migration(73.0, "job-a", 0, "member-1", "member-2", "Failure")],
        reachable=[ReachableChange(72.0, "member-1", "False")],
    )
    summary = summarize(timeline, SETTINGS)["summary"]
    assert summary["proactive_lead_s"] == [-16.0]
    assert summary["mttr_s"] == [16.0]
    assert summary["moved_before_failure"] == 0
    # Killed at 60 s, its newest checkpoint at 50 s.
    assert summary["lost_work_s"] == [10.0]
    assert summary["detect_s"] == [12.0]
    assert summary["false_migrations"] == 0
    assert summary["duplicate_split_s"] == 3.0
    assert summary["duplicate_handoff_s"] == 0.0


def test_a_long_partition_ridden_out_is_a_failure_with_no_lost_work() -> None:
    timeline = Timeline(
        MEMBERS,
        end_t=150.0,
        sites=[SiteChange(20.0, "delft", "partition"), SiteChange(80.0, "delft", "restore")],
        copies=[
            copy(-30.0, "member-1", "old"),
            copy(10.0, "member-1", "old", checkpoint=10.0),
            copy(90.0, "member-1", "old", checkpoint=90.0),
        ],
        reachable=[ReachableChange(33.0, "member-1", "False")],
    )
    summary = summarize(timeline, SETTINGS)["summary"]
    assert summary["failures"] == 1
    assert summary["mttr_s"] == [60.0]
    assert summary["proactive_lead_s"] == [-60.0]
    assert summary["lost_work_s"] == [0.0]
    assert summary["detect_s"] == [13.0]
    assert summary["duplicate_shard_seconds"] == 0.0


def test_a_partition_moved_away_leaves_a_split_brain_copy() -> None:
    timeline = Timeline(
        MEMBERS,
        end_t=150.0,
        sites=[SiteChange(20.0, "delft", "partition"), SiteChange(80.0, "delft", "restore")],
        copies=[
            copy(-30.0, "member-1", "old"),
            copy(10.0, "member-1", "old", checkpoint=10.0),
            copy(40.0, "member-2", "new"),
            copy(83.0, "member-1", "old", present=False),
        ],
        migrations=[Migration(36.0, "job-a", 0, "member-1", "member-2", "Failure")],
    )
    summary = summarize(timeline, SETTINGS)["summary"]
    assert summary["mttr_s"] == [20.0]
    assert summary["lost_work_s"] == [10.0]
    assert summary["duplicate_split_s"] == 43.0
    assert summary["detect_s"] == []


def test_a_blip_is_no_failure_and_a_move_for_it_is_false() -> None:
    timeline = Timeline(
        MEMBERS,
        end_t=200.0,
        sites=[
            SiteChange(0.0, "delft", "up", 5.0),
            SiteChange(5.0, "delft", "up", 80.0, 10.0, 0.0),
            SiteChange(15.0, "delft", "up", 5.0),
            SiteChange(20.0, "delft", "partition"),
            SiteChange(30.0, "delft", "restore"),
            SiteChange(0.0, "eindhoven", "up", 0.0),
            SiteChange(100.0, "eindhoven", "up", 0.0, 0.0, 5.0),
            SiteChange(110.0, "eindhoven", "up", 0.0),
        ],
        copies=[
            copy(-30.0, "member-1", "old"),
            copy(32.0, "member-2", "new"),
            copy(33.0, "member-1", "old", present=False),
        ],
        migrations=[Migration(28.0, "job-a", 0, "member-1", "member-2", "Failure")],
    )
    summary = summarize(timeline, SETTINGS)["summary"]
    assert summary["failures"] == 0
    assert summary["shards_at_failed_sites"] == 0
    assert summary["false_migrations"] == 1
    assert summary["false_migrations_by_reason"] == {"Failure": 1}
    # delft's RTT rise and its blip, 5 s apart, are one episode; eindhoven's loss another.
    assert summary["degradation_episodes"] == 2
    assert summary["degradations_without_failure"] == 2
    assert summary["blips"] == 1
    assert summary["lost_work_s"] == []


def test_a_partition_that_becomes_a_down_is_one_failure_from_its_start() -> None:
    found = outages(
        [SiteChange(10.0, "ghent", "partition"), SiteChange(15.0, "ghent", "down"),
         SiteChange(60.0, "ghent", "restore"), SiteChange(70.0, "delft", "partition")],
        end_t=90.0,
    )  # fmt: skip
    assert [(o.site, o.start, o.end, o.down, o.restored) for o in found] == [
        ("ghent", 10.0, 60.0, True, True),
        ("delft", 70.0, 90.0, False, False),
    ]
    assert found[0].is_failure(30.0) and not found[1].is_failure(30.0)


def test_watcher_records_become_observations_and_a_copy_missing_from_a_snapshot_is_gone() -> None:
    item = {"kind": "RayJob", "uid": "u1", "job": "job-a", "shard": 0, "running": True,
            "checkpoint_t": 1010.0}  # fmt: skip
    records = [
        {"t": 1005.0, "member": "member-1", "record": "snapshot", "kind": "RayJob",
         "items": [item]},
        {"t": 1012.0, "member": "member-1", "record": "event", "type": "MODIFIED",
         "item": {**item, "checkpoint_t": 1011.0}},
        {"t": 1020.0, "member": "member-1", "record": "snapshot", "kind": "RayJob", "items": []},
    ]  # fmt: skip
    found = observations_from_records(records, offset=1000.0)
    assert [(o.t, o.running, o.present, o.checkpoint_t) for o in found] == [
        (5.0, True, True, 10.0),
        (12.0, True, True, 11.0),
        (20.0, False, False, 11.0),
    ]


def test_kuberay_status_running() -> None:
    assert shard_running("RayJob", {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})
    assert not shard_running("RayJob", {"jobDeploymentStatus": "Initializing"})
    assert not shard_running("RayJob", None)
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    assert shard_running("RayService", ready)


def test_a_replacement_moved_back_onto_the_failed_site_counts_as_downtime() -> None:
    timeline = Timeline(
        MEMBERS,
        end_t=150.0,
        sites=ramp_then_down(),
        copies=[
            copy(-30.0, "member-1", "old"),
            copy(44.0, "member-1", "old", present=False),
            copy(45.0, "member-2", "new"),
            # Moved back to the (down) member-1 at 62 s, then away again once it was declared.
            copy(62.0, "member-2", "new", present=False),
            copy(76.0, "member-2", "again"),
        ],
    )
    result = summarize(timeline, SETTINGS)
    summary = result["summary"]
    assert summary["proactive_lead_s"] == [15.0]
    # 44..45 (break before make) and 62..76.
    assert summary["downtime_s"] == [15.0]


def test_duplicates_are_told_apart_by_the_move_that_made_them() -> None:
    overlaps = [
        {"job": "job-a", "shard": 0, "start_t": 45.0, "seconds": 2.0},
        {"job": "job-a", "shard": 0, "start_t": 95.0, "seconds": 7.5},
        {"job": "job-b", "shard": 0, "start_t": 95.0, "seconds": 1.0},
        {"job": "job-a", "shard": 1, "start_t": 10.0, "seconds": 0.5},
    ]
    migrations = [
        Migration(40.0, "job-a", 0, "member-1", "member-2", "Proactive"),
        Migration(90.0, "job-a", 0, "member-2", "member-3", "Failure"),
        Migration(96.0, "job-b", 0, "member-1", "member-2", "Proactive"),  # after its overlap
    ]
    assert duplicates_by_move_reason(overlaps, migrations) == {
        "Failure": 7.5, "Proactive": 2.0, "none": 1.5,
    }  # fmt: skip
