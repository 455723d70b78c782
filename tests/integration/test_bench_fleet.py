"""The fleet benchmark end to end, briefly: five simulated Pull members and ten MLJobs on a hub
of its own, the operator as a process. It checks the report's shape, that every job got its
Placement and every shard ran in a member, that the figures agree with each other, and that
everything the benchmark started is stopped."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest

from e2e import bench_fleet
from e2e.pids import has_exited

pytestmark = pytest.mark.integration

MEMBERS, JOBS, RENEW_S = 5, 10, 5


def _children() -> set[int]:
    """This process's children still running (the benchmark's agents and operator would be),
    but for multiprocessing's resource tracker, which lives as long as this process."""
    found = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        children = task / "children"
        if children.exists():
            found |= {int(pid) for pid in children.read_text().split()}
    running = set()
    for pid in found:
        with contextlib.suppress(OSError):
            tracker = b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()
            if not tracker and not has_exited(pid):
                running.add(pid)
    return running


def test_the_fleet_benchmark_places_and_runs_every_job(tmp_path: Path) -> None:
    before = _children()
    report_file, markdown_file = tmp_path / "fleet.json", tmp_path / "fleet.md"
    code = bench_fleet.main([
        "--members", str(MEMBERS), "--jobs", str(JOBS), "--processes", "2",
        "--renew", str(RENEW_S), "--idle-s", "6", "--rate", "10", "--timeout", "120",
        "--dir", str(tmp_path / "fleet"), "--json", str(report_file),
        "--markdown", str(markdown_file),
    ])  # fmt: skip
    assert code == 0
    (result,) = json.loads(report_file.read_text())
    assert set(result) >= set(bench_fleet.REQUIRED), result.keys()
    assert (result["members"], result["jobs"]) == (MEMBERS, JOBS)
    # Every job reached a Placement and every shard ran in a member.
    assert result["placed"] == JOBS
    assert result["shards_ran"] == JOBS
    detail = result["detail"]
    assert detail["all_done"] is True
    for figure in ("apply_to_placement_s", "apply_to_shard_s"):
        assert set(result[figure]) == {"p50", "p99"}
        figures = result[figure]
        assert 0 < figures["p50"] <= figures["p99"] <= detail["jobs_window"]["seconds"]
    # A shard is made only for a Placement's decision, and reported after it is made.
    assert result["apply_to_shard_s"]["p50"] >= result["apply_to_placement_s"]["p50"]
    assert detail["apply_to_shard_reported"]["p50_s"] >= result["apply_to_shard_s"]["p50"]
    assert 0 < result["operator_peak_rss_mb"] < 1024
    assert result["operator_cpu_s"] > 0
    assert result["hub_requests_per_s"] > 0
    # The agents' renewals reach the hub's count of lease writes: one per member per interval,
    # plus the control plane's own leases.
    agents = detail["agents"]
    assert agents["renewal_failures"] == 0 and agents["status_write_failures"] == 0
    assert agents["status_writes"] >= JOBS
    assert agents["renewals_per_s"] == pytest.approx(MEMBERS / RENEW_S, rel=0.25)
    idle = detail["idle_window"]
    assert idle["lease_writes_per_s"] >= 0.7 * MEMBERS / RENEW_S
    assert idle["top_requests_per_s"].get("PUT leases", 0) > 0
    # From the operator's own metrics: the cycles it ran, and its full collections (none
    # expected in so small a run, but counted).
    assert detail["cycles"]["count"] > 0 and detail["cycles"]["mean_s"] > 0
    assert detail["full_collections"]["count"] is not None
    table = markdown_file.read_text()
    assert f"| figure | {MEMBERS} members, {JOBS} jobs |" in table
    assert "apply → Placement p99 s" in table
    # Everything started is stopped: the hub, the operator and the agent processes.
    assert not (tmp_path / "fleet" / f"members-{MEMBERS}" / "state.json").exists()
    assert _children() <= before
