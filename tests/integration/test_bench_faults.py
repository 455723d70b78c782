"""The fault benchmark end to end, briefly: one short script (a degrading link, then the site
down and back) in modes reactive and proactive, on a testbed of its own with sites and
Prometheus. It checks the report's shape and what must hold whatever the detector does: the
failure is seen, every shard at the failed site is running again, the figures are consistent
with each other, and the plot is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e2e import bench_faults, monitoring
from e2e.sites import requirements_missing

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(requirements_missing() is not None, reason=str(requirements_missing())),
    pytest.mark.skipif(
        monitoring.requirements_missing() is not None,
        reason=str(monitoring.requirements_missing()),
    ),
]

SCRIPT = Path(__file__).resolve().parent / "faults" / "ramp-then-down.csv"
FIELDS = {
    "failures", "shards_at_failed_sites", "moved_before_failure", "proactive_lead_s",
    "detect_s", "mttr_s", "false_migrations", "degradations_without_failure",
    "duplicate_shard_seconds", "lost_work_s",
}  # fmt: skip


def test_the_benchmark_measures_a_failure_in_two_modes(tmp_path: Path) -> None:
    report_file, markdown_file, plot_file = (
        tmp_path / "faults.json", tmp_path / "faults.md", tmp_path / "faults.png",
    )  # fmt: skip
    code = bench_faults.main([
        "--faults", str(SCRIPT), "--recovery", "reactive,proactive", "--jobs-per-site", "1",
        "--hold-s", "40", "--settle-s", "5", "--warmup-s", "12",
        "--checkpoint-interval", "10", "--dir", str(tmp_path / "testbed"),
        "--json", str(report_file), "--markdown", str(markdown_file), "--plot", str(plot_file),
    ])  # fmt: skip
    assert code == 0
    report = json.loads(report_file.read_text())
    assert set(report["recovery"]) == {"reactive", "proactive"}
    for mode, entry in report["recovery"].items():
        summary = entry["summary"]
        assert set(summary) >= FIELDS, (mode, summary)
        assert summary["failures"] == 1, (mode, summary)
        # One job per edge site: delft's shard is the one at the failed site.
        assert summary["shards_at_failed_sites"] == 1, (mode, entry["events"])
        assert summary["unrecovered"] == 0, (mode, entry["events"])
        assert len(summary["mttr_s"]) == len(summary["proactive_lead_s"]) == 1
        assert summary["mttr_s"][0] == max(0.0, -summary["proactive_lead_s"][0])
        assert summary["moved_before_failure"] == (summary["proactive_lead_s"][0] > 0)
        # The replacement resumed from a checkpoint of the old copy: at most one interval
        # (10 s) and the scheduling slack before it.
        assert 0.0 <= summary["lost_work_s"][0] <= 10.0 + 5.0, (mode, entry["events"])
        # The hub declared delft's member unreachable.
        assert len(summary["detect_s"]) == 1 and summary["detect_s"][0] <= 60.0
        kinds = {event["event"] for event in entry["events"]}
        assert {"failure", "episode"} <= kinds, kinds
        assert any(sample["risk"] is not None for sample in entry["scripts"]["ramp-then-down"]
                   ["series"])  # fmt: skip
    assert "| MTTR s" in markdown_file.read_text()
    assert plot_file.read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "testbed" / "state.json").exists()
