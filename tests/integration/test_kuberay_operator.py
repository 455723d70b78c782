"""The shards against the real KubeRay operator (built from the Go module proxy at
binaries.KUBERAY_VERSION), its own CRDs, and a real kube-scheduler, in testbed members started
with `kuberay=True`.

What runs: the members' API servers, KubeRay, kube-scheduler and the controller manager's job,
endpointslice and node-lifecycle controllers. What does not: no kubelet, so a pod is bound to a
Node but never starts; a Node is registered here by hand, with a Ready status, as a node agent
will (issue 15). The status KubeRay writes before its pods run (RayJob Initializing) is real.
e2e/kuberay_sim.py is not used in this module.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from kubernetes import client

from continuum.operator.api import ShardState
from continuum.operator.reconcile.kuberay import build_shard_resource, observe_shard
from e2e import binaries
from e2e.mljobs import training_job
from e2e.operator_process import REPO, Operator, member_api
from e2e.pytest_plugin import RunningTestbed, eventually, running_testbed
from e2e.registration import register_members
from tests.integration.kuberay_manifests import (
    assert_kept_whole,
    create_strictly,
    example_job,
    read_back,
)

pytestmark = pytest.mark.integration

# KubeRay reconciles at once on a watch event; the scheduler binds within a second or two.
RECONCILE_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def shard_testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTestbed]:
    """A hub and two members (an edge site and the cloud) that run KubeRay and a scheduler."""
    yield from running_testbed(
        tmp_path_factory.mktemp("testbed-kuberay"), False, False, members=2, kuberay=True
    )


@pytest.fixture
def member(shard_testbed: RunningTestbed) -> Iterator[client.ApiClient]:
    api = member_api(shard_testbed, "member-1")
    try:
        yield api
    finally:
        api.close()


def _fresh_member_namespace(testbed: RunningTestbed, cluster_names: list[str]) -> Iterator[str]:
    name = f"kr-{uuid.uuid4().hex[:10]}"
    clusters = [m for m in testbed.members if m.name in cluster_names]
    for cluster in clusters:
        testbed.kubectl("create", "namespace", name, cluster=cluster)
    try:
        yield name
    finally:
        for cluster in clusters:
            testbed.kubectl("delete", "namespace", name, "--wait=false", cluster=cluster,
                            check=False)  # fmt: skip


@pytest.fixture
def member_namespace(shard_testbed: RunningTestbed) -> Iterator[str]:
    yield from _fresh_member_namespace(shard_testbed, ["member-1"])


@pytest.fixture
def ready_node(member: client.ApiClient) -> Iterator[str]:
    """A Node in member-1 with capacity and a Ready status, as a node agent registers one; the
    node-lifecycle controller lifts the not-ready taint the API server puts on a new node."""
    name = f"node-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(member)
    core.create_node({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}})
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    capacity = {"cpu": "16", "memory": "64Gi", "pods": "110", "nvidia.com/gpu": "4"}
    core.patch_node_status(
        name,
        {
            "status": {
                "capacity": capacity,
                "allocatable": capacity,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "registered by the test",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ],
            }
        },
    )
    eventually(
        lambda: not (core.read_node(name).spec.taints or []),
        f"the not-ready taint lifted from {name}",
        timeout=RECONCILE_TIMEOUT_S,
        interval=0.2,
    )
    try:
        yield name
    finally:
        core.delete_node(name)


def _ray_clusters(api: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    listed = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "ray.io", "v1", namespace, "rayclusters"
    )
    items: list[dict[str, Any]] = listed["items"]
    return items


def _head_pods(api: client.ApiClient, namespace: str) -> list[client.V1Pod]:
    pods: list[client.V1Pod] = (
        client.CoreV1Api(api)
        .list_namespaced_pod(namespace, label_selector="ray.io/node-type=head")
        .items
    )
    return pods


def test_the_members_serve_the_crds_of_the_kuberay_they_run(
    shard_testbed: RunningTestbed, member: client.ApiClient
) -> None:
    shipped = {
        yaml.safe_load(path.read_text())["metadata"]["name"]
        for path in binaries.kuberay_crds().glob("*.yaml")
    }
    served = {
        crd.metadata.name
        for crd in client.ApiextensionsV1Api(member).list_custom_resource_definition().items
    }
    assert "rayjobs.ray.io" in shipped
    assert shipped <= served


@pytest.mark.parametrize("mode", ["Training", "Federated", "Inference"])
def test_the_shard_manifests_are_accepted_whole_by_the_kuberay_crds_it_runs(
    mode: str, member: client.ApiClient, member_namespace: str
) -> None:
    job = example_job(member_namespace, mode)
    manifest = build_shard_resource(job, 0, epoch=1)
    create_strictly(member, manifest)
    assert_kept_whole(manifest, read_back(member, manifest))


@pytest.mark.parametrize("mode", ["Training", "Inference"])
def test_real_kuberay_makes_the_shards_ray_cluster_whose_head_pod_the_scheduler_binds(
    mode: str, member: client.ApiClient, member_namespace: str, ready_node: str
) -> None:
    job = example_job(member_namespace, mode)
    manifest = build_shard_resource(job, 0, epoch=1)
    create_strictly(member, manifest)

    clusters = eventually(
        lambda: _ray_clusters(member, member_namespace),
        f"KubeRay's RayCluster for the {mode} shard",
        timeout=RECONCILE_TIMEOUT_S,
        interval=0.2,
    )
    owners = clusters[0]["metadata"].get("ownerReferences") or []
    assert [owner["name"] for owner in owners] == [manifest["metadata"]["name"]]
    heads = eventually(
        lambda: [pod for pod in _head_pods(member, member_namespace) if pod.spec.node_name],
        "the head pod bound to a node",
        timeout=RECONCILE_TIMEOUT_S,
        interval=0.2,
    )
    assert heads[0].spec.node_name == ready_node
    # The pod KubeRay made carries what the operator put in the shard's head template.
    sent = manifest["spec"]["rayClusterSpec" if mode == "Training" else "rayClusterConfig"]
    sent_container = sent["headGroupSpec"]["template"]["spec"]["containers"][0]
    container = heads[0].spec.containers[0]
    assert container.image == sent_container["image"]
    sent_env = {variable["name"]: variable.get("value") for variable in sent_container["env"]}
    pod_env = {variable.name: variable.value for variable in container.env or []}
    assert {name: pod_env.get(name) for name in sent_env} == sent_env
    # Until the head runs, KubeRay reports the shard as starting, and the operator reads it so.
    eventually(
        lambda: observe_shard(read_back(member, manifest)).state == ShardState.STARTING,
        "KubeRay's status of the shard read as Starting",
        timeout=RECONCILE_TIMEOUT_S,
        interval=0.2,
    )


def test_the_job_controller_makes_a_jobs_pod(
    member: client.ApiClient, member_namespace: str
) -> None:
    """RayJob's default submission mode runs `ray job submit` as a batch Job."""
    client.BatchV1Api(member).create_namespaced_job(
        member_namespace,
        {
            "metadata": {"name": "submitter"},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {
                                "name": "submit",
                                "image": "rayproject/ray:2.50.0",
                                "command": ["true"],
                            }
                        ],
                    }
                }
            },
        },
    )
    eventually(
        lambda: (
            client.CoreV1Api(member)
            .list_namespaced_pod(member_namespace, label_selector="job-name=submitter")
            .items
        ),
        "the Job's pod",
        timeout=RECONCILE_TIMEOUT_S,
        interval=0.2,
    )


@pytest.fixture(scope="module")
def operator(
    shard_testbed: RunningTestbed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    register_members([shard_testbed.hub, *shard_testbed.members], None)
    shard_testbed.kubectl("apply", "-f", str(REPO / "examples" / "tenants.yaml"))
    running = Operator(
        shard_testbed.hub.kubeconfig, tmp_path_factory.mktemp("kuberay") / "operator.log"
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _hub_job(testbed: RunningTestbed, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        testbed.kubectl("get", "mljob", name, "-n", namespace, "-o", "json")
    )
    return found


def test_an_mljob_on_the_hub_becomes_kuberays_ray_cluster_and_a_bound_head_pod_in_its_member(
    shard_testbed: RunningTestbed,
    operator: Operator,
    member: client.ApiClient,
    ready_node: str,
) -> None:
    namespace = f"kr-{uuid.uuid4().hex[:8]}"
    shard_testbed.kubectl("create", "namespace", namespace)
    name = "train"
    # Data at member-1's site, kept there: the shard goes to member-1.
    manifest = training_job(
        name, namespace, "delft", "Site", resources={"cpu": "1", "memory": "1Gi"}
    )
    try:
        shard_testbed.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
        eventually(
            lambda: _ray_clusters(member, namespace),
            "KubeRay's RayCluster for the job's shard in member-1",
            timeout=RECONCILE_TIMEOUT_S,
            interval=0.2,
        )
        eventually(
            lambda: [pod for pod in _head_pods(member, namespace) if pod.spec.node_name],
            "the shard's head pod bound to the member's node",
            timeout=RECONCILE_TIMEOUT_S,
            interval=0.2,
        )
        shards = eventually(
            lambda: [
                shard
                for shard in (_hub_job(shard_testbed, namespace, name).get("status") or {}).get(
                    "shards", []
                )
                if shard.get("state") == ShardState.STARTING
            ],
            "the shard Starting in the MLJob's status, from KubeRay's",
            timeout=RECONCILE_TIMEOUT_S,
        )
        assert shards[0]["cluster"] == "member-1"
    finally:
        shard_testbed.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
