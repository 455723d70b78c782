"""The federated benchmark end to end with three rounds: both runs complete every round, the
fleet's rounds cost more than one node's (they cross the links), memory is read, and nothing of
the testbed or its pods is left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e2e import bench_federated
from e2e.sites import live_namespaces, requirements_missing

pytestmark = [
    pytest.mark.integration,
    pytest.mark.realray,
    pytest.mark.skipif(requirements_missing() is not None, reason=str(requirements_missing())),
]


def test_three_rounds_on_one_node_and_across_the_fleet(tmp_path: Path) -> None:
    report_file, table = tmp_path / "federated.json", tmp_path / "federated.md"
    code = bench_federated.main(["--rounds", "3", "--dir", str(tmp_path / "run"),
                                 "--json", str(report_file), "--markdown", str(table)])  # fmt: skip
    assert code == 0
    report = json.loads(report_file.read_text())
    assert report["one_node"]["rounds"] == report["fleet"]["rounds"] == 3
    assert report["one_node"]["exit_codes"] == [0, 0, 0, 0]
    # Each fleet round crosses an edge link and the cloud's twice: 60 ms at least.
    assert report["fleet"]["round_s"]["p50_s"] >= 0.06
    assert report["overhead_s"] > 0
    memory = report["fleet"]["memory_mib"]
    assert sorted(memory) == ["member-1", "member-2", "member-3", "member-4"]
    assert all(figures["pods"] > 100 for figures in memory.values()), memory
    assert "| four members |" in table.read_text()
    assert live_namespaces() == []
