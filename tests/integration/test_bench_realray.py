"""The real-Ray benchmark end to end, with one job: the report's shape, every stage reached in
order, memory read, and nothing of the testbed or its pods left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e2e import bench_realray
from e2e.sites import live_namespaces, requirements_missing

pytestmark = [
    pytest.mark.integration,
    pytest.mark.realray,
    pytest.mark.skipif(requirements_missing() is not None, reason=str(requirements_missing())),
]


def test_one_job_reaches_every_stage_in_order_and_leaves_nothing(tmp_path: Path) -> None:
    report_file, table = tmp_path / "realray.json", tmp_path / "realray.md"
    code = bench_realray.main(["--jobs", "1", "--dir", str(tmp_path / "bed"),
                               "--json", str(report_file), "--markdown", str(table)])  # fmt: skip
    assert code == 0
    report = json.loads(report_file.read_text())
    assert report["jobs"] == 1
    (job,) = report["per_job"]
    reached = [job[stage] for stage in bench_realray.STAGES]
    assert None not in reached, job
    # A head is Ready before KubeRay submits to it, and the Ray job runs after that.
    assert reached[:4] == sorted(reached[:4])
    assert all(report["stages"][stage]["missing"] == 0 for stage in bench_realray.STAGES)
    # A Ray head is hundreds of MiB: a figure of none would mean no pod was read.
    assert report["memory_mib"]["job_pods"] > 100
    assert "| ray_job_running |" in table.read_text()
    assert live_namespaces() == []
