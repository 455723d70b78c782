"""The agent's chart, installed as a user installs it: `continuum member join` on the hub prints
the values, `helm install -f` them into the member cluster. The testbed runs no kubelet, so the
agent's pod does not start; what is checked is what the chart makes: the agent's command, its
hub credential (a kubeconfig in a Secret that the hub accepts for that member), and the
member-side grants, exactly.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from continuum.operator.api.kubeconfig import check_kubeconfig
from e2e import binaries
from e2e.operator_process import REPO
from e2e.pytest_plugin import RunningTestbed, eventually

pytestmark = pytest.mark.integration

CHART = REPO / "charts" / "continuum-agent"
MEMBER = f"chart-{uuid.uuid4().hex[:6]}"


def member_command(testbed: RunningTestbed, action: str, *extra: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "continuum.operator.cli", "member", action, MEMBER,
         "--kubeconfig", str(testbed.hub.kubeconfig), *extra],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def can_read_its_lease(kubeconfig: dict[str, Any]) -> bool:
    cluster = kubeconfig["clusters"][0]["cluster"]
    ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
    request = urllib.request.Request(
        f"{cluster['server']}/apis/coordination.k8s.io/v1/namespaces/continuum-member-{MEMBER}"
        "/leases/agent",
        headers={"Authorization": f"Bearer {kubeconfig['users'][0]['user']['token']}"},
    )  # fmt: skip
    try:
        context = ssl.create_default_context(cadata=ca)
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_the_chart_installs_the_agent_with_the_credential_join_printed(
    testbed: RunningTestbed, tmp_path: Path
) -> None:
    member = testbed.members[1]
    refused = binaries.helm(tmp_path, member.kubeconfig, "template", "x", str(CHART))
    # Without join's values, it names what is missing and where to get it.
    assert refused.returncode != 0 and "`continuum member join` printed it" in refused.stderr
    values = tmp_path / "values.yaml"
    values.write_text(member_command(testbed, "join", "--site", "munich", "--tier", "Edge"))
    lint = binaries.helm(tmp_path, member.kubeconfig, "lint", str(CHART), "-f", str(values))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    namespace = f"agent-{uuid.uuid4().hex[:6]}"
    installed = binaries.helm(tmp_path, member.kubeconfig, "install", "continuum-agent",
                              str(CHART), "-n", namespace, "--create-namespace",
                              "-f", str(values))  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    try:
        deployment = json.loads(testbed.kubectl(
            "get", "deployment", "continuum-agent", "-n", namespace, "-o", "json", cluster=member
        ))  # fmt: skip
        pod = deployment["spec"]["template"]["spec"]
        assert deployment["spec"]["replicas"] == 1
        assert pod["serviceAccountName"] == "continuum-agent"
        args = pod["containers"][0]["args"]
        assert args[:4] == ["continuum", "agent", f"--member={MEMBER}",
                            "--hub-kubeconfig=/etc/continuum-agent/hub/kubeconfig"]  # fmt: skip
        assert "token" not in json.dumps(pod["containers"][0]).lower()
        # Its link probes need no capability: a ping socket for the pod's group.
        assert pod["securityContext"]["sysctls"] == [
            {"name": "net.ipv4.ping_group_range", "value": "0 2147483647"}
        ]
        secret = json.loads(testbed.kubectl(
            "get", "secret", "continuum-agent-hub", "-n", namespace, "-o", "json", cluster=member
        ))  # fmt: skip
        kubeconfig = yaml.safe_load(base64.b64decode(secret["data"]["kubeconfig"]))
        assert check_kubeconfig(kubeconfig) is None
        assert kubeconfig["clusters"][0]["cluster"]["server"] == testbed.hub.server
        eventually(lambda: can_read_its_lease(kubeconfig), "the hub to take the chart's credential",
                   30, interval=0.5)  # fmt: skip
        role = json.loads(testbed.kubectl(
            "get", "clusterrole", "continuum-agent", "-o", "json", cluster=member
        ))  # fmt: skip
        rules = [
            (rule.get("apiGroups"), rule["resources"], rule["verbs"]) for rule in role["rules"]
        ]
        assert rules == [
            (["ray.io"], ["rayjobs", "rayservices"],
             ["get", "list", "watch", "create", "update", "delete"]),
            ([""], ["namespaces"], ["get", "create"]),
            ([""], ["nodes"], ["list"]),
        ]  # fmt: skip
    finally:
        uninstalled = binaries.helm(tmp_path, member.kubeconfig, "uninstall", "continuum-agent",
                                    "-n", namespace)  # fmt: skip
        member_command(testbed, "leave", "--wait", "30")
        testbed.kubectl("delete", "namespace", namespace, "--wait=false", cluster=member)
    assert uninstalled.returncode == 0, uninstalled.stderr
