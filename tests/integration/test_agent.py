"""The member agent on the testbed: `continuum agent` as a separate process, a Pull member whose
cluster is one of the testbed's members, dialling the hub and that member.

The test plays the hub: it makes the objects `continuum member join` makes (the member's
namespace, its Lease, a MemberCluster of mode Pull) with the admin credential, writes
MemberWorks as the operator would (manifests from `build_shard_resource`), and reads what the
agent reports. No operator runs. e2e/kuberay_sim.py plays KubeRay in the member.

The module shares one Pull member and one agent process; each test has jobs and a namespace
of its own, and a test that kills the agent starts it again.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

import continuum
from continuum.operator.api import GROUP, VERSION, MLJob, ShardState
from continuum.operator.api.membercluster import AgentReport
from continuum.operator.api.shard_resources import RAY_JOB, SHARD_LABELS, job_selector
from continuum.operator.api.work import (
    AGENT_NAME,
    AGENT_REPORT_ANNOTATION,
    member_namespace,
    work_name,
)
from continuum.operator.reconcile.kuberay import build_shard_resource, observe_shard
from e2e import kuberay_sim
from e2e.agent_process import AgentProcess
from e2e.operator_process import condition, member_api
from e2e.pytest_plugin import RunningTestbed
from e2e.pytest_plugin import eventually as wait_until
from e2e.testbed import ClusterInfo

pytestmark = pytest.mark.integration

WAIT_S = 60.0
RENEW_S = 1
RESYNC_S = 2.0
WORKS = "memberworks"


def eventually(check: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    return wait_until(check, what, timeout, interval=0.2)


@dataclass(frozen=True)
class PullMember:
    name: str
    cluster: ClusterInfo
    hub: client.ApiClient
    member: client.ApiClient

    @property
    def namespace(self) -> str:
        return member_namespace(self.name)


@pytest.fixture(scope="module")
def pull_member(testbed: RunningTestbed) -> Iterator[PullMember]:
    """What `member join` makes on the hub for a Pull member whose cluster is member-1."""
    name = f"pull-{uuid.uuid4().hex[:6]}"
    cluster = testbed.members[0]
    hub = config.new_client_from_config(config_file=str(testbed.hub.kubeconfig))
    made = PullMember(name, cluster, hub, member_api(testbed, cluster.name))
    labels = {"continuum.dev/member": name, "app.kubernetes.io/managed-by": "continuum"}
    client.CoreV1Api(hub).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=made.namespace, labels=labels))
    )
    objects = client.CustomObjectsApi(hub)
    try:
        client.CoordinationV1Api(hub).create_namespaced_lease(
            made.namespace,
            client.V1Lease(
                metadata=client.V1ObjectMeta(
                    name=AGENT_NAME, labels={"continuum.dev/member": name}
                ),
                spec=client.V1LeaseSpec(),
            ),
        )
        objects.create_cluster_custom_object(GROUP, VERSION, "memberclusters", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "MemberCluster",
            "metadata": {"name": name, "labels": {"continuum.dev/member": name}},
            "spec": {"tier": "Edge", "site": "edge-a", "region": "eu-west", "mode": "Pull",
                     "agent": {"leaseDurationSeconds": 10, "renewIntervalSeconds": RENEW_S,
                               "fenceAfterSeconds": 10}},
        })  # fmt: skip
        yield made
    finally:
        try:
            objects.delete_cluster_custom_object(GROUP, VERSION, "memberclusters", name)
        except ApiException as error:
            if error.status != 404:
                raise
        client.CoreV1Api(hub).delete_namespace(made.namespace)


@pytest.fixture(scope="module")
def running_agent(
    testbed: RunningTestbed, pull_member: PullMember, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentProcess]:
    """The agent with the admin credential of the hub (join's own is someone else's test)."""
    agent = AgentProcess(
        pull_member.name, pull_member.cluster.kubeconfig, testbed.hub.kubeconfig,
        tmp_path_factory.mktemp("agent") / "log", ["--resync-interval", str(RESYNC_S)],
    )  # fmt: skip
    agent.start()
    try:
        yield agent
    finally:
        if agent.process is not None:
            assert agent.stop() == 0, "SIGTERM is a clean stop"


@pytest.fixture
def agent(running_agent: AgentProcess) -> Iterator[AgentProcess]:
    """The module's agent, running (a test that killed it and failed left it stopped)."""
    if not running_agent.is_running():
        running_agent.process = None
        running_agent.start()
    yield running_agent
    assert "Traceback" not in running_agent.log_text(), running_agent.log_text()[-3000:]


@pytest.fixture
def job_namespace(pull_member: PullMember) -> Iterator[str]:
    """A namespace of the test's own for its jobs; the agent makes it in the member."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    yield name
    for work in list_works(pull_member):
        if work["spec"]["jobRef"]["namespace"] == name:
            delete_work(pull_member, work["metadata"]["name"])
    try:
        client.CoreV1Api(pull_member.member).delete_namespace(name)
    except ApiException as error:
        if error.status != 404:
            raise


@pytest.fixture
def kuberay(pull_member: PullMember, job_namespace: str) -> Iterator[None]:
    """KubeRay's stand-in, starting every shard resource in the test's namespace to Running."""
    stop = threading.Event()
    thread = threading.Thread(
        target=kuberay_sim.run, args=(pull_member.member, stop, job_namespace), daemon=True
    )
    thread.start()
    yield
    stop.set()
    thread.join(timeout=10)


# ---------------------------------------------------------------------------------------------
# The hub's side, as the test plays it


def make_job(namespace: str, name: str, shards: int) -> MLJob:
    return MLJob.model_validate({
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "MLJob",
        "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()),
                     "generation": 1},
        "spec": {"mode": "Training", "tenant": "team-a",
                 "shards": {"count": shards, "resources": {"cpu": "1", "memory": "1Gi"}},
                 "ray": {"image": "rayproject/ray:2.50.0", "entrypoint": "python train.py"}},
    })  # fmt: skip


def work_spec(member: PullMember, job: MLJob, epoch: int, shards: dict[int, int]) -> dict[str, Any]:
    """The work's spec of Placement epoch `epoch`, listing shard -> the epoch it was placed at."""
    resources = []
    for shard, shard_epoch in sorted(shards.items()):
        manifest = build_shard_resource(job, shard, shard_epoch)
        resources.append({
            "kind": manifest["kind"], "name": manifest["metadata"]["name"], "shard": shard,
            "epoch": shard_epoch, "onDisconnect": "Fence", "manifest": manifest,
        })  # fmt: skip
    return {
        "member": member.name,
        "jobRef": {"namespace": job.metadata.namespace, "name": job.metadata.name,
                   "uid": job.metadata.uid},
        "placementEpoch": epoch,
        "resources": resources,
    }  # fmt: skip


def create_work(member: PullMember, job: MLJob, spec: dict[str, Any]) -> str:
    name = work_name(job.metadata.namespace or "", job.metadata.name or "")
    labels = {"continuum.dev/member": member.name, "continuum.dev/job": job.metadata.name or "",
              "continuum.dev/job-uid": job.metadata.uid or "",
              "continuum.dev/managed-by": "continuum"}  # fmt: skip
    client.CustomObjectsApi(member.hub).create_namespaced_custom_object(
        GROUP, VERSION, member.namespace, WORKS,
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MemberWork",
         "metadata": {"name": name, "labels": labels}, "spec": spec},
    )  # fmt: skip
    return name


def update_work(member: PullMember, name: str, spec: dict[str, Any]) -> int:
    """Replaces the work's spec (a merge patch replaces lists whole); returns its generation."""
    written: Any = client.CustomObjectsApi(member.hub).patch_namespaced_custom_object(
        GROUP, VERSION, member.namespace, WORKS, name, {"spec": spec},
        _content_type="application/merge-patch+json",
    )  # fmt: skip
    generation: int = written["metadata"]["generation"]
    return generation


def get_work(member: PullMember, name: str) -> dict[str, Any] | None:
    try:
        found: Any = client.CustomObjectsApi(member.hub).get_namespaced_custom_object(
            GROUP, VERSION, member.namespace, WORKS, name
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return dict(found)


def list_works(member: PullMember) -> list[dict[str, Any]]:
    listed: Any = client.CustomObjectsApi(member.hub).list_namespaced_custom_object(
        GROUP, VERSION, member.namespace, WORKS
    )
    return list(listed["items"])


def delete_work(member: PullMember, name: str) -> None:
    try:
        client.CustomObjectsApi(member.hub).delete_namespaced_custom_object(
            GROUP, VERSION, member.namespace, WORKS, name
        )
    except ApiException as error:
        if error.status != 404:
            raise


def current_report(member: PullMember, name: str) -> dict[str, Any] | None:
    """The work's status, once it describes the work's current generation."""
    work = get_work(member, name)
    status = (work or {}).get("status") or {}
    if work is None or status.get("observedGeneration") != work["metadata"]["generation"]:
        return None
    return work


def rayjobs(member: PullMember, job: MLJob) -> list[dict[str, Any]]:
    """The job's RayJobs in the member cluster."""
    listed: Any = client.CustomObjectsApi(member.member).list_namespaced_custom_object(
        RAY_JOB.group, RAY_JOB.version, job.metadata.namespace, RAY_JOB.plural,
        label_selector=job_selector(job.metadata.name or ""),
    )  # fmt: skip
    return sorted(listed["items"], key=lambda item: item["metadata"]["name"])


def reported_states(work: dict[str, Any]) -> dict[str, ShardState]:
    """Resource name -> its shard state, as the hub reads the agent's report."""
    return {
        entry["name"]: observe_shard(entry["observed"]).state
        for entry in work["status"].get("resources", [])
    }


def lease_spec(member: PullMember) -> dict[str, Any]:
    lease: Any = client.CustomObjectsApi(member.hub).get_namespaced_custom_object(
        "coordination.k8s.io", "v1", member.namespace, "leases", AGENT_NAME
    )
    spec: dict[str, Any] = lease["spec"]
    return spec


# ---------------------------------------------------------------------------------------------
# Tests


def test_the_agent_renews_its_lease_and_reports_its_cluster(
    testbed: RunningTestbed, pull_member: PullMember, agent: AgentProcess
) -> None:
    first = eventually(lambda: lease_spec(pull_member).get("renewTime"), "a first renewal")
    later = eventually(
        lambda: (renewed := lease_spec(pull_member).get("renewTime")) and renewed > first,
        "the renewal time to advance",
    )
    assert later
    spec = lease_spec(pull_member)
    # The MemberCluster's times, and who holds the lease: this member, this process.
    assert spec["leaseDurationSeconds"] == 10
    assert spec["holderIdentity"].startswith(f"{pull_member.name}/")
    assert spec["holderIdentity"].endswith(f"/{agent.pid}")

    def report() -> dict[str, Any] | None:
        """The report the agent's renewals carry, for the operator to put in status.agent."""
        lease: Any = client.CustomObjectsApi(pull_member.hub).get_namespaced_custom_object(
            "coordination.k8s.io", "v1", pull_member.namespace, "leases", AGENT_NAME
        )
        text = (lease["metadata"].get("annotations") or {}).get(AGENT_REPORT_ANNOTATION)
        found = json.loads(text) if text else None
        return found if found and found.get("hubRttMs") else None

    reported = eventually(report, "the agent's report with its round trip to the hub")
    assert AgentReport.model_validate(reported).cluster_id == reported["clusterID"]
    kube_system = client.CoreV1Api(pull_member.member).read_namespace("kube-system")
    assert reported["clusterID"] == kube_system.metadata.uid
    assert reported["kubernetesVersion"] == "v1.37.2"
    assert reported["version"] == continuum.__version__
    # The testbed's members run no kubelet: no nodes, so nothing allocatable.
    assert (reported["nodes"], reported["nodesReady"]) == (0, 0)
    assert "allocatable" not in reported
    assert 0 < reported["hubRttMs"] < 5000
    assert reported["fencedShards"] == 0 and reported["reportTime"]

    metrics = agent.metrics()
    assert 0 <= metrics["continuum_agent_lease_age_seconds"] < 3 * RENEW_S
    assert 0 < metrics["continuum_agent_hub_rtt_seconds"] < 5


def test_a_work_is_applied_reported_and_its_resource_deleted_only_with_proof(
    pull_member: PullMember, agent: AgentProcess, job_namespace: str, kuberay: None
) -> None:
    job = make_job(job_namespace, "train", shards=2)
    name = create_work(pull_member, job, work_spec(pull_member, job, 2, {0: 2}))

    # Applied in the member, started by KubeRay, and reported back as the hub reads it.
    def running() -> dict[str, Any] | None:
        work = current_report(pull_member, name)
        return work if work and reported_states(work) == {"train-0": ShardState.RUNNING} else None

    work = eventually(running, "the RayJob reported Running")
    assert (condition(work, "Applied") or {}).get("status") == "True"
    (rayjob,) = rayjobs(pull_member, job)
    held_uid = rayjob["metadata"]["uid"]
    (entry,) = work["status"]["resources"]
    assert (entry["kind"], entry["shard"], entry["epoch"]) == ("RayJob", 0, 2)
    assert entry["observed"]["metadata"]["uid"] == held_uid
    assert "spec" not in entry["observed"]
    assert rayjob["metadata"]["labels"][SHARD_LABELS.epoch] == "2"
    managers = {(f["manager"], f.get("subresource")) for f in work["metadata"]["managedFields"]}
    assert ("continuum-agent", "status") in managers

    # A work of an older epoch that drops it (a hub restored from a backup): kept, and said so.
    generation = update_work(pull_member, name, {"placementEpoch": 1, "resources": []})
    work = eventually(lambda: current_report(pull_member, name), "the older work's report")
    assert work["metadata"]["generation"] == generation
    applied = condition(work, "Applied") or {}
    assert (applied.get("status"), applied.get("reason")) == ("False", "Applying")
    assert "placementEpoch 1 is older than its epoch 2" in applied.get("message", "")
    assert [item["metadata"]["uid"] for item in rayjobs(pull_member, job)] == [held_uid]
    assert list(reported_states(work)) == ["train-0"]  # the hub knows the member holds it

    # A work of a later epoch that drops it: deleted, and reported gone.
    update_work(pull_member, name, {"placementEpoch": 3, "resources": []})
    eventually(lambda: rayjobs(pull_member, job) == [], "the dropped RayJob deleted")

    def emptied() -> dict[str, Any] | None:
        work = current_report(pull_member, name)
        applied = condition(work, "Applied") or {}
        return work if work and applied.get("status") == "True" else None

    assert eventually(emptied, "the work reported empty")["status"].get("resources", []) == []

    # Listed again at a later epoch, then the work deleted outright (a hub wiped): kept.
    update_work(pull_member, name, work_spec(pull_member, job, 4, {0: 4}))
    work = eventually(running, "the RayJob of epoch 4 reported Running")
    (again,) = rayjobs(pull_member, job)
    assert again["metadata"]["labels"][SHARD_LABELS.epoch] == "4"
    delete_work(pull_member, name)
    # KubeRay moves it on (an event the agent hears), and the agent resyncs every RESYNC_S.
    kuberay_sim.advance(pull_member.member, job_namespace, to=kuberay_sim.Target.SUCCEEDED)
    deadline = time.monotonic() + 4 * RESYNC_S
    while time.monotonic() < deadline:
        held = rayjobs(pull_member, job)
        assert [item["metadata"]["uid"] for item in held] == [again["metadata"]["uid"]]
        time.sleep(0.25)
    assert held[0]["status"]["jobDeploymentStatus"] == "Complete"


def test_an_agent_killed_mid_convergence_converges_after_its_restart_with_no_duplicate(
    pull_member: PullMember, agent: AgentProcess, job_namespace: str, kuberay: None
) -> None:
    shards = 8
    job = make_job(job_namespace, "killed", shards=shards)
    lease_before = eventually(
        lambda: (
            (spec := lease_spec(pull_member)).get("holderIdentity", "").endswith(f"/{agent.pid}")
            and spec
        ),
        "the agent holding the lease",
    )
    name = create_work(
        pull_member, job, work_spec(pull_member, job, 1, dict.fromkeys(range(shards), 1))
    )
    first = wait_until(lambda: rayjobs(pull_member, job), "a first RayJob", WAIT_S, interval=0.005)
    assert agent.stop(signal.SIGKILL) == -signal.SIGKILL
    before = {
        item["metadata"]["name"]: item["metadata"]["uid"] for item in rayjobs(pull_member, job)
    }
    assert len(first) >= 1 and before
    agent.start()

    def converged() -> dict[str, Any] | None:
        work = current_report(pull_member, name)
        states = reported_states(work) if work else {}
        if len(states) == shards and set(states.values()) == {ShardState.RUNNING}:
            return work
        return None

    work = eventually(converged, "every shard reported Running after the restart")
    assert (condition(work, "Applied") or {}).get("status") == "True"
    held = rayjobs(pull_member, job)
    # One resource per shard, and the ones made before the kill are the same objects.
    assert sorted(item["metadata"]["labels"][SHARD_LABELS.shard] for item in held) == sorted(
        str(shard) for shard in range(shards)
    )
    uids = {item["metadata"]["name"]: item["metadata"]["uid"] for item in held}
    assert {name: uids[name] for name in before} == before
    # The restarted process holds the lease now: a transition.
    lease = eventually(
        lambda: (
            (spec := lease_spec(pull_member))["holderIdentity"].endswith(f"/{agent.pid}") and spec
        ),
        "the restarted agent holding the lease",
    )
    assert lease["leaseTransitions"] == lease_before.get("leaseTransitions", 0) + 1
    print(f"killed with {len(before)} of {shards} RayJobs created")
