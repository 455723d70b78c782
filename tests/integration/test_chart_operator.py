"""The operator as users install it: `helm install charts/continuum` on a hub that has a node
(e2e/testbed.py `hub_node`), whose agent runs the chart's Deployment exactly as rendered (its
service account token, args, probes, security context and volumes) at the pseudo-site
`control`, from where it reaches the hub and the members over the emulated links.

The slice scenario runs against it (members Reachable, the federated example placed, deployed
and Running, its deletion cleaning every member), and its two replicas elect a leader: killed
five times, the leader is replaced within 15 s each time, and the jobs come out of it whole
and without a duplicate shard. e2e/kuberay_sim.py plays KubeRay in the members.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e import binaries
from e2e.binaries import kubectl
from e2e.operator_process import REPO, condition, get_json
from e2e.pytest_plugin import RunningTestbed, running_testbed
from e2e.registration import register_members
from e2e.sites import pod_namespace
from e2e.testbed import CONTROL_SITE
from tests.integration.slice_steps import (
    EXAMPLES,
    Jobs,
    eventually,
    federated_deployed,
    make_running,
    one_rayjob_per_member,
    shard_resources,
)

pytestmark = [pytest.mark.integration, pytest.mark.chart]

CHART = REPO / "charts" / "continuum"
RELEASE, NAMESPACE = "continuum", "continuum-system"
LEASE = f"{RELEASE}-operator-leader"
SELECTOR = f"app.kubernetes.io/instance={RELEASE}"
TAKEOVER_LIMIT_S = 15.0
KILLS = 5


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTestbed]:
    """Four members at their sites and a hub with a node, the chart installed in it."""
    home = tmp_path_factory.mktemp("helm")
    for bed in running_testbed(
        tmp_path_factory.mktemp("testbed-chart"), True, False, members=4, hub_node=True
    ):
        register_members([bed.hub, *bed.members], None)
        bed.kubectl("apply", "-f", str(EXAMPLES / "tenants.yaml"))
        installed = binaries.helm(
            home, bed.hub.kubeconfig, "install", RELEASE, str(CHART), "--namespace", NAMESPACE,
            "--wait", "--timeout", "100s",
        )  # fmt: skip
        assert installed.returncode == 0, installed.stdout + installed.stderr
        yield bed


def pods(hub: RunningTestbed) -> list[dict[str, Any]]:
    found = get_json(hub, "pods", "-n", NAMESPACE, "-l", SELECTOR)
    return [pod for pod in found["items"] if not pod["metadata"].get("deletionTimestamp")]


def ready(pod: dict[str, Any]) -> bool:
    return (condition(pod, "Ready") or {}).get("status") == "True"


def holder(hub: RunningTestbed) -> str | None:
    lease = get_json(hub, "lease", LEASE, "-n", NAMESPACE) or {}
    return (lease.get("spec") or {}).get("holderIdentity")


def leader_pod(hub: RunningTestbed) -> dict[str, Any] | None:
    """The pod whose replica holds the Lease (its identity is its name and a suffix), once
    both replicas are Ready (a standby is)."""
    identity = holder(hub) or ""
    running = pods(hub)
    leaders = [pod for pod in running if identity.startswith(pod["metadata"]["name"] + "_")]
    if len(running) != 2 or len(leaders) != 1 or not all(ready(pod) for pod in running):
        return None
    return leaders[0]


def crash(pod: dict[str, Any]) -> None:
    """SIGKILL every process of the pod, as an out-of-memory kill or a node's crash would: it
    releases nothing. The node agent starts the container again, as a kubelet would."""
    namespace = pod_namespace(CONTROL_SITE, pod["metadata"]["uid"].replace("-", "")[:10])
    listed = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True,
                            check=True, timeout=10)  # fmt: skip
    pids = [int(pid) for pid in listed.stdout.split()]
    assert pids, f"no process in {namespace}"
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_the_chart_runs_the_operator_as_a_pod_that_reaches_every_member(
    hub: RunningTestbed,
) -> None:
    deployment = get_json(hub, "deployment", f"{RELEASE}-operator", "-n", NAMESPACE)
    template = deployment["spec"]["template"]["spec"]
    container = template["containers"][0]
    # The pod runs as rendered: no superuser credential, a read-only root, not root.
    assert template["serviceAccountName"] == f"{RELEASE}-operator"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "--leader-elect" in container["args"]
    leader = eventually(lambda: leader_pod(hub), "two Ready replicas, one holding the Lease", 120)
    assert leader["spec"]["nodeName"] == "hub-node"

    def every_member_reachable() -> bool:
        members = get_json(hub, "memberclusters")["items"]
        return len(members) == 4 and all(
            (condition(member, "Reachable") or {}).get("status") == "True" for member in members
        )

    eventually(every_member_reachable, "every member Reachable, probed from the pod", 90)
    # Each replica's metrics (the pods' addresses are reachable from the machine): the leader
    # says so, the standby does not.
    for pod in pods(hub):
        url = f"http://{pod['status']['podIP']}:9090/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            exported = reply.read().decode()
        leading = pod["metadata"]["name"] == leader["metadata"]["name"]
        assert f"continuum_leader {1.0 if leading else 0.0}" in exported


ACCOUNT = f"system:serviceaccount:{NAMESPACE}:{RELEASE}-operator"
# What the operator's ServiceAccount must not do: make or remove what users write, read any
# Secret but by name in its own namespace, read other ConfigMaps, run pods, hold other Leases.
DENIED: list[tuple[str, str, str | None]] = [
    ("create", "mljobs.continuum.dev", "default"),
    ("delete", "mljobs.continuum.dev", "default"),
    ("update", "mljobs.continuum.dev", "default"),
    ("create", "memberclusters.continuum.dev", None),
    ("delete", "memberclusters.continuum.dev", None),
    ("create", "tenants.continuum.dev", None),
    ("delete", "tenants.continuum.dev", None),
    ("list", "secrets", NAMESPACE),
    ("watch", "secrets", NAMESPACE),
    ("get", "secrets", "default"),
    ("get", "secrets", "kube-system"),
    ("get", "configmaps/kube-root-ca.crt", NAMESPACE),
    ("list", "configmaps", NAMESPACE),
    ("create", "pods", NAMESPACE),
    ("create", "deployments.apps", NAMESPACE),
    ("update", "leases.coordination.k8s.io/another-lease", NAMESPACE),
    ("update", "leases.coordination.k8s.io", "kube-system"),
    ("create", "validatingwebhookconfigurations.admissionregistration.k8s.io", None),
    ("patch", "validatingwebhookconfigurations.admissionregistration.k8s.io/another", None),
    ("update", "secrets/member-1-kubeconfig", NAMESPACE),
    ("update", "customresourcedefinitions.apiextensions.k8s.io", None),
]
ALLOWED: list[tuple[str, str, str | None] | tuple[str, str, str | None, str]] = [
    ("get", "secrets/member-1-kubeconfig", NAMESPACE),
    ("get", "configmaps/continuum-network", NAMESPACE),
    ("patch", "mljobs.continuum.dev", "default"),
    ("update", "mljobs.continuum.dev", "default", "status"),
    ("create", "placements.continuum.dev", "default"),
    ("delete", "placements.continuum.dev", "default"),
    ("update", f"leases.coordination.k8s.io/{LEASE}", NAMESPACE),
    ("update", f"secrets/{RELEASE}-webhook-tls", NAMESPACE),
    (
        "patch",
        f"validatingwebhookconfigurations.admissionregistration.k8s.io/{RELEASE}-webhook",
        None,
    ),
]


def can(
    hub: RunningTestbed, verb: str, resource: str, namespace: str | None, subresource: str = ""
) -> bool:
    where = ["-n", namespace] if namespace else []
    part = [f"--subresource={subresource}"] if subresource else []
    answer = hub.kubectl("auth", "can-i", verb, resource, *where, *part, "--as", ACCOUNT,
                         check=False)  # fmt: skip
    return answer.strip() == "yes"


def test_the_operator_account_is_denied_all_it_does_not_need(hub: RunningTestbed) -> None:
    granted = [check for check in DENIED if can(hub, *check)]
    assert not granted, f"granted beyond need: {granted}"
    refused = [check for check in ALLOWED if not can(hub, *check)]
    assert not refused, f"denied what it needs: {refused}"


def test_every_replica_serves_the_webhook_with_the_certificate_it_made(hub: RunningTestbed) -> None:
    eventually(lambda: leader_pod(hub), "two Ready replicas, one leading", 120)
    webhook = f"{RELEASE}-webhook"

    def ca_bundles() -> list[str] | None:
        found = get_json(hub, "validatingwebhookconfiguration", webhook) or {}
        bundles = [item["clientConfig"].get("caBundle", "") for item in found.get("webhooks", [])]
        return bundles if bundles and all(bundles) else None

    bundles = eventually(ca_bundles, "the operator's CA in the webhook configuration", 60)
    secret = get_json(hub, "secret", f"{RELEASE}-webhook-tls", "-n", NAMESPACE)
    assert secret["type"] == "kubernetes.io/tls" and set(bundles) == {secret["data"]["ca.crt"]}
    name = f"orphan-{uuid.uuid4().hex[:6]}"
    manifest = (EXAMPLES / "mljob-inference.yaml").read_text()
    manifest = manifest.replace("defect-detector", name).replace("production", "nobody")
    # Each apply reaches one replica or the other, behind the Service: every one must refuse.
    for _ in range(6):
        result = kubectl(hub.hub.kubeconfig, "apply", "-f", "-", stdin=manifest, check=False)
        assert result.returncode != 0, "the job went in: no replica judged it"
        assert f'admission webhook "mljob.{RELEASE}.continuum.dev" denied' in result.stderr
        assert "spec.tenant: no Tenant named 'nobody'" in result.stderr
    assert get_json(hub, "mljob", name, "-n", "default") is None


@pytest.fixture
def jobs(hub: RunningTestbed) -> Iterator[Jobs]:
    made = Jobs(hub)
    try:
        yield made
    finally:
        made.delete()


def running(hub: RunningTestbed, job: str) -> dict[str, Any] | None:
    status = (get_json(hub, "mljob", job, "-n", "default") or {}).get("status", {})
    return status if status.get("phase") == "Running" and status.get("ready") == "4/4" else None


def run_federated(hub: RunningTestbed, job: str) -> None:
    """Brings the federated job to Running, as KubeRay would in each member."""
    federated_deployed(hub, job)
    make_running(hub, job)
    eventually(lambda: running(hub, job), f"{job} Running with 4/4 ready")


def test_the_slice_runs_against_the_installed_operator(hub: RunningTestbed, jobs: Jobs) -> None:
    eventually(lambda: leader_pod(hub), "a leader", 120)
    job = jobs.federated()
    run_federated(hub, job)
    placement = get_json(hub, "placement", job, "-n", "default")
    assert all(decision["reasons"] for decision in placement["spec"]["decisions"])
    hub.kubectl("delete", "mljob", job, "-n", "default", "--timeout=60s")
    assert all(not names for names in shard_resources(hub, "rayjobs", job).values())


def test_a_killed_leader_is_replaced_within_15_s_without_duplicates_or_lost_jobs(
    hub: RunningTestbed, jobs: Jobs, tmp_path: Path
) -> None:
    before = jobs.federated("before")
    run_federated(hub, before)
    takeovers = []
    for _ in range(KILLS):
        leader = eventually(lambda: leader_pod(hub), "two Ready replicas, one leading", 120)
        old = holder(hub)
        killed_at = time.monotonic()
        crash(leader)
        # A job applied while no replica leads is placed and deployed by the next leader, and
        # its deletion cleans every member (the members fit two such jobs at a time).
        during = jobs.federated("during")
        eventually(lambda old=old: holder(hub) not in (None, old), "a new holder of the Lease", 30)
        takeovers.append(time.monotonic() - killed_at)
        print(f"kill {len(takeovers)}: {old} -> {holder(hub)} in {takeovers[-1]:.2f} s")
        federated_deployed(hub, during)
        hub.kubectl("delete", "mljob", during, "-n", "default", "--timeout=60s")
        assert all(not names for names in shard_resources(hub, "rayjobs", during).values())
        # Whole and once: the running job's shards stay where they were, one per member.
        assert one_rayjob_per_member(hub, before)
        assert running(hub, before), get_json(hub, "mljob", before, "-n", "default")["status"]
    (tmp_path / "takeovers.json").write_text(json.dumps(takeovers))
    print(f"leader takeovers over {KILLS} kills (s): {[round(t, 2) for t in takeovers]}")
    assert max(takeovers) <= TAKEOVER_LIMIT_S, takeovers


def test_upgrade_changes_the_replicas_and_uninstall_leaves_the_crds_and_jobs(
    hub: RunningTestbed, jobs: Jobs, tmp_path: Path
) -> None:
    """Last in the module: it removes the release."""
    kept = jobs.federated("kept")
    upgraded = binaries.helm(
        tmp_path, hub.hub.kubeconfig, "upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE,
        "--set", "replicas=3", "--set", "leaderElection.leaseDurationSeconds=10",
        "--wait", "--timeout", "100s",
    )  # fmt: skip
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    deployment = get_json(hub, "deployment", f"{RELEASE}-operator", "-n", NAMESPACE)
    assert "--lease-duration=10" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]

    def three_replicas_one_leader() -> bool:
        running = pods(hub)
        identity = holder(hub) or ""
        leaders = [p for p in running if identity.startswith(p["metadata"]["name"] + "_")]
        return len(running) == 3 and all(map(ready, running)) and len(leaders) == 1

    eventually(three_replicas_one_leader, "three Ready replicas of the new revision", 120)
    federated_deployed(hub, kept)  # the upgraded release acts

    removed = binaries.helm(tmp_path, hub.hub.kubeconfig, "uninstall", RELEASE,
                            "--namespace", NAMESPACE, "--wait")  # fmt: skip
    assert removed.returncode == 0, removed.stdout + removed.stderr
    eventually(lambda: not pods(hub), "the operator's pods gone", 60)
    for kind in ("deployment", "serviceaccount", "role", "rolebinding"):
        assert not hub.kubectl("get", kind, "-n", NAMESPACE, "-l", SELECTOR, "-o", "name")
    assert not hub.kubectl("get", "clusterrole", "-l", SELECTOR, "-o", "name")
    # The CRDs, and what users applied, stay (Helm installs crds/ and never deletes them).
    assert get_json(hub, "crd", "mljobs.continuum.dev") is not None
    assert get_json(hub, "mljob", kept, "-n", "default") is not None
    # With no operator left to take its finalizer off, the test's clean-up would wait.
    hub.kubectl("patch", "mljob", kept, "-n", "default", "--type=merge",
                "-p", '{"metadata":{"finalizers":null}}')  # fmt: skip
