"""The operator's side of a Pull member, on the testbed: the member's liveness from its Lease,
its shards written as a MemberWork and their state read back from the agent's report, its
eviction only after the lease, the fencing time and the margin, and nothing deleted or
dropped without the agent's word.

The test plays the agent, as the operator would see it: it renews the member's Lease and
reports on the MemberWork's status. (The agent itself, and its own tests, are
`continuum agent` and tests/integration/test_agent.py.) The push members are the testbed's,
with e2e/kuberay_sim.py running their shards, and take the shard when the Pull member is lost.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client, config

from e2e import kuberay_sim
from e2e.mljobs import training_job
from e2e.operator_process import REPO, Operator, member_api
from e2e.pytest_plugin import RunningTestbed
from e2e.pytest_plugin import eventually as wait_until
from e2e.registration import register_members

pytestmark = pytest.mark.integration

GROUP, VERSION = "continuum.dev", "v1alpha1"
PULLED = "played-munich"  # its own name: test_pull_member.py joins another
NAMESPACE = f"continuum-member-{PULLED}"
PUSH_MEMBERS = ("member-1", "member-2", "member-3", "member-4")
LEASE_S, FENCE_S, MARGIN_S = 15, 15, 5
POLL_S = 0.2


def eventually(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    return wait_until(check, what, timeout, interval=POLL_S)


def micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class PlayedAgent:
    """Renews the Pull member's Lease every second while `renewing` is set, as its agent would."""

    def __init__(self, api: client.ApiClient) -> None:
        self.leases = client.CoordinationV1Api(api)
        self.objects = client.CustomObjectsApi(api)
        self.renewing = threading.Event()
        self.stop = threading.Event()
        self.last_renewed = 0.0  # monotonic
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            if self.renewing.is_set():
                self.leases.patch_namespaced_lease(
                    "agent", NAMESPACE,
                    {"spec": {"holderIdentity": f"{PULLED}-test",
                              "renewTime": micro_time(datetime.now(UTC)),
                              "leaseDurationSeconds": LEASE_S}},
                )  # fmt: skip
                self.last_renewed = time.monotonic()

    def work(self, namespace: str, job: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.objects.get_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, "memberworks", f"{namespace}.{job}"
            )
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise
        return found

    def report(self, work: dict[str, Any], state: str | None) -> None:
        """Reports that the member holds every resource the work lists, its RayJob in
        `state` (None: holds nothing), as of the work's generation."""
        resources = []
        for entry in work["spec"]["resources"] if state is not None else []:
            observed = copy.deepcopy(entry["manifest"])
            observed["metadata"]["uid"] = str(uuid.uuid4())
            observed["status"] = {"jobDeploymentStatus": "Running", "jobStatus": state}
            resources.append({"kind": entry["kind"], "name": entry["name"],
                              "shard": entry["shard"], "epoch": entry["epoch"],
                              "observed": observed})  # fmt: skip
        status = {
            "observedGeneration": work["metadata"]["generation"],
            "resources": resources,
            "reportTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        self.objects.patch_namespaced_custom_object_status(
            GROUP, VERSION, NAMESPACE, "memberworks", work["metadata"]["name"], {"status": status}
        )


@pytest.fixture(scope="module")
def hub_api(testbed: RunningTestbed) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(testbed.hub.kubeconfig))
    yield api
    api.close()


@pytest.fixture(scope="module")
def agent(
    testbed: RunningTestbed, hub_api: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PlayedAgent]:
    register_members([testbed.hub, *testbed.members], None)
    testbed.kubectl("apply", "-f", str(REPO / "examples" / "tenants.yaml"))
    pulled = [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": NAMESPACE, "labels": {"continuum.dev/member": PULLED}}},
        {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
         "metadata": {"name": "agent", "namespace": NAMESPACE,
                      "labels": {"continuum.dev/member": PULLED}},
         "spec": {"leaseDurationSeconds": LEASE_S}},
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MemberCluster",
         "metadata": {"name": PULLED},
         "spec": {"tier": "Edge", "site": "munich", "region": "eu-central", "mode": "Pull",
                  "capacity": {"cpu": "8", "memory": "32Gi"},
                  "agent": {"leaseDurationSeconds": LEASE_S, "renewIntervalSeconds": 5,
                            "fenceAfterSeconds": FENCE_S}}},
    ]  # fmt: skip
    testbed.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                                          "items": pulled}))  # fmt: skip
    running = Operator(testbed.hub.kubeconfig, tmp_path_factory.mktemp("pull") / "operator.log")
    running.start()
    stop = threading.Event()
    apis = [member_api(testbed, name) for name in PUSH_MEMBERS]
    sims = [threading.Thread(target=kuberay_sim.run, args=(api, stop), daemon=True)
            for api in apis]  # fmt: skip
    for sim in sims:
        sim.start()
    played = PlayedAgent(hub_api)
    played.thread.start()
    try:
        yield played
    finally:
        played.stop.set()
        stop.set()
        for sim in sims:
            sim.join(timeout=10)
        for api in apis:
            api.close()
        # Deleted while the operator runs, whose deletion handler lets it go; the played agent
        # holds nothing by now.
        testbed.kubectl("delete", "membercluster", PULLED, "--timeout=60s", check=False)
        if running.process is not None:
            running.stop()


def get(api: client.ApiClient, *path: str) -> dict[str, Any]:
    objects = client.CustomObjectsApi(api)
    if len(path) == 2:
        found: dict[str, Any] = objects.get_cluster_custom_object(GROUP, VERSION, *path)
    else:
        found = objects.get_namespaced_custom_object(GROUP, VERSION, *path)
    return found


def condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    conditions = (body.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind), {})


def member_condition(api: client.ApiClient, kind: str) -> tuple[str, str]:
    found = condition(get(api, "memberclusters", PULLED), kind)
    return found.get("status", ""), found.get("reason", "")


def test_a_pull_members_lease_makes_it_ready_and_its_work_carries_the_shards(
    testbed: RunningTestbed, hub_api: client.ApiClient, agent: PlayedAgent, namespace: str
) -> None:
    assert eventually(lambda: member_condition(hub_api, "Reachable")[0] == "False" or None,
                      "the member not reachable before its agent renews")  # fmt: skip
    assert member_condition(hub_api, "Reachable") == ("False", "AgentNeverConnected")
    agent.renewing.set()
    eventually(lambda: member_condition(hub_api, "Ready") == ("True", "CapacityKnown"),
               "the member Ready once its lease is renewed")  # fmt: skip
    assert member_condition(hub_api, "Reachable") == ("True", "LeaseRenewed")

    job = f"pull-{uuid.uuid4().hex[:6]}"
    testbed.kubectl("apply", "-f", "-", stdin=json.dumps(training_job(job, namespace, "munich")))
    work = eventually(lambda: agent.work(namespace, job), "the job's MemberWork")
    assert work["spec"]["member"] == PULLED
    assert work["spec"]["jobRef"]["name"] == job
    (resource,) = work["spec"]["resources"]
    assert (resource["kind"], resource["shard"], resource["onDisconnect"]) == ("RayJob", 0, "Fence")
    assert resource["manifest"]["metadata"]["namespace"] == namespace
    placement = get(hub_api, namespace, "placements", job)
    assert placement["spec"]["decisions"][0]["cluster"] == PULLED
    assert get(hub_api, namespace, "mljobs", job).get("status", {}).get("phase") != "Running"

    agent.report(work, "RUNNING")
    eventually(lambda: get(hub_api, namespace, "mljobs", job).get("status", {}).get("phase")
               == "Running", f"{job} Running from the agent's report")  # fmt: skip
    eventually(lambda: condition(get(hub_api, namespace, "placements", job), "Applied")
               .get("status") == "True", "its Placement Applied")  # fmt: skip
    generation = work["metadata"]["generation"]
    time.sleep(3)  # passes come and go: the work is not written again
    assert (agent.work(namespace, job) or {})["metadata"]["generation"] == generation

    # The agent falls silent: lost after its lease, its shard moved only after the lease, the
    # fencing time and the margin, counted from the last renewal.
    agent.renewing.clear()
    time.sleep(1.5)  # a renewal in flight lands
    silent = agent.last_renewed
    seen: dict[str, float] = {}
    while time.monotonic() < silent + 90 and "moved" not in seen:
        now = time.monotonic() - silent
        if "lost" not in seen and member_condition(hub_api, "Reachable")[0] == "False":
            seen["lost"] = now
        decisions = get(hub_api, namespace, "placements", job)["spec"]["decisions"]
        if decisions and decisions[0]["cluster"] != PULLED:
            seen["moved"] = now
            target = decisions[0]["cluster"]
        time.sleep(POLL_S)
    print(
        f"\nafter the last renewal: lost after {seen.get('lost', -1):.1f} s, shard moved after "
        f"{seen.get('moved', -1):.1f} s (lease {LEASE_S} + fence {FENCE_S} + margin {MARGIN_S})"
    )
    assert "moved" in seen, seen
    assert LEASE_S - 1 <= seen["lost"] <= LEASE_S + 4, seen
    assert seen["moved"] >= LEASE_S + FENCE_S + MARGIN_S - 0.5, seen
    assert seen["moved"] <= LEASE_S + FENCE_S + 15, seen
    assert target == "member-4"  # its region's other member
    assert member_condition(hub_api, "Reachable") == ("False", "LeaseExpired")
    migrations = get(hub_api, namespace, "placements", job)["spec"]["migrations"]
    assert [(m["from"], m["reason"]) for m in migrations] == [(PULLED, "Failure")]
    # The work now lists nothing, at an epoch no older than the copy's: proof for the agent.
    emptied = eventually(lambda: (w := agent.work(namespace, job)) and not w["spec"]["resources"]
                         and w, "the work emptied")  # fmt: skip
    assert emptied["spec"]["placementEpoch"] >= resource["epoch"]

    # It comes back: until its agent says the copy is gone, the work stays.
    agent.renewing.set()
    eventually(lambda: member_condition(hub_api, "Reachable")[0] == "True", "the member back")
    time.sleep(3)
    assert agent.work(namespace, job) is not None
    # The member's new session reaches the work once its return has settled.
    session = get(hub_api, "memberclusters", PULLED)["status"]["sessionEpoch"]
    assert session >= 1
    current = eventually(lambda: (w := agent.work(namespace, job)) and
                         w["spec"].get("sessionEpoch") == session and w,
                         "the work of the new session")  # fmt: skip
    assert current["spec"]["resources"] == []
    agent.report(current, None)
    eventually(lambda: agent.work(namespace, job) is None, "the work deleted once emptied")


def test_a_deleted_job_waits_for_the_agent_to_remove_its_shards(
    testbed: RunningTestbed, hub_api: client.ApiClient, agent: PlayedAgent, namespace: str
) -> None:
    agent.renewing.set()
    eventually(lambda: member_condition(hub_api, "Ready") == ("True", "CapacityKnown"),
               "the member Ready")  # fmt: skip
    job = f"pull-{uuid.uuid4().hex[:6]}"
    testbed.kubectl("apply", "-f", "-", stdin=json.dumps(training_job(job, namespace, "munich")))
    work = eventually(lambda: agent.work(namespace, job), "the job's MemberWork")
    agent.report(work, "RUNNING")
    eventually(lambda: get(hub_api, namespace, "mljobs", job).get("status", {}).get("phase")
               == "Running", f"{job} Running")  # fmt: skip
    testbed.kubectl("delete", "mljob", job, "-n", namespace, "--wait=false")
    tombstone = eventually(lambda: (w := agent.work(namespace, job)) and w["spec"]["jobDeleted"]
                           and w, "the work marked deleted")  # fmt: skip
    assert tombstone["spec"]["resources"] == []
    time.sleep(3)
    pending = get(hub_api, namespace, "mljobs", job)["status"].get("pendingCleanup")
    assert pending == [PULLED]
    agent.report(tombstone, None)
    eventually(lambda: agent.work(namespace, job) is None, "the work deleted")

    def job_gone() -> bool:
        try:
            get(hub_api, namespace, "mljobs", job)
        except client.ApiException as error:
            return error.status == 404
        return False

    eventually(job_gone, "the job's deletion finished")
