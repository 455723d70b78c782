"""The vertical slice on the testbed: `continuum operator run` against the hub, the examples
applied with kubectl, shard resources in the members, status back in the hub.

The operator runs as the user runs it, a separate process, so that the tests can stop it with
SIGTERM and kill it with SIGKILL. e2e/kuberay_sim.py plays KubeRay in the members.
"""

from __future__ import annotations

import base64
import json
import random
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from e2e import kuberay_sim
from e2e.binaries import kubectl
from e2e.operator_process import REPO, Operator, condition, get_json, member_api
from e2e.pytest_plugin import RunningTestbed
from e2e.pytest_plugin import eventually as wait_until
from e2e.registration import register_members

pytestmark = pytest.mark.integration

EXAMPLES = REPO / "examples"
WAIT_S = 60.0


def eventually(check: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    # Each check runs kubectl, so poll less often than the shared default.
    return wait_until(check, what, timeout, interval=0.2)


@pytest.fixture(scope="module")
def operator(
    testbed: RunningTestbed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    register_members([testbed.hub, *testbed.members], None)
    testbed.kubectl("apply", "-f", str(EXAMPLES / "tenants.yaml"))
    testbed.kubectl("apply", "-f", str(EXAMPLES / "memberclusters.yaml"))
    running = Operator(testbed.hub.kubeconfig, tmp_path_factory.mktemp("operator") / "log")
    running.start()
    try:
        yield running
    finally:
        if running.process is not None:
            running.stop()


def shard_resources(testbed: RunningTestbed, kind: str, job: str) -> dict[str, list[str]]:
    """Member name -> names of the job's resources of `kind` there."""
    found = {}
    for member in testbed.members:
        listed = get_json(testbed, kind, "-n", "default", "-l", f"continuum.dev/job={job}",
                          cluster=member)  # fmt: skip
        found[member.name] = sorted(item["metadata"]["name"] for item in listed["items"])
    return found


def placement_of(testbed: RunningTestbed, job: str) -> dict[str, Any] | None:
    """The spec of the job's Placement, once it is this incarnation's (same uid)."""
    uid = (get_json(testbed, "mljob", job, "-n", "default") or {}).get("metadata", {}).get("uid")
    spec = (get_json(testbed, "placement", job, "-n", "default") or {}).get("spec")
    return spec if uid and spec and spec["jobRef"].get("uid") == uid else None


def one_rayjob_per_member(testbed: RunningTestbed, job: str) -> dict[str, list[str]] | None:
    found = shard_resources(testbed, "rayjobs", job)
    return found if all(len(names) == 1 for names in found.values()) else None


def test_members_become_reachable(testbed: RunningTestbed, operator: Operator) -> None:
    def all_reachable() -> bool:
        items = get_json(testbed, "memberclusters")["items"]
        return len(items) == 4 and all(
            (condition(item, "Reachable") or {}).get("status") == "True" for item in items
        )

    eventually(all_reachable, "every member to be Reachable")
    member = get_json(testbed, "membercluster", "member-1")
    assert member["status"]["kubernetesVersion"] == "v1.37.2"
    assert member["status"]["allocatableSource"] == "Declared"
    assert condition(member, "Ready")["status"] == "True"
    assert member["status"]["lastHeartbeatTime"]
    # Every member probed and its shard resources mirrored: ready, and alive.
    assert eventually(lambda: operator.probe("/readyz") == (200, "ok\n"), "the operator ready")
    assert operator.probe("/healthz") == (200, "ok\n")


def test_federated_job_is_placed_deployed_and_reports_running(
    testbed: RunningTestbed, operator: Operator
) -> None:
    testbed.kubectl("apply", "-f", str(EXAMPLES / "mljob-federated.yaml"))
    placement = eventually(lambda: placement_of(testbed, "hvac-fedavg"), "the Placement")
    decisions = {decision["shard"]: decision for decision in placement["decisions"]}
    assert sorted(decisions) == [0, 1, 2, 3]
    # residency=Site keeps each participant at its data's site; the aggregator goes to the cloud.
    assert [decisions[index]["cluster"] for index in range(4)] == [
        "member-1", "member-2", "member-3", "member-4",
    ]  # fmt: skip
    assert all(decision["reasons"] for decision in decisions.values())
    owner = get_json(testbed, "placement", "hvac-fedavg", "-n", "default")["metadata"]
    assert owner["ownerReferences"][0]["kind"] == "MLJob"

    eventually(lambda: one_rayjob_per_member(testbed, "hvac-fedavg"), "one RayJob per member")
    for member in testbed.members:
        api = member_api(testbed, member.name)
        kuberay_sim.advance(api, "default", to=kuberay_sim.Target.RUNNING)
        api.close()

    def running() -> Any:
        job = get_json(testbed, "mljob", "hvac-fedavg", "-n", "default")
        status = job.get("status", {})
        return status if status.get("phase") == "Running" and status.get("ready") == "4/4" else None

    status = eventually(running, "MLJob phase Running with 4/4 ready")
    assert [shard["state"] for shard in status["shards"]] == ["Running"] * 4
    assert condition({"status": status}, "Ready")["status"] == "True"
    applied = get_json(testbed, "placement", "hvac-fedavg", "-n", "default")["status"]
    assert applied["appliedEpoch"] == placement["epoch"]


def test_inference_job_gets_a_rayservice_near_its_data(
    testbed: RunningTestbed, operator: Operator
) -> None:
    testbed.kubectl("apply", "-f", str(EXAMPLES / "mljob-inference.yaml"))

    def served() -> dict[str, list[str]] | None:
        found = shard_resources(testbed, "rayservices", "defect-detector")
        return found if sum(len(names) for names in found.values()) == 1 else None

    found = eventually(served, "one RayService")
    # residency=Region keeps it in eu-west, and the 50 ms SLO favours the data's own site.
    assert found["member-1"], found
    placement = eventually(lambda: placement_of(testbed, "defect-detector"), "the Placement")
    assert placement["decisions"][0]["cluster"] == "member-1"


def test_a_finalizer_left_on_a_placement_by_an_older_operator_is_taken_off(
    testbed: RunningTestbed, operator: Operator
) -> None:
    """An older operator's Kopf may have left the cleanup finalizer on a Placement; nothing
    else takes it off, and the namespace would never be deleted."""
    eventually(lambda: placement_of(testbed, "defect-detector"), "the Placement")
    stale = {"metadata": {"finalizers": ["continuum.dev/cleanup"]}}
    testbed.kubectl("patch", "placement", "defect-detector", "-n", "default", "--type=merge",
                    "-p", json.dumps(stale))  # fmt: skip
    eventually(
        lambda: not get_json(testbed, "placement", "defect-detector", "-n", "default")["metadata"]
        .get("finalizers"),
        "the operator to take the finalizer off",
    )  # fmt: skip


def test_a_shard_resource_whose_job_is_gone_is_swept(
    testbed: RunningTestbed, operator: Operator
) -> None:
    """What a job deleted before its finalizer was set would leave in a member."""
    labels = {"continuum.dev/managed-by": "continuum", "continuum.dev/job": "ghost",
              "continuum.dev/job-uid": "0000", "continuum.dev/shard": "0"}  # fmt: skip
    orphan = {
        "apiVersion": "ray.io/v1", "kind": "RayJob",
        "metadata": {"name": "ghost-0", "namespace": "default", "labels": labels,
                     "annotations": {"continuum.dev/job-name": "ghost"}},
        "spec": {"entrypoint": "python t.py"},
    }  # fmt: skip
    member = testbed.members[0]
    testbed.kubectl("apply", "-f", "-", stdin=json.dumps(orphan), cluster=member)
    eventually(
        lambda: shard_resources(testbed, "rayjobs", "ghost")[member.name] == [],
        "the orphan to be swept",
    )


def test_invalid_job_is_refused_at_apply_naming_the_field(testbed: RunningTestbed) -> None:
    refused = kubectl(testbed.hub.kubeconfig, "apply", "-f", str(EXAMPLES / "mljob-invalid.yaml"),
                      check=False)  # fmt: skip
    assert refused.returncode != 0
    assert "spec.shards.minAvailable" in refused.stderr
    assert "shards.minAvailable must not exceed shards.count" in refused.stderr
    assert get_json(testbed, "mljob", "too-big-gang", "-n", "default") is None


def test_the_webhook_refuses_a_job_whose_tenant_does_not_exist(
    testbed: RunningTestbed, operator: Operator
) -> None:
    eventually(
        lambda: get_json(testbed, "validatingwebhookconfiguration", "continuum.dev"),
        "the operator to register its webhook",
    )
    manifest = (EXAMPLES / "mljob-inference.yaml").read_text()
    manifest = manifest.replace("defect-detector", "orphan").replace("production", "nobody")

    def refused() -> str:
        result = kubectl(testbed.hub.kubeconfig, "apply", "-f", "-", stdin=manifest, check=False)
        if result.returncode == 0:
            # The API server had not loaded the new webhook configuration yet, so the job went
            # in (failure policy Ignore): remove it, or the next apply changes nothing and is
            # never sent to the webhook.
            testbed.kubectl("delete", "mljob", "orphan", "-n", "default", "--wait=false")
        return result.stderr if result.returncode else ""

    message = eventually(refused, "the webhook to refuse the job")
    assert "admission webhook" in message
    assert "spec.tenant: no Tenant named 'nobody'" in message
    assert get_json(testbed, "mljob", "orphan", "-n", "default") is None


def test_decisions_are_events_and_metrics(testbed: RunningTestbed, operator: Operator) -> None:
    def reasons() -> set[str]:
        events = get_json(testbed, "events", "-n", "default",
                          "--field-selector", "involvedObject.name=defect-detector")  # fmt: skip
        return {event["reason"] for event in events["items"]}

    # Events are sent by a queue of their own, behind the status write that announces them.
    wait_until(lambda: "Placed" in reasons(), "a Placed Event on the job", timeout=60)
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics") as response:
        exposition = response.read().decode()
    cycles = next(
        line for line in exposition.splitlines()
        if line.startswith("continuum_scheduling_cycle_seconds_count")
    )  # fmt: skip
    assert float(cycles.split()[-1]) > 0
    assert "continuum_pending_shards" in exposition


def test_suspend_removes_the_shards_and_keeps_the_job(
    testbed: RunningTestbed, operator: Operator
) -> None:
    patch = json.dumps({"spec": {"suspend": True}})
    testbed.kubectl(
        "patch", "mljob", "defect-detector", "-n", "default", "--type=merge", "-p", patch
    )

    def suspended() -> bool:
        job = get_json(testbed, "mljob", "defect-detector", "-n", "default")
        gone = not any(shard_resources(testbed, "rayservices", "defect-detector").values())
        return gone and job["status"].get("phase") == "Suspended"

    eventually(suspended, "the RayService to go and the phase to be Suspended")
    patch = json.dumps({"spec": {"suspend": False}})
    testbed.kubectl(
        "patch", "mljob", "defect-detector", "-n", "default", "--type=merge", "-p", patch
    )
    eventually(
        lambda: any(shard_resources(testbed, "rayservices", "defect-detector").values()),
        "the RayService to come back after resuming",
    )


def test_operator_restarts_converge_without_duplicates(
    testbed: RunningTestbed, operator: Operator
) -> None:
    """SIGKILL at arbitrary points while a job is being placed and deployed, then a restart:
    every shard resource exists exactly once, where the Placement says."""
    manifest = (EXAMPLES / "mljob-federated.yaml").read_text().replace("hvac-fedavg", "restarted")
    testbed.kubectl("apply", "-f", "-", stdin=manifest)
    # Random points in the create, place and deploy path; seeded, so a failure can be replayed.
    delays = random.Random(20261201).sample([0.1, 0.3, 0.5, 0.8, 1.2, 1.5, 2.0], 3)
    for delay in delays:
        time.sleep(delay)
        assert operator.stop(signal.SIGKILL) == -signal.SIGKILL
        operator.start()

    found = eventually(
        lambda: one_rayjob_per_member(testbed, "restarted"), "one RayJob per member after restarts"
    )
    placement = eventually(lambda: placement_of(testbed, "restarted"), "the Placement")
    by_cluster = {decision["cluster"] for decision in placement["decisions"]}
    assert by_cluster == set(found)
    assert operator.stop(signal.SIGTERM) == 0
    operator.start()


def test_deleting_a_job_cleans_every_member(testbed: RunningTestbed, operator: Operator) -> None:
    testbed.kubectl("delete", "mljob", "hvac-fedavg", "restarted", "-n", "default", "--timeout=60s")
    assert get_json(testbed, "mljob", "hvac-fedavg", "-n", "default") is None
    for job in ("hvac-fedavg", "restarted"):
        assert all(not names for names in shard_resources(testbed, "rayjobs", job).values())

    eventually(
        lambda: get_json(testbed, "placement", "hvac-fedavg", "-n", "default") is None,
        "the garbage collector to remove the Placement",
    )


def test_a_deletion_made_while_the_operator_was_down_cleans_every_member(
    testbed: RunningTestbed, operator: Operator
) -> None:
    """The restarted operator's first passes come as the hub's MLJobs are listed, before its
    MemberClusters may be: a deletion acted on then would see no member holding shards, and
    release the finalizer over them."""
    manifest = (EXAMPLES / "mljob-federated.yaml").read_text().replace("hvac-fedavg", "offline")
    testbed.kubectl("apply", "-f", "-", stdin=manifest)
    eventually(lambda: one_rayjob_per_member(testbed, "offline"), "the job's shards deployed")
    assert operator.stop(signal.SIGTERM) == 0
    try:
        testbed.kubectl("delete", "mljob", "offline", "-n", "default", "--wait=false")
    finally:
        operator.start()
    eventually(
        lambda: get_json(testbed, "mljob", "offline", "-n", "default") is None,
        "the deletion to finish after the restart",
    )
    assert all(not names for names in shard_resources(testbed, "rayjobs", "offline").values())


def test_deletion_waits_for_an_unreachable_member(
    testbed: RunningTestbed, operator: Operator
) -> None:
    """The finalizer stays while a member holding shards cannot be reached, the member is named
    in status.pendingCleanup, and the deletion completes once it is back."""
    manifest = (EXAMPLES / "mljob-federated.yaml").read_text().replace("hvac-fedavg", "stranded")
    testbed.kubectl("apply", "-f", "-", stdin=manifest)
    eventually(lambda: one_rayjob_per_member(testbed, "stranded"), "the job's shards deployed")
    secret = get_json(testbed, "secret", "member-3-kubeconfig", "-n", "continuum-system")
    broken = json.loads(base64.b64decode(secret["data"]["kubeconfig"]))
    broken["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"
    cut = {"data": {"kubeconfig": base64.b64encode(json.dumps(broken).encode()).decode()}}
    testbed.kubectl("patch", "secret", "member-3-kubeconfig", "-n", "continuum-system",
                    "--type=merge", "-p", json.dumps(cut))  # fmt: skip
    try:
        # The operator re-reads a member's Secret every few seconds; once its probe says the
        # member is unreachable, the deletion's own attempt will find it so too.
        eventually(
            lambda: (condition(get_json(testbed, "membercluster", "member-3"), "Reachable") or {})
            .get("status") == "False",
            "member-3 to be seen unreachable",
        )  # fmt: skip
        testbed.kubectl("delete", "mljob", "stranded", "-n", "default", "--wait=false")
        held = eventually(
            lambda: (get_json(testbed, "mljob", "stranded", "-n", "default") or {})
            .get("status", {}).get("pendingCleanup"),
            "pendingCleanup to name the unreachable member",
        )  # fmt: skip
        assert held == ["member-3"]
        assert shard_resources(testbed, "rayjobs", "stranded")["member-1"] == []
    finally:
        restore = {"data": {"kubeconfig": secret["data"]["kubeconfig"]}}
        testbed.kubectl("patch", "secret", "member-3-kubeconfig", "-n", "continuum-system",
                        "--type=merge", "-p", json.dumps(restore))  # fmt: skip
    eventually(
        lambda: get_json(testbed, "mljob", "stranded", "-n", "default") is None,
        "the deletion to finish once the member is back",
    )
    assert shard_resources(testbed, "rayjobs", "stranded")["member-3"] == []


def test_an_unreachable_member_shows_reachable_false(
    testbed: RunningTestbed, operator: Operator
) -> None:
    kubeconfig = json.loads(testbed.members[0].kubeconfig.read_text())
    kubeconfig["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"  # nothing listens
    secret = {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "gone-kubeconfig", "namespace": "continuum-system"},
        "data": {"kubeconfig": base64.b64encode(json.dumps(kubeconfig).encode()).decode()},
    }  # fmt: skip
    member = {
        "apiVersion": "continuum.dev/v1alpha1", "kind": "MemberCluster",
        "metadata": {"name": "gone"},
        "spec": {"tier": "Edge", "site": "porto", "region": "eu-south",
                 "kubeconfigSecretRef": {"name": "gone-kubeconfig"}},
    }  # fmt: skip
    testbed.kubectl("apply", "-f", "-", stdin=json.dumps({"kind": "List", "apiVersion": "v1",
                                                           "items": [secret, member]}))  # fmt: skip
    try:
        reachable = eventually(
            lambda: condition(get_json(testbed, "membercluster", "gone"), "Reachable"),
            "a Reachable condition on the unreachable member",
        )
        assert reachable["status"] == "False"
        assert reachable["reason"] == "ConnectionFailed"
        assert reachable["message"]
        # A member that is down is reported, and does not make the operator unready.
        assert operator.probe("/readyz") == (200, "ok\n")
    finally:
        testbed.kubectl("delete", "membercluster", "gone", "--wait=false", check=False)
        testbed.kubectl(
            "delete", "secret", "gone-kubeconfig", "-n", "continuum-system", check=False
        )


def test_sigterm_stops_the_operator_cleanly(operator: Operator) -> None:
    assert operator.stop(signal.SIGTERM) == 0
    log = operator.log.read_text()
    assert "Traceback" not in log, log[-3000:]
    operator.start()
