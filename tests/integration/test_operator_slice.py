"""The vertical slice on the testbed: `continuum operator run` against the hub, the examples
applied with kubectl, shard resources in the members, status back in the hub.

The operator runs as the user runs it, a separate process, so that the tests can stop it with
SIGTERM and kill it with SIGKILL. e2e/kuberay_sim.py plays KubeRay in the members.

The module shares the testbed and one operator process; every test makes its own jobs, under
names of its own, and deletes them after it, so that each test passes alone (`pytest -k NAME`)
and in any order. A test that stops the operator starts it again; a test that cuts a member off
restores it, and the next test waits until every member is Reachable again.
"""

from __future__ import annotations

import base64
import json
import random
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from continuum.operator.api.shard_resources import RAY_SERVICE, shard_resource_name
from e2e import kuberay_sim
from e2e.binaries import kubectl
from e2e.operator_process import Operator, condition, get_json, member_api
from e2e.pytest_plugin import RunningTestbed
from e2e.pytest_plugin import eventually as wait_until
from e2e.registration import register_members
from tests.integration.slice_steps import (
    AGGREGATOR_MEMBER,
    EXAMPLES,
    Jobs,
    eventually,
    federated_deployed,
    job_selector,
    make_running,
    one_rayjob_per_member,
    placement_of,
    shard_resources,
)

pytestmark = pytest.mark.integration

REGISTERED = ("member-1", "member-2", "member-3", "member-4")


@pytest.fixture(scope="module")
def running_operator(
    testbed: RunningTestbed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    """The module's operator process, as it starts: members not probed yet."""
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


def ensure_started(operator: Operator) -> None:
    """Starts the operator again if a test stopped it and failed before starting it."""
    if operator.process is None:
        operator.start()


@pytest.fixture
def operator(testbed: RunningTestbed, running_operator: Operator) -> Operator:
    """The module's operator, running, ready, and with every registered member Reachable: what
    a test that places jobs needs, whichever tests ran before it (one may have cut a member off
    or stopped the operator)."""
    ensure_started(running_operator)

    def members_reachable() -> bool:
        items = {item["metadata"]["name"]: item
                 for item in get_json(testbed, "memberclusters")["items"]}  # fmt: skip
        return all(
            (condition(items.get(name), "Reachable") or {}).get("status") == "True"
            for name in REGISTERED
        )

    eventually(members_reachable, "every registered member to be Reachable")
    eventually(lambda: running_operator.probe("/readyz")[0] == 200, "the operator ready")
    return running_operator


@pytest.fixture
def jobs(testbed: RunningTestbed, operator: Operator) -> Iterator[Jobs]:
    """Jobs of the test's own, deleted after it (by a running operator, which takes their
    finalizer off)."""
    made = Jobs(testbed)
    try:
        yield made
    finally:
        ensure_started(operator)
        made.delete()


def test_members_become_reachable(testbed: RunningTestbed, running_operator: Operator) -> None:
    operator = running_operator

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
    testbed: RunningTestbed, operator: Operator, jobs: Jobs
) -> None:
    job = jobs.federated()
    placement = eventually(lambda: placement_of(testbed, job), "the Placement")
    decisions = {decision["shard"]: decision for decision in placement["decisions"]}
    assert sorted(decisions) == [0, 1, 2, 3]
    # residency=Site keeps each participant at its data's site; the aggregator goes to the cloud.
    assert [decisions[index]["cluster"] for index in range(4)] == [
        "member-1", "member-2", "member-3", "member-4",
    ]  # fmt: skip
    assert all(decision["reasons"] for decision in decisions.values())
    owner = get_json(testbed, "placement", job, "-n", "default")["metadata"]
    assert owner["ownerReferences"][0]["kind"] == "MLJob"

    federated_deployed(testbed, job)
    published = eventually(
        lambda: get_json(testbed, "placement", job, "-n", "default")["status"].get("federation"),
        "the aggregator's address in the Placement status",
    )
    assert published["cluster"] == AGGREGATOR_MEMBER and published["aggregatorShard"] == 3
    assert published["address"].startswith("192.0.2.") and published["address"].endswith(":8470")
    for index, member in enumerate(testbed.members[:3]):
        participant = get_json(testbed, "rayjob", shard_resource_name(job, index), "-n",
                               "default", cluster=member)  # fmt: skip
        head = participant["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
        env = {item["name"]: item["value"] for item in head["containers"][0]["env"]}
        assert env["CONTINUUM_AGGREGATOR_ADDRESS"] == published["address"]
    for member in testbed.members:
        api = member_api(testbed, member.name)
        kuberay_sim.advance(api, "default", to=kuberay_sim.Target.RUNNING,
                            selector=job_selector(job))  # fmt: skip
        api.close()

    def running() -> Any:
        found = get_json(testbed, "mljob", job, "-n", "default")
        status = found.get("status", {})
        return status if status.get("phase") == "Running" and status.get("ready") == "4/4" else None

    status = eventually(running, "MLJob phase Running with 4/4 ready")
    assert [shard["state"] for shard in status["shards"]] == ["Running"] * 4
    assert condition({"status": status}, "Ready")["status"] == "True"
    applied = get_json(testbed, "placement", job, "-n", "default")["status"]
    assert applied["appliedEpoch"] == placement["epoch"]


def served_once(testbed: RunningTestbed, job: str) -> dict[str, list[str]] | None:
    """Member name -> the job's RayServices there, once there is exactly one."""
    found = shard_resources(testbed, "rayservices", job)
    return found if sum(len(names) for names in found.values()) == 1 else None


def test_inference_job_gets_a_rayservice_near_its_data(
    testbed: RunningTestbed, operator: Operator, jobs: Jobs
) -> None:
    job = jobs.inference()
    found = eventually(lambda: served_once(testbed, job), "one RayService")
    # residency=Region keeps it in eu-west, and the 50 ms SLO favours the data's own site.
    assert found["member-1"], found
    placement = eventually(lambda: placement_of(testbed, job), "the Placement")
    assert placement["decisions"][0]["cluster"] == "member-1"


def test_a_finalizer_left_on_a_placement_by_an_older_operator_is_taken_off(
    testbed: RunningTestbed, operator: Operator, jobs: Jobs
) -> None:
    """An older operator's Kopf may have left the cleanup finalizer on a Placement; nothing
    else takes it off, and the namespace would never be deleted."""
    job = jobs.inference()
    eventually(lambda: placement_of(testbed, job), "the Placement")
    stale = {"metadata": {"finalizers": ["continuum.dev/cleanup"]}}
    testbed.kubectl("patch", "placement", job, "-n", "default", "--type=merge",
                    "-p", json.dumps(stale))  # fmt: skip
    eventually(
        lambda: not get_json(testbed, "placement", job, "-n", "default")["metadata"]
        .get("finalizers"),
        "the operator to take the finalizer off",
    )  # fmt: skip


def test_a_shard_resource_whose_job_is_gone_is_swept(
    testbed: RunningTestbed, operator: Operator
) -> None:
    """What a job deleted before its finalizer was set would leave in a member."""
    ghost = f"ghost-{uuid.uuid4().hex[:6]}"
    labels = {"continuum.dev/managed-by": "continuum", "continuum.dev/job": ghost,
              "continuum.dev/job-uid": "0000", "continuum.dev/shard": "0"}  # fmt: skip
    orphan = {
        "apiVersion": "ray.io/v1", "kind": "RayJob",
        "metadata": {"name": f"{ghost}-0", "namespace": "default", "labels": labels,
                     "annotations": {"continuum.dev/job-name": ghost}},
        "spec": {"entrypoint": "python t.py"},
    }  # fmt: skip
    member = testbed.members[0]
    testbed.kubectl("apply", "-f", "-", stdin=json.dumps(orphan), cluster=member)
    eventually(
        lambda: shard_resources(testbed, "rayjobs", ghost)[member.name] == [],
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
    name = f"orphan-{uuid.uuid4().hex[:6]}"
    manifest = (EXAMPLES / "mljob-inference.yaml").read_text()
    manifest = manifest.replace("defect-detector", name).replace("production", "nobody")

    def refused() -> str:
        result = kubectl(testbed.hub.kubeconfig, "apply", "-f", "-", stdin=manifest, check=False)
        if result.returncode == 0:
            # The API server had not loaded the new webhook configuration yet, so the job went
            # in (failure policy Ignore): remove it, or the next apply changes nothing and is
            # never sent to the webhook.
            testbed.kubectl("delete", "mljob", name, "-n", "default", "--wait=false")
        return result.stderr if result.returncode else ""

    message = eventually(refused, "the webhook to refuse the job")
    assert "admission webhook" in message
    assert "spec.tenant: no Tenant named 'nobody'" in message
    assert get_json(testbed, "mljob", name, "-n", "default") is None


def test_decisions_are_events_and_metrics(
    testbed: RunningTestbed, operator: Operator, jobs: Jobs
) -> None:
    job = jobs.inference()

    def reasons() -> set[str]:
        events = get_json(testbed, "events", "-n", "default",
                          "--field-selector", f"involvedObject.name={job}")  # fmt: skip
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
    testbed: RunningTestbed, operator: Operator, jobs: Jobs
) -> None:
    job = jobs.inference()
    eventually(lambda: served_once(testbed, job), "the job's RayService")
    patch = json.dumps({"spec": {"suspend": True}})
    testbed.kubectl("patch", "mljob", job, "-n", "default", "--type=merge", "-p", patch)

    def suspended() -> bool:
        found = get_json(testbed, "mljob", job, "-n", "default")
        gone = not any(shard_resources(testbed, "rayservices", job).values())
        return gone and found["status"].get("phase") == "Suspended"

    eventually(suspended, "the RayService to go and the phase to be Suspended")
    patch = json.dumps({"spec": {"suspend": False}})
    testbed.kubectl("patch", "mljob", job, "-n", "default", "--type=merge", "-p", patch)
    eventually(
        lambda: any(shard_resources(testbed, "rayservices", job).values()),
        "the RayService to come back after resuming",
    )


def test_operator_restarts_converge_without_duplicates(
    testbed: RunningTestbed, operator: Operator, jobs: Jobs
) -> None:
    """SIGKILL at arbitrary points while a job is being placed and deployed, then a restart:
    every shard resource exists exactly once, where the Placement says."""
    job = jobs.federated("restarted")
    # Random points in the create, place and deploy path; seeded, so a failure can be replayed.
    delays = random.Random(20261201).sample([0.1, 0.3, 0.5, 0.8, 1.2, 1.5, 2.0], 3)
    for delay in delays:
        time.sleep(delay)
        assert operator.stop(signal.SIGKILL) == -signal.SIGKILL
        operator.start()

    federated_deployed(testbed, job)
    found = eventually(
        lambda: one_rayjob_per_member(testbed, job), "one RayJob per member after restarts"
    )
    placement = eventually(lambda: placement_of(testbed, job), "the Placement")
    by_cluster = {decision["cluster"] for decision in placement["decisions"]}
    assert by_cluster == set(found)
    # Running, and restarted once more: the new process keeps every copy as it is. (Before its
    # mirrors listed a member, it once took the participants there for gone and made them
    # again.)
    make_running(testbed, job)
    made = rayjob_uids(testbed, job)
    assert operator.stop(signal.SIGTERM) == 0
    operator.start()
    eventually(lambda: operator.probe("/readyz")[0] == 200, "the restarted operator ready")
    time.sleep(2)  # a few passes of the new process over the job
    assert rayjob_uids(testbed, job) == made


def rayjob_uids(testbed: RunningTestbed, job: str) -> dict[str, list[str]]:
    """Member name -> the uids of the job's RayJobs there."""
    found = {}
    for member in testbed.members:
        listed = get_json(testbed, "rayjobs", "-n", "default", "-l", job_selector(job),
                          cluster=member)  # fmt: skip
        found[member.name] = sorted(item["metadata"]["uid"] for item in listed["items"])
    return found


def test_deleting_a_job_cleans_every_member(
    testbed: RunningTestbed, operator: Operator, jobs: Jobs
) -> None:
    # Two federated jobs with a RayJob in every member, one of them running.
    running, deployed = jobs.federated(), jobs.federated("restarted")
    for job in (running, deployed):
        federated_deployed(testbed, job)
    for member in testbed.members:
        api = member_api(testbed, member.name)
        kuberay_sim.advance(api, "default", to=kuberay_sim.Target.RUNNING,
                            selector=job_selector(running))  # fmt: skip
        api.close()

    testbed.kubectl("delete", "mljob", running, deployed, "-n", "default", "--timeout=60s")
    assert get_json(testbed, "mljob", running, "-n", "default") is None
    for job in (running, deployed):
        assert all(not names for names in shard_resources(testbed, "rayjobs", job).values())

    eventually(
        lambda: get_json(testbed, "placement", running, "-n", "default") is None,
        "the garbage collector to remove the Placement",
    )


def test_a_deletion_made_while_the_operator_was_down_cleans_every_member(
    testbed: RunningTestbed, operator: Operator, jobs: Jobs
) -> None:
    """The restarted operator's first passes come as the hub's MLJobs are listed, before its
    MemberClusters may be: a deletion acted on then would see no member holding shards, and
    release the finalizer over them."""
    job = jobs.federated("offline")
    federated_deployed(testbed, job)
    assert operator.stop(signal.SIGTERM) == 0
    try:
        testbed.kubectl("delete", "mljob", job, "-n", "default", "--wait=false")
    finally:
        operator.start()
    eventually(
        lambda: get_json(testbed, "mljob", job, "-n", "default") is None,
        "the deletion to finish after the restart",
    )
    assert all(not names for names in shard_resources(testbed, "rayjobs", job).values())


def test_deletion_waits_for_an_unreachable_member(
    testbed: RunningTestbed, operator: Operator, jobs: Jobs
) -> None:
    """The finalizer stays while a member holding shards cannot be reached, the member is named
    in status.pendingCleanup, and the deletion completes once it is back."""
    job = jobs.federated("stranded")
    federated_deployed(testbed, job)
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
        testbed.kubectl("delete", "mljob", job, "-n", "default", "--wait=false")
        held = eventually(
            lambda: (get_json(testbed, "mljob", job, "-n", "default") or {})
            .get("status", {}).get("pendingCleanup"),
            "pendingCleanup to name the unreachable member",
        )  # fmt: skip
        assert held == ["member-3"]
        assert shard_resources(testbed, "rayjobs", job)["member-1"] == []
    finally:
        restore = {"data": {"kubeconfig": secret["data"]["kubeconfig"]}}
        testbed.kubectl("patch", "secret", "member-3-kubeconfig", "-n", "continuum-system",
                        "--type=merge", "-p", json.dumps(restore))  # fmt: skip
    eventually(
        lambda: get_json(testbed, "mljob", job, "-n", "default") is None,
        "the deletion to finish once the member is back",
    )
    assert shard_resources(testbed, "rayjobs", job)["member-3"] == []


def test_an_unreachable_member_shows_reachable_false(
    testbed: RunningTestbed, operator: Operator
) -> None:
    name = f"gone-{uuid.uuid4().hex[:6]}"
    kubeconfig = json.loads(testbed.members[0].kubeconfig.read_text())
    kubeconfig["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"  # nothing listens
    secret = {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": f"{name}-kubeconfig", "namespace": "continuum-system"},
        "data": {"kubeconfig": base64.b64encode(json.dumps(kubeconfig).encode()).decode()},
    }  # fmt: skip
    member = {
        "apiVersion": "continuum.dev/v1alpha1", "kind": "MemberCluster",
        "metadata": {"name": name},
        "spec": {"tier": "Edge", "site": "porto", "region": "eu-south",
                 "kubeconfigSecretRef": {"name": f"{name}-kubeconfig"}},
    }  # fmt: skip
    testbed.kubectl("apply", "-f", "-", stdin=json.dumps({"kind": "List", "apiVersion": "v1",
                                                           "items": [secret, member]}))  # fmt: skip
    try:
        reachable = eventually(
            lambda: condition(get_json(testbed, "membercluster", name), "Reachable"),
            "a Reachable condition on the unreachable member",
        )
        assert reachable["status"] == "False"
        assert reachable["reason"] == "ConnectionFailed"
        assert reachable["message"]
        # A member that is down is reported, and does not make the operator unready.
        assert operator.probe("/readyz") == (200, "ok\n")
    finally:
        # Waited for: it never answered, so its deletion holds nothing; a member left behind
        # would be a fifth MemberCluster to the next test.
        testbed.kubectl("delete", "membercluster", name, "--timeout=30s", check=False)
        testbed.kubectl(
            "delete", "secret", f"{name}-kubeconfig", "-n", "continuum-system", check=False
        )


def test_sigterm_stops_the_operator_cleanly(operator: Operator) -> None:
    assert operator.stop(signal.SIGTERM) == 0
    log = operator.log.read_text()
    assert "Traceback" not in log, log[-3000:]
    operator.start()


def set_risk(testbed: RunningTestbed, member: str, score: float | None) -> None:
    """What the signals loop would write (it does not run here: no --prometheus-url)."""
    risk = None if score is None else {"score": score, "signals": {"rttInflation": score}}
    testbed.kubectl("patch", "membercluster", member, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": {"risk": risk}}))  # fmt: skip


def test_a_proactive_move_keeps_the_old_copy_running_until_its_replacement_runs(
    testbed: RunningTestbed, operator: Operator, jobs: Jobs
) -> None:
    job = jobs.inference("moving")
    proactive = {
        "spec": {
            "faultTolerance": {
                "proactive": {"enabled": True, "riskThreshold": 0.5},
                "checkpoint": {"uri": "s3://ckpt/moving"},
            }
        }
    }
    testbed.kubectl("patch", "mljob", job, "-n", "default", "--type=merge",
                    "-p", json.dumps(proactive))  # fmt: skip
    eventually(lambda: served_once(testbed, job), "one RayService")
    selector = job_selector(job)
    old_member = "member-1"
    with member_api(testbed, old_member) as api:
        kuberay_sim.advance(api, "default", to=kuberay_sim.Target.RUNNING, selector=selector)

    def ready() -> dict[str, Any] | None:
        status = (get_json(testbed, "mljob", job, "-n", "default") or {}).get("status", {})
        found = condition({"status": status}, "Ready") or {}
        return status if found.get("status") == "True" else None

    eventually(ready, "the job Ready on member-1")
    try:
        set_risk(testbed, old_member, 0.9)

        def moved() -> dict[str, Any] | None:
            spec = placement_of(testbed, job) or {}
            return next((m for m in spec.get("migrations", []) if m["reason"] == "Proactive"),
                        None)  # fmt: skip

        migration = eventually(moved, "a Proactive migration in the Placement")
        assert migration["from"] == old_member and migration["shard"] == 0
        target = migration["to"]

        def both_held() -> dict[str, list[str]] | None:
            found = shard_resources(testbed, "rayservices", job)
            return found if found[old_member] and found[target] else None

        held = eventually(both_held, "the replacement created beside the old copy")
        target_cluster = next(member for member in testbed.members if member.name == target)
        new_copy = get_json(testbed, "rayservice", held[target][0], "-n", "default",
                            cluster=target_cluster)  # fmt: skip
        annotations = new_copy["metadata"]["annotations"]
        assert annotations["continuum.dev/checkpoint-uri"] == "s3://ckpt/moving/shard-0"
        assert (
            annotations["continuum.dev/resume-epoch"]
            == new_copy["metadata"]["labels"]["continuum.dev/epoch"]
        )
        # Made to wait for the old copy's hand-over: it must not work beside it.
        assert annotations["continuum.dev/handover-from"] == old_member
        assert "continuum.dev/handover-done" not in annotations
        # The old copy runs on while the replacement starts, and the job stays Ready.
        time.sleep(3.0)
        assert shard_resources(testbed, "rayservices", job)[old_member]
        status = ready()
        assert status is not None, "the job stopped being Ready during a proactive move"
        (shard,) = status["shards"]
        assert (shard["cluster"], shard["state"]) == (old_member, "Running")
        assert f"replacement starts on {target}" in shard["message"]

        with member_api(testbed, target) as api:
            kuberay_sim.advance(api, "default", to=kuberay_sim.Target.RUNNING, selector=selector)
        # The replacement runs: the old copy is asked for a last checkpoint, and stays until
        # it has taken one.
        old_cluster = next(member for member in testbed.members if member.name == old_member)

        def asked() -> str | None:
            found = get_json(testbed, "rayservice", held[old_member][0], "-n", "default",
                             cluster=old_cluster) or {}  # fmt: skip
            annotations = found.get("metadata", {}).get("annotations", {})
            return annotations.get("continuum.dev/checkpoint-requested")

        requested = eventually(asked, "a request for a last checkpoint on the old copy")
        time.sleep(2.0)
        assert shard_resources(testbed, "rayservices", job)[old_member], "removed unanswered"
        status = ready()
        assert (
            status is not None
            and "handing its last checkpoint over" in (status["shards"][0]["message"])
        ), status
        waiting = get_json(testbed, "rayservice", held[target][0], "-n", "default",
                           cluster=target_cluster)  # fmt: skip
        assert "continuum.dev/handover-done" not in waiting["metadata"]["annotations"]
        with member_api(testbed, old_member) as api:
            kuberay_sim.record_checkpoint(api, RAY_SERVICE, "default",
                                          held[old_member][0], datetime.now(UTC))  # fmt: skip
        eventually(lambda: not shard_resources(testbed, "rayservices", job)[old_member],
                   "the old copy removed once it checkpointed for its replacement")  # fmt: skip
        assert datetime.fromisoformat(requested) <= datetime.now(UTC)

        def let_start() -> str | None:
            found = get_json(testbed, "rayservice", held[target][0], "-n", "default",
                             cluster=target_cluster) or {}  # fmt: skip
            return (
                found.get("metadata", {}).get("annotations", {}).get("continuum.dev/handover-done")
            )

        started = eventually(let_start, "the replacement let start after the hand-over")
        assert datetime.fromisoformat(started) >= datetime.fromisoformat(requested)
        status = eventually(ready, "the job Ready on its new member")
        assert status["shards"][0]["cluster"] == target

        def reasons() -> set[str]:
            events = get_json(testbed, "events", "-n", "default",
                              "--field-selector", f"involvedObject.name={job}")  # fmt: skip
            return {event["reason"] for event in events["items"]}

        eventually(lambda: {"ShardMigrating", "ShardMoved"} <= reasons(),
                   "ShardMigrating and ShardMoved Events")  # fmt: skip
    finally:
        set_risk(testbed, old_member, None)


def test_gitops_applies_show_no_conflict_and_no_drift_and_status_follows_kstatus(
    testbed: RunningTestbed, operator: Operator, jobs: Jobs
) -> None:
    """As Argo CD and Flux apply: server-side, twice, then under another field manager; after
    the operator has run, `kubectl diff` of the manifest is empty, and the job's status says
    Ready with Reconciling and Stalled False for its generation."""
    name = f"gitops-{uuid.uuid4().hex[:6]}"
    jobs.names.append(name)
    manifest = (EXAMPLES / "mljob-federated.yaml").read_text().replace("hvac-fedavg", name)
    for manager in ("kubectl", "kubectl", "argocd-controller"):
        applied = kubectl(testbed.hub.kubeconfig, "apply", "--server-side",
                          f"--field-manager={manager}", "-f", "-", stdin=manifest,
                          check=False)  # fmt: skip
        assert applied.returncode == 0, applied.stderr
    federated_deployed(testbed, name)
    make_running(testbed, name)

    def settled() -> dict[str, Any] | None:
        found = get_json(testbed, "mljob", name, "-n", "default")
        return found if (condition(found, "Ready") or {}).get("status") == "True" else None

    job = eventually(settled, "the job Ready")
    generation = job["metadata"]["generation"]
    assert job["status"]["observedGeneration"] == generation
    for kind in ("Reconciling", "Stalled"):
        found = condition(job, kind)
        assert found is not None and found["status"] == "False", found
        assert found["observedGeneration"] == generation
    again = kubectl(testbed.hub.kubeconfig, "apply", "--server-side", "-f", "-", stdin=manifest,
                    check=False)  # fmt: skip
    assert again.returncode == 0, again.stderr
    diff = kubectl(testbed.hub.kubeconfig, "diff", "--server-side", "-f", "-", stdin=manifest,
                   check=False)  # fmt: skip
    assert diff.returncode == 0, diff.stdout + diff.stderr
