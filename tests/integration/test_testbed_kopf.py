"""Kopf, the kubeconfig and the testbed wired together, as the operator will use them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kopf.testing import KopfRunner

from e2e.pytest_plugin import RunningTestbed

pytestmark = pytest.mark.integration

SMOKE_OPERATOR = Path(__file__).parent / "operators" / "smoke.py"
SMOKE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "smoketests.testbed.continuum.dev"},
    "spec": {
        "group": "testbed.continuum.dev",
        "scope": "Namespaced",
        "names": {"plural": "smoketests", "singular": "smoketest", "kind": "SmokeTest"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {"name": {"type": "string"}},
                            },
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}


def test_a_kopf_handler_writes_status_on_create(
    testbed: RunningTestbed, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    testbed.kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(SMOKE_CRD))
    testbed.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/smoketests.testbed.continuum.dev",
    )
    monkeypatch.setenv("KUBECONFIG", str(testbed.hub.kubeconfig))
    smoke = {
        "apiVersion": "testbed.continuum.dev/v1",
        "kind": "SmokeTest",
        "metadata": {"name": "first", "namespace": namespace},
        "spec": {"name": "testbed"},
    }
    greeting = ""
    with KopfRunner(
        ["run", "--standalone", "--namespace", namespace, str(SMOKE_OPERATOR)], timeout=60
    ) as runner:
        testbed.kubectl("apply", "-f", "-", stdin=json.dumps(smoke))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not greeting:
            greeting = testbed.kubectl(
                "get", "smoketest", "first", "-n", namespace, "-o", "jsonpath={.status.greeting}"
            )
            time.sleep(0.3)
        testbed.kubectl("delete", "smoketest", "first", "-n", namespace, "--timeout=30s")

    assert runner.exception is None
    assert runner.exit_code == 0
    assert greeting == "hello testbed"
    assert "Handler 'greet' succeeded" in runner.output
