"""The chart's `monitoring` section: off by default; on, a PrometheusRule whose groups are
exactly the rules file the testbed's Prometheus loads, and a Probe per pair of places with the
job, module, interval and labels the rules and the operator read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e import binaries, monitoring

pytestmark = pytest.mark.integration

CHART = Path(__file__).resolve().parents[2] / "charts" / "continuum"
PLACES = [
    {"name": "hub", "prober": "blackbox-exporter.monitoring.svc:9115"},
    {"name": "delft", "address": "10.20.1.10", "prober": "blackbox.delft.example:9115"},
    {"name": "ghent", "address": "10.20.2.10"},
]


def helm(tmp_path: Path, *args: str) -> str:
    result = binaries.helm(tmp_path, None, *args)
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def render(tmp_path: Path, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    arguments = ["template", "continuum", str(CHART), "--namespace", "ops",
                 "--kube-version", "1.37.0"]  # fmt: skip
    if values is not None:
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        arguments += ["-f", str(values_file)]
        helm(tmp_path, "lint", str(CHART), "-f", str(values_file))
    return [doc for doc in yaml.safe_load_all(helm(tmp_path, *arguments)) if doc]


def of_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc["kind"] == kind]


def test_monitoring_is_off_by_default(tmp_path: Path) -> None:
    documents = render(tmp_path)
    assert of_kind(documents, "Deployment")
    assert not of_kind(documents, "Probe") and not of_kind(documents, "PrometheusRule")


def test_monitoring_renders_the_testbeds_rules_and_a_probe_per_pair(tmp_path: Path) -> None:
    labels = {"release": "kube-prometheus-stack"}
    documents = render(
        tmp_path, {"monitoring": {"enabled": True, "labels": labels, "places": PLACES}}
    )
    (rule,) = of_kind(documents, "PrometheusRule")
    # One source of truth: the rendered groups are the file's, as the testbed loads it.
    assert rule["spec"] == yaml.safe_load(monitoring.RULES.read_text())
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    probes = {
        (doc["spec"]["targets"]["staticConfig"]["labels"]["source_site"],
         doc["spec"]["targets"]["staticConfig"]["labels"]["target_site"]): doc
        for doc in of_kind(documents, "Probe")
    }  # fmt: skip
    # Every place with a prober probes every other place with an address; the hub has none.
    assert set(probes) == {("hub", "delft"), ("hub", "ghent"), ("delft", "ghent")}
    probe = probes[("delft", "ghent")]
    assert probe["metadata"]["namespace"] == "ops"
    assert probe["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = probe["spec"]
    assert spec["jobName"] == monitoring.JOB
    assert spec["module"] == monitoring.MODULE
    assert spec["interval"] == spec["scrapeTimeout"] == monitoring.PROBE_INTERVAL
    assert spec["prober"] == {"url": "blackbox.delft.example:9115", "path": "/probe"}
    assert spec["targets"]["staticConfig"]["static"] == ["10.20.2.10"]


def test_the_rules_can_be_left_out(tmp_path: Path) -> None:
    documents = render(
        tmp_path, {"monitoring": {"enabled": True, "rules": False, "places": PLACES}}
    )
    assert not of_kind(documents, "PrometheusRule")
    assert len(of_kind(documents, "Probe")) == 3
