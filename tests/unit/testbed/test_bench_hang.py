"""The hung-member benchmark's bookkeeping: which jobs count as healthy, when a job counts as
placed again, what the probes said, and when the wait may end."""

import pytest

from e2e.bench_hang import (
    ChangeLog,
    ProbeSample,
    Progress,
    condition_status,
    hang_markdown,
    hang_report,
    healthy_done,
    hung_done,
    placed_clusters,
    probe_summary,
)

pytestmark = pytest.mark.unit

HUNG = "member-3"
STOP = 100.0


def placement(job: str, *clusters: str) -> dict[str, object]:
    decisions = [{"shard": index, "cluster": name} for index, name in enumerate(clusters)]
    return {"spec": {"jobRef": {"name": job}, "decisions": decisions}}


def progress() -> Progress:
    """Four burst jobs created at 101 s, after the stop at 100 s:
    - a: member-1, placed at 101.2, shards at 101.5, status at 101.8;
    - b: member-2, placed at 101.3, shards never seen;
    - c: the hung member at 101.4, placed again on member-1 at 130, shards there at 130.5;
    - d: the hung member at 101.4, never placed again.
    And one preloaded job, p, on the hung member at 50 and moved to member-2 at 128."""
    placements: ChangeLog[frozenset[str]] = ChangeLog()
    for job, at, clusters in [
        ("p", 50.0, ("member-3",)),
        ("a", 101.2, ("member-1",)),
        ("a", 105.0, ("member-1",)),  # a MODIFIED event that changes nothing
        ("b", 101.3, ("member-2",)),
        ("c", 101.4, ("member-3",)),
        ("d", 101.4, ("member-3",)),
        ("p", 128.0, ("member-2",)),
        ("c", 130.0, ("member-1",)),
    ]:
        placements.note(job, at, placed_clusters(placement(job, *clusters)))
    return Progress(
        placed={"p": 50.0, "a": 101.2, "b": 101.3, "c": 101.4, "d": 101.4},
        deployed={"p": 50.5, "a": 101.5, "c": 130.5},
        member_of={"p": "member-3", "a": "member-1", "c": "member-1"},
        reported={"p": 51.0, "a": 101.8, "c": 131.0},
        placements=placements,
    )


def test_a_change_log_keeps_only_changes() -> None:
    log: ChangeLog[str | None] = ChangeLog()
    for at, status in [(1.0, "True"), (2.0, "True"), (3.0, "False"), (4.0, "False"), (5.0, "True")]:
        log.note("member-3", at, status)
    assert log.changes["member-3"] == [(1.0, "True"), (3.0, "False"), (5.0, "True")]
    assert log.first("member-3") == "True" and log.latest("member-3") == "True"
    assert log.first_time("member-3", 2.5, lambda status: status == "False") == 3.0
    assert log.first_time("member-3", 3.5, lambda status: status == "False") is None
    assert log.first("member-9") is None


def test_placed_clusters_and_condition_status_read_the_objects() -> None:
    assert placed_clusters(placement("x", "member-1", "member-3", "member-1")) == {
        "member-1",
        "member-3",
    }
    assert placed_clusters({"spec": {"jobRef": {"name": "x"}}}) == frozenset()
    member = {"status": {"conditions": [{"type": "Ready", "status": "True"},
                                        {"type": "Reachable", "status": "False"}]}}  # fmt: skip
    assert condition_status(member, "Reachable") == "False"
    assert condition_status({"status": {}}, "Reachable") is None


def test_the_report_splits_the_burst_by_where_each_shard_went_first() -> None:
    reachable: ChangeLog[str | None] = ChangeLog()
    reachable.note(HUNG, 90.0, "True")
    reachable.note(HUNG, 121.5, "False")
    submitted = dict.fromkeys("abcd", 101.0)

    report = hang_report(HUNG, submitted, ["p"], progress(), reachable, STOP)

    assert report["detected_after_s"] == 21.5
    healthy = report["healthy"]
    assert (healthy["jobs"], healthy["deployed"]) == (2, 1)
    assert healthy["apply_to_placement_s"]["max_s"] == pytest.approx(0.3)
    assert healthy["apply_to_shards_s"]["p99_s"] == pytest.approx(0.5)
    assert [(row["job"], row["to_shards_s"], row["member"]) for row in healthy["slowest"]] == [
        ("b", None, "member-2"),
        ("a", 0.5, "member-1"),
    ]
    on_hung = report["on_hung_member"]
    assert (on_hung["jobs"], on_hung["replaced"], on_hung["deployed_elsewhere"]) == (2, 1, 1)
    assert on_hung["not_deployed"] == 1
    assert on_hung["stop_to_replacement_s"]["p50_s"] == pytest.approx(30.0)
    assert on_hung["apply_to_shards_s"]["p50_s"] == pytest.approx(29.5)
    assert report["unplaced"] == 0
    assert report["preload"] == {"jobs": 1, "on_hung_member": 1, "replaced": 1}


def test_no_detection_within_the_wait_is_reported_as_none() -> None:
    reachable: ChangeLog[str | None] = ChangeLog()
    reachable.note(HUNG, 90.0, "False")  # unreachable before the stop: not this hang's doing
    report = hang_report(HUNG, {"a": 101.0, "e": 101.0}, [], progress(), reachable, STOP)
    assert report["detected_after_s"] is None
    assert report["unplaced"] == 1


def test_the_wait_ends_for_healthy_jobs_first_and_for_the_hung_members_when_moved() -> None:
    seen = progress()
    # b has no shard resources yet, so the healthy side is not done.
    assert not healthy_done(["a", "b", "c", "d"], seen, HUNG)
    assert healthy_done(["a", "c", "d"], seen, HUNG)
    # Without a hung member every job must be deployed.
    assert not healthy_done(["a", "c", "d"], seen, None)
    assert healthy_done(["a", "c"], seen, None)
    # d was never moved off the hung member; c was, and deployed on member-1.
    assert not hung_done(["a", "c", "d"], seen, HUNG)
    assert hung_done(["a", "c"], seen, HUNG)
    # An unplaced job holds the healthy side back.
    assert not healthy_done(["a", "e"], seen, HUNG)


def test_a_job_whose_shards_appear_on_the_hung_member_is_not_deployed_elsewhere() -> None:
    seen = progress()
    seen.placements.note("d", 140.0, frozenset({"member-2"}))
    stuck = Progress(
        seen.placed, {**seen.deployed, "d": 141.0}, {**seen.member_of, "d": HUNG},
        seen.reported, seen.placements,
    )  # fmt: skip
    assert not hung_done(["d"], stuck, HUNG)


def test_the_probe_summary_counts_answers_and_keeps_distinct_reasons() -> None:
    samples = [
        ProbeSample(100.5, "/readyz", 200, "ok"),
        ProbeSample(101.0, "/healthz", 200, "ok"),
        ProbeSample(102.5, "/readyz", 503, "member-3: shard resources not listed\n"),
        ProbeSample(103.5, "/readyz", 503, "member-3: shard resources not listed\n"),
        ProbeSample(104.5, "/readyz", None, "timed out"),
    ]
    readyz = probe_summary(samples, "/readyz", STOP)
    assert readyz == {
        "polls": 4,
        "ok": 1,
        "not_ok": 2,
        "no_answer": 1,
        "first_not_ok_after_s": 2.5,
        "reasons": ["member-3: shard resources not listed", "no answer: timed out"],
    }
    healthz = probe_summary(samples, "/healthz", STOP)
    assert (healthz["ok"], healthz["first_not_ok_after_s"], healthz["reasons"]) == (1, None, [])


def test_the_markdown_names_the_hung_member_and_the_acceptance_figures() -> None:
    reachable: ChangeLog[str | None] = ChangeLog()
    report = hang_report(HUNG, dict.fromkeys("abcd", 101.0), ["p"], progress(), reachable, STOP)
    probes = probe_summary([], "/readyz", STOP)
    report |= {"stopped_at_s": 12.0, "burst_after_stop_s": 1.0, "healthy_done": False,
               "healthy_done_after_s": 300.0,
               "wait_for_hung_s": 60.0, "readyz": probes, "healthz": probes}  # fmt: skip
    text = "\n".join(hang_markdown(report))
    assert "member-3's API server stopped" in text
    assert "at no time in the wait" in text
    assert "| a healthy member | 2 | 1 | 0.25 / 0.3 | 0.5 / 0.5 |" in text
    assert "1 not deployed" in text
    assert "not all done by the end of the wait, 300.0 s after the first create" in text
