"""`continuum demo --fast`, end to end: real Ray on 127.0.0.1, the operator's scheduling cycle
over the in-process store, the fault act proactive and reactive. The figures asserted on are
the ones the run measured and wrote to summary.json."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# The demo's own target is 60 s; the margin is for a busy CI machine, not for a slower demo.
TIMEOUT_S = 240


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("demo")
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "continuum.operator.cli", "demo", "--fast", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    summary["_elapsed_s"] = elapsed
    summary["_stdout"] = completed.stdout
    return summary


def _migration(summary: dict[str, Any], case: str) -> dict[str, Any]:
    found = [m for m in summary["migrations"] if m["case"] == case and m["job"].endswith("fedavg")]
    assert found, f"no migration of the federated job in the {case} case: {summary['migrations']}"
    first: dict[str, Any] = found[0]
    return first


def test_the_proactive_migration_happened_before_the_failure(demo: dict[str, Any]) -> None:
    migration = _migration(demo, "proactive")
    assert migration["reason"] == "Proactive"
    assert migration["from"] == "member-2"
    failure = demo["fault"]["failure_at_s"]["proactive"]
    assert failure is not None
    # Decided and completed (the shard resumed elsewhere) while the site still ran.
    assert migration["at_s"] < failure
    assert migration["resumed_at_s"] is not None and migration["resumed_at_s"] < failure
    assert demo["fault"]["degradation_at_s"] < migration["at_s"]


def test_no_round_was_lost_in_the_proactive_case(demo: dict[str, Any]) -> None:
    assert demo["lost_rounds"]["proactive"] == 0
    assert demo["aborted_rounds"]["proactive"] == []


def test_the_reactive_case_recovers_after_detection(demo: dict[str, Any]) -> None:
    migration = _migration(demo, "reactive")
    assert migration["reason"] == "Failure"
    assert migration["at_s"] >= migration["failure_at_s"]
    assert demo["recovered"]["reactive"]
    assert demo["downtime_s"]["reactive"] > demo["downtime_s"]["proactive"]


def test_accuracy_rose_over_the_rounds(demo: dict[str, Any]) -> None:
    accuracy = demo["accuracy_per_round"]
    assert len(accuracy) >= 5
    assert accuracy[-1] > accuracy[0] + 0.05
    assert max(accuracy[len(accuracy) // 2 :]) > max(accuracy[:2])


def test_inference_met_its_slo_before_the_degradation(demo: dict[str, Any]) -> None:
    p99 = demo["inference_p99_ms"]
    assert p99 is not None
    assert p99 <= demo["slo_ms"] == 50.0


def test_outputs_are_where_the_summary_says(demo: dict[str, Any]) -> None:
    assert Path(demo["plot"]).is_file()
    assert Path(demo["plot"]).stat().st_size > 10_000
    assert f"plot: {demo['plot']}" in demo["_stdout"]
    assert {p["cluster"] for p in demo["placements"]} == {
        "member-1", "member-2", "member-3", "member-4"
    }  # fmt: skip
    assert demo["ray"]["node_address"] == "127.0.0.1"
    checkpoints = Path(demo["checkpoints"]) / "proactive" / "hvac-fedavg"
    assert sorted(p.name for p in checkpoints.iterdir()) == [f"shard-{i}" for i in range(4)]
