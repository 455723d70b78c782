"""Real shards: the real KubeRay operator, kube-scheduler and real Ray pods in a member at its
site, run by the node agent (e2e/node_agent.py, the one stand-in: pods run as processes, every
image from the repository's virtualenv). e2e/kuberay_sim.py is not used here.

The module brings up its own testbed: the hub and one member (at frankfurt, the cloud) started
with `--sites --kuberay` (root only, as every sites test).
"""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from continuum.operator.api import ShardState
from continuum.operator.reconcile.kuberay import observe_shard
from e2e import pod_network
from e2e.mljobs import training_job
from e2e.operator_process import REPO, Operator, member_api
from e2e.pytest_plugin import RunningTestbed, eventually, running_testbed
from e2e.registration import register_members
from e2e.sites import pod_namespaces, requirements_missing
from tests.integration.ray_pods import finished_log, submitter_log

pytestmark = [
    pytest.mark.integration,
    pytest.mark.realray,
    pytest.mark.skipif(requirements_missing() is not None, reason=str(requirements_missing())),
]

MEMBER = "member-1"
NODE = f"{MEMBER}-node"
SITE = "frankfurt"
# Ray's head starts in seconds here, but two cores shared with the rest of a test run can make
# it tens of seconds; a RayJob adds its submitter pod and the job.
START_TIMEOUT_S = 120.0
JOB_TIMEOUT_S = 240.0
# A Ray head's share: one CPU for its tasks, and room for Ray's object store.
RESOURCES = {"cpu": "1", "memory": "2Gi"}


@pytest.fixture(scope="module")
def ray_testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTestbed]:
    yield from running_testbed(
        tmp_path_factory.mktemp("testbed-realray"), True, False, members=1, kuberay=True
    )


@pytest.fixture
def member(ray_testbed: RunningTestbed) -> Iterator[client.ApiClient]:
    api = member_api(ray_testbed, MEMBER)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def member_namespace(ray_testbed: RunningTestbed, member: client.ApiClient) -> Iterator[str]:
    name = f"rr-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(member).create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        client.CoreV1Api(member).delete_namespace(name)


def test_the_node_registers_ready_with_its_capacity_and_renews_its_lease(
    member: client.ApiClient,
) -> None:
    core = client.CoreV1Api(member)
    node = eventually(lambda: core.read_node(NODE), f"the Node {NODE}", timeout=30)
    ready = next(c for c in node.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("True", "KubeletReady")
    assert node.status.allocatable["cpu"] == "8"
    assert not node.spec.taints
    lease = client.CoordinationV1Api(member)
    first = lease.read_namespaced_lease(NODE, "kube-node-lease").spec.renew_time
    eventually(
        lambda: lease.read_namespaced_lease(NODE, "kube-node-lease").spec.renew_time > first,
        "the node's Lease renewed",
        timeout=30,
        interval=1,
    )


def _pod(name: str, command: list[str], labels: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "containers": [{"name": "main", "image": "python:3.11", "command": command}],
            **spec,
        },
    }


def test_a_pod_runs_in_a_network_of_its_own_is_found_by_its_service_and_leaves_nothing(
    member: client.ApiClient, member_namespace: str
) -> None:
    core = client.CoreV1Api(member)
    server = _pod("web", ["python", "-m", "http.server", "8000"], {"app": "web"})
    server["spec"]["containers"][0]["readinessProbe"] = {
        "httpGet": {"port": 8000, "path": "/"}, "periodSeconds": 1,
    }  # fmt: skip
    core.create_namespaced_pod(member_namespace, server)
    core.create_namespaced_service(
        member_namespace,
        {"metadata": {"name": "web"},
         "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 8000}]}},
    )  # fmt: skip

    def ready() -> client.V1Pod | None:
        pod = core.read_namespaced_pod("web", member_namespace)
        conditions = pod.status.conditions or []
        return pod if any(c.type == "Ready" and c.status == "True" for c in conditions) else None

    running = eventually(ready, "the server pod Ready (its HTTP probe)", timeout=START_TIMEOUT_S)
    address = running.status.pod_ip
    assert address in {str(a) for a in pod_network.pod_addresses(pod_network.pod_cidr("10.77.1.1"))}
    # The hub reaches the pod across the site's link.
    with urllib.request.urlopen(f"http://{address}:8000/", timeout=10) as reply:
        assert reply.status == 200

    # Another pod finds it by the Service's name, and exits 0: the pod Succeeded.
    fqdn = f"web.{member_namespace}.svc.cluster.local"
    script = f"import urllib.request; urllib.request.urlopen('http://{fqdn}:8000/', timeout=10)"
    core.create_namespaced_pod(
        member_namespace, _pod("client", ["python", "-c", script], {}, restartPolicy="Never")
    )
    eventually(
        lambda: core.read_namespaced_pod("client", member_namespace).status.phase == "Succeeded",
        "the client pod Succeeded",
        timeout=START_TIMEOUT_S,
    )

    before = set(pod_namespaces(SITE))
    core.delete_namespaced_pod("web", member_namespace)
    eventually(
        lambda: "web" not in [p.metadata.name for p in core.list_namespaced_pod(
            member_namespace).items],
        "the server pod gone",
        timeout=60,
    )  # fmt: skip
    gone = before - set(pod_namespaces(SITE))
    assert len(gone) == 1, (before, gone)


IN_CLUSTER = """
import errno, os
from kubernetes import client, config
config.load_incluster_config()
namespace = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read()
me = client.CoreV1Api().read_namespaced_pod(os.environ["HOSTNAME"], namespace)
assert me.spec.service_account_name == "reader", me.spec.service_account_name
assert (os.getuid(), os.getgid()) == (65532, 65532), "runAsNonRoot without a user: nonroot"
open("/tmp/scratch", "w").write("the emptyDir is writable")
try:
    open("/usr/read-only-probe", "w")
    raise SystemExit("the root file system is writable")
except OSError as error:
    assert error.errno == errno.EROFS, error
print("in-cluster ok")
"""


def test_a_pod_gets_its_service_account_token_its_volumes_and_a_read_only_root(
    ray_testbed: RunningTestbed, member: client.ApiClient, member_namespace: str
) -> None:
    """As the chart's operator pod will: in-cluster config from the service account volume the
    API server adds, the API server where the node reaches it, not root, a writable emptyDir
    and nothing else writable."""
    core, rbac = client.CoreV1Api(member), client.RbacAuthorizationV1Api(member)
    core.create_namespaced_service_account(member_namespace, {"metadata": {"name": "reader"}})
    rbac.create_namespaced_role(member_namespace, {
        "metadata": {"name": "reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
    })  # fmt: skip
    rbac.create_namespaced_role_binding(member_namespace, {
        "metadata": {"name": "reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader",
                      "namespace": member_namespace}],
    })  # fmt: skip
    pod = _pod("in-cluster", ["python", "-c", IN_CLUSTER], {}, restartPolicy="Never",
               serviceAccountName="reader", volumes=[{"name": "tmp", "emptyDir": {}}],
               securityContext={"runAsNonRoot": True})  # fmt: skip
    container = pod["spec"]["containers"][0]
    container["securityContext"] = {"readOnlyRootFilesystem": True}
    container["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
    core.create_namespaced_pod(member_namespace, pod)
    phase = eventually(
        lambda: (
            core.read_namespaced_pod("in-cluster", member_namespace).status.phase
            in ("Succeeded", "Failed")
            and core.read_namespaced_pod("in-cluster", member_namespace).status.phase
        ),
        "the in-cluster pod finished",
        timeout=START_TIMEOUT_S,
    )
    uid = core.read_namespaced_pod("in-cluster", member_namespace).metadata.uid
    key = uid.replace("-", "")[:10]
    folder = ray_testbed.testbed.cluster_dir(MEMBER) / "node" / "pods" / key
    assert phase == "Succeeded", "".join(p.read_text() for p in folder.glob("*.log"))


def _hub_job(testbed: RunningTestbed, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        testbed.kubectl("get", "mljob", name, "-n", namespace, "-o", "json")
    )
    return found


@pytest.fixture(scope="module")
def operator(
    ray_testbed: RunningTestbed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    register_members([ray_testbed.hub, *ray_testbed.members], None)
    ray_testbed.kubectl("apply", "-f", str(REPO / "examples" / "tenants.yaml"))
    running = Operator(
        ray_testbed.hub.kubeconfig, tmp_path_factory.mktemp("realray") / "operator.log"
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


def test_an_mljob_on_the_hub_really_runs_on_ray_in_its_member_and_succeeds(
    ray_testbed: RunningTestbed, operator: Operator, member: client.ApiClient
) -> None:
    namespace = f"rr-{uuid.uuid4().hex[:8]}"
    ray_testbed.kubectl("create", "namespace", namespace)
    name = "squares"
    # Ray tasks on the shard's own Ray cluster; a wrong sum fails the job, and the MLJob.
    squares = (
        'python -c "import ray; ray.init(); '
        "total = sum(ray.get([ray.remote(lambda i: i * i).remote(i) for i in range(10)])); "
        'assert total == 285, total"'
    )
    manifest = training_job(name, namespace, SITE, "Any", resources=RESOURCES, entrypoint=squares)
    try:
        ray_testbed.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
        phase = eventually(
            lambda: (
                (_hub_job(ray_testbed, namespace, name).get("status") or {}).get("phase")
                in ("Succeeded", "Failed")
                and _hub_job(ray_testbed, namespace, name)["status"]["phase"]
            ),
            "the MLJob finished",
            timeout=JOB_TIMEOUT_S,
            interval=1,
        )
        rayjobs = client.CustomObjectsApi(member).list_namespaced_custom_object(
            "ray.io", "v1", namespace, "rayjobs", label_selector=f"continuum.dev/job={name}"
        )["items"]
        assert [observe_shard(job).state for job in rayjobs] == [ShardState.SUCCEEDED], rayjobs
        assert phase == "Succeeded"
    finally:
        ray_testbed.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _finished(testbed: RunningTestbed, namespace: str, name: str) -> str | None:
    phase = (_hub_job(testbed, namespace, name).get("status") or {}).get("phase")
    return str(phase) if phase in ("Succeeded", "Failed") else None


def test_a_training_shard_checkpoints_to_its_uri_and_the_next_copy_resumes_there(
    ray_testbed: RunningTestbed, operator: Operator, member: client.ApiClient, tmp_path: Path
) -> None:
    """continuum.workloads.training, as users run it: its checkpoint URI and interval from the
    job's environment, a Ray task per step, a checkpoint every interval under file://."""
    namespace = f"rr-{uuid.uuid4().hex[:8]}"
    ray_testbed.kubectl("create", "namespace", namespace)
    checkpoints = tmp_path / "ckpt"

    def job(name: str, steps: int) -> dict[str, Any]:
        entrypoint = (
            f"python -m continuum.workloads.training --site {SITE} --steps {steps} --step-s 1"
        )
        manifest = training_job(name, namespace, SITE, "Any", resources=RESOURCES,
                                entrypoint=entrypoint)  # fmt: skip
        manifest["spec"]["faultTolerance"] = {
            "checkpoint": {"uri": f"file://{checkpoints}", "intervalSeconds": 3}
        }
        return manifest

    try:
        ray_testbed.kubectl("apply", "-f", "-", stdin=json.dumps(job("first", 6)))
        phase = eventually(lambda: _finished(ray_testbed, namespace, "first"), "the first job",
                           timeout=JOB_TIMEOUT_S, interval=1)  # fmt: skip
        assert phase == "Succeeded", submitter_log(ray_testbed, MEMBER, namespace)
        written = sorted(path.name for path in (checkpoints / "shard-0").glob("step-*.npz"))
        assert written[-1] == "step-00006.npz", written
        log = finished_log(ray_testbed, MEMBER, namespace, "done at step 6, accuracy")
        # The driver saw the shard's environment: its index, the Placement's epoch, the URI.
        assert re.search(r"shard 0 epoch \d+: resumes at step 0 of 6", log), log
        ray_testbed.kubectl("delete", "mljob", "first", "-n", namespace)
        eventually(lambda: not client.CoreV1Api(member).list_namespaced_pod(namespace).items,
                   "the first job's pods gone", timeout=120, interval=1)  # fmt: skip

        # A later copy of the shard (another job, the same URI) resumes at step 6.
        ray_testbed.kubectl("apply", "-f", "-", stdin=json.dumps(job("second", 8)))
        phase = eventually(lambda: _finished(ray_testbed, namespace, "second"), "the second job",
                           timeout=JOB_TIMEOUT_S, interval=1)  # fmt: skip
        assert phase == "Succeeded", submitter_log(ray_testbed, MEMBER, namespace)
        log = finished_log(ray_testbed, MEMBER, namespace, "done at step 8")
        assert "resumes at step 6 of 8" in log, log
    finally:
        ray_testbed.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_a_site_that_goes_down_takes_its_pods_with_it_and_runs_them_again_when_restored(
    ray_testbed: RunningTestbed, member_namespace: str
) -> None:
    sites = ray_testbed.testbed.sites
    api = member_api(ray_testbed, MEMBER)
    core = client.CoreV1Api(api)
    server = _pod("web", ["python", "-m", "http.server", "8000"], {"app": "web"})
    server["spec"]["containers"][0]["readinessProbe"] = {
        "httpGet": {"port": 8000, "path": "/"}, "periodSeconds": 1,
    }  # fmt: skip
    created = core.create_namespaced_pod(member_namespace, server)
    key = created.metadata.uid.replace("-", "")[:10]

    def serving() -> bool:
        try:
            pod = core.read_namespaced_pod("web", member_namespace, _request_timeout=5)
            with urllib.request.urlopen(f"http://{pod.status.pod_ip}:8000/", timeout=5) as reply:
                return bool(reply.status == 200)
        except Exception:  # the site is coming back: its API server or the pod not yet
            return False

    eventually(serving, "the pod serving", timeout=START_TIMEOUT_S, interval=0.5)
    assert pod_network.namespace_pids(SITE, key)
    sites.down(SITE)
    try:
        assert pod_network.namespace_pids(SITE, key) == []
    finally:
        sites.restore(SITE)
    api.close()
    api = member_api(ray_testbed, MEMBER)
    core = client.CoreV1Api(api)
    try:
        eventually(serving, "the pod serving again after restore", timeout=START_TIMEOUT_S,
                   interval=0.5)  # fmt: skip
    finally:
        api.close()
