"""Helm v4, built by the repo's scripts, installs and removes the chart on the testbed's hub."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram

from e2e import binaries
from e2e.pytest_plugin import RunningTestbed

pytestmark = pytest.mark.integration

CHART = Path(__file__).resolve().parents[2] / "charts" / "continuum"


def _helm(tmp_path: Path, kubeconfig: Path | None, *args: str) -> str:
    result = binaries.helm(tmp_path, kubeconfig, *args)
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_helm_is_v4_and_installs_the_chart(testbed: RunningTestbed, tmp_path: Path) -> None:
    kubeconfig = testbed.hub.kubeconfig
    assert _helm(tmp_path, kubeconfig, "version", "--short").startswith(binaries.HELM_VERSION)
    _helm(tmp_path, kubeconfig, "lint", str(CHART))

    namespace = f"helm-{uuid.uuid4().hex[:8]}"
    release = "continuum"
    # The testbed installed the CRDs already, under its own field manager.
    _helm(tmp_path, kubeconfig, "install", release, str(CHART), "--namespace", namespace,
          "--create-namespace", "--skip-crds")  # fmt: skip
    try:
        deployment = json.loads(
            testbed.kubectl(
                "get", "deployment", f"{release}-operator", "-n", namespace, "-o", "json"
            )
        )
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == f"{release}-operator"
        container = pod["containers"][0]
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics",
                                                          "scheme": "HTTP"}  # fmt: skip
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        role = json.loads(
            testbed.kubectl("get", "clusterrole", f"{release}-operator", "-o", "json")
        )
        assert any("mljobs" in rule["resources"] for rule in role["rules"])
        releases = json.loads(_helm(tmp_path, kubeconfig, "list", "-n", namespace, "-o", "json"))
        assert [entry["name"] for entry in releases] == [release]
    finally:
        _helm(tmp_path, kubeconfig, "uninstall", release, "--namespace", namespace)
    remaining = testbed.kubectl("get", "deployment", "-n", namespace, "-o", "name")
    assert remaining == ""
    testbed.kubectl("delete", "namespace", namespace, "--wait=false")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("replicas=0", "at '/replicas': minimum: got 0, want 1"),
        ("image.pullPolicy=Sometimes", "at '/image/pullPolicy': value must be one of"),
        ("extraArgs={verbose}", "at '/extraArgs/0': 'verbose' does not match pattern"),
        ("replica=3", "additional properties 'replica' not allowed"),
        ("prometheus.url=prometheus:9090", "at '/prometheus/url'"),
        ("leaderElection.renewDeadlineSeconds=10",
         "leaderElection.renewDeadlineSeconds (10) must be below "
         "leaderElection.leaseDurationSeconds (8)"),
    ],
)  # fmt: skip
def test_a_bad_value_fails_the_chart_naming_the_field(
    tmp_path: Path, setting: str, message: str
) -> None:
    refused = binaries.helm(tmp_path, None, "template", "x", str(CHART), "--set", setting)
    assert refused.returncode != 0
    assert message in refused.stderr, refused.stderr


def test_the_chart_renders_with_its_defaults_and_lints(tmp_path: Path) -> None:
    _helm(tmp_path, None, "lint", str(CHART), "--strict")
    rendered = _helm(tmp_path, None, "template", "x", str(CHART))
    assert "--leader-elect" in rendered


ALERT_TESTS = Path(__file__).with_name("alerts_test.yaml")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus)")
def test_the_alerts_the_chart_renders_are_valid_and_fire_when_they_should(tmp_path: Path) -> None:
    rendered = _helm(tmp_path, None, "template", "continuum", str(CHART), "-n",
                     "continuum-system", "--set", "metrics.alerts.enabled=true",
                     "--show-only", "templates/metrics.yaml")  # fmt: skip
    rule = next(
        doc for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] == "PrometheusRule"
    )
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(rule["spec"]))
    shutil.copy(ALERT_TESTS, tmp_path / "alerts_test.yaml")
    for command in (["check", "rules", "alerts.yaml"], ["test", "rules", "alerts_test.yaml"]):
        result = subprocess.run(["promtool", *command], cwd=tmp_path, capture_output=True,
                                text=True, check=False, timeout=60)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_queries_only_metrics_the_operator_exports(tmp_path: Path) -> None:
    from continuum.operator.adapters import metrics  # registers every metric

    exported = {
        name
        for collector in metrics.__dict__.values()
        if isinstance(collector, Counter | Gauge | Histogram)
        for family in collector.describe()
        for name in (family.name, family.name + "_total", family.name + "_bucket")
    }
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    queried = {
        word
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for word in re.findall(r"continuum_[a-z_]+", target["expr"])
    }
    assert queried and queried <= exported, queried - exported
