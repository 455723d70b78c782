"""A Pull member end to end on the testbed: the operator, `continuum member join`, and
`continuum agent` as a user runs them, the agent dialling the hub with the credential join
printed, KubeRay played by e2e/kuberay_sim.py in every member.

- apply: the shards run in the Pull member and their state reaches the hub;
- the hub unreachable for five minutes (its API server stopped), then back: nothing deleted,
  nothing duplicated, the fenced training shard runs again where it was (karmada #5406);
- a partition of the agent's path to the hub longer than its lease (e2e/relay.py, cut): the
  training shard is fenced, re-placed, and two working copies never exist (polled every
  second); the inference shard keeps serving through it; back, the fenced copy goes.

The Pull member is a fifth cluster of the session's testbed, started for this module (the four
others are registered as Push members by other modules, and one cluster may be registered only
once); it is stopped again at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes import client, config

from e2e import kuberay_sim
from e2e.agent_process import AgentProcess
from e2e.operator_process import REPO, Operator, member_api
from e2e.pytest_plugin import MEMBERS, RunningTestbed
from e2e.pytest_plugin import eventually as wait_until
from e2e.registration import register_members
from e2e.relay import Relay
from e2e.testbed import ClusterInfo

pytestmark = pytest.mark.integration

GROUP, VERSION = "continuum.dev", "v1alpha1"
PULLED = "pulled-munich"
LEASE_S, FENCE_S, MARGIN_S = 15, 15, 5
HUB_OUTAGE_S = 300.0  # the five minutes
RESUME_BOUND_S = 30.0
POLL_S = 1.0
COMMAND_TIMEOUT_S = 60.0


def eventually(check: Callable[[], Any], what: str, timeout: float = 90.0) -> Any:
    return wait_until(check, what, timeout, interval=0.5)


@dataclass
class PullSetup:
    testbed: RunningTestbed
    hub: client.ApiClient
    member: client.ApiClient
    pushed: dict[str, client.ApiClient]
    agent: AgentProcess
    relay: Relay
    operator: Operator


def join(testbed: RunningTestbed, server: str) -> str:
    """`continuum member join`, as the admin runs it: the agent's hub kubeconfig."""
    result = subprocess.run(
        [sys.executable, "-m", "continuum.operator.cli", "member", "join", PULLED,
         "--site", "munich", "--region", "eu-central", "--tier", "Edge",
         "--capacity", "cpu=8,memory=32Gi", "--server", server, "--output", "kubeconfig",
         "--kubeconfig", str(testbed.hub.kubeconfig)],
        cwd=REPO, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def setup(testbed: RunningTestbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PullSetup]:
    directory = tmp_path_factory.mktemp("pull")
    clusters = testbed.testbed.up(MEMBERS + 1)
    fifth: ClusterInfo = clusters[-1]
    register_members([testbed.hub, *testbed.members], None)
    testbed.kubectl("apply", "-f", str(REPO / "examples" / "tenants.yaml"))
    # Fenced shards may move only after lease + fence + margin: the defaults, said out loud.
    operator = Operator(testbed.hub.kubeconfig, directory / "operator.log",
                        ["--fence-margin", str(MARGIN_S)])  # fmt: skip
    operator.start()
    hub_address = urlsplit(testbed.hub.server)
    relay = Relay((hub_address.hostname or "", hub_address.port or 443)).start()
    hub_kubeconfig = directory / "agent-hub.kubeconfig"
    hub_kubeconfig.write_text(join(testbed, f"https://127.0.0.1:{relay.address[1]}"))
    agent = AgentProcess(PULLED, fifth.kubeconfig, hub_kubeconfig, directory / "agent.log")
    agent.start()
    hub = config.new_client_from_config(config_file=str(testbed.hub.kubeconfig))
    member = config.new_client_from_config(config_file=str(fifth.kubeconfig))
    pushed = {name: member_api(testbed, name) for name in ("member-4",)}
    stop = threading.Event()
    sims = [threading.Thread(target=kuberay_sim.run, args=(api, stop), daemon=True)
            for api in (member, *pushed.values())]  # fmt: skip
    for sim in sims:
        sim.start()
    try:
        yield PullSetup(testbed, hub, member, pushed, agent, relay, operator)
    finally:
        testbed.testbed.resume("hub")
        relay.restore()
        subprocess.run(
            [sys.executable, "-m", "continuum.operator.cli", "member", "leave", PULLED,
             "--wait", "120", "--kubeconfig", str(testbed.hub.kubeconfig)],
            cwd=REPO, capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        if agent.is_running():
            agent.stop()
        stop.set()
        for sim in sims:
            sim.join(timeout=10)
        if operator.process is not None:
            operator.stop()
        relay.stop()
        for api in (hub, member, *pushed.values()):
            api.close()
        testbed.testbed.up(MEMBERS)  # the fifth cluster goes


def hub_get(setup: PullSetup, *path: str) -> dict[str, Any]:
    objects = client.CustomObjectsApi(setup.hub)
    if len(path) == 2:
        found: dict[str, Any] = objects.get_cluster_custom_object(GROUP, VERSION, path[0], path[1])
    else:
        found = objects.get_namespaced_custom_object(GROUP, VERSION, path[0], path[1], path[2])
    return found


def condition(body: dict[str, Any], kind: str) -> tuple[str, str]:
    found = next((c for c in (body.get("status") or {}).get("conditions") or []
                  if c["type"] == kind), {})  # fmt: skip
    return found.get("status", ""), found.get("reason", "")


def resources(api: client.ApiClient, plural: str, namespace: str, job: str) -> list[dict[str, Any]]:
    """The job's shard resources in one member; [] when it does not answer."""
    try:
        listed: Any = client.CustomObjectsApi(api).list_namespaced_custom_object(
            "ray.io", "v1", namespace, plural, label_selector=f"continuum.dev/job={job}",
            _request_timeout=3,
        )  # fmt: skip
    except Exception:  # a member that does not answer holds nothing we can see
        return []
    items: list[dict[str, Any]] = listed["items"]
    return items


def working(item: dict[str, Any]) -> bool:
    status = item.get("status") or {}
    if item["kind"] == "RayJob":
        return status.get("jobDeploymentStatus") == "Running" and not item["spec"].get("suspend")
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in status.get("conditions") or [])  # fmt: skip


def job_manifest(name: str, namespace: str, mode: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "mode": mode,
        "tenant": "research",
        "shards": {"count": 1, "resources": {"cpu": "100m", "memory": "128Mi"}},
        "ray": {"image": "rayproject/ray:2.50.0", "entrypoint": "python train.py"},
        "data": [{"name": "munich-data", "site": "munich", "residency": "Region"}],
    }
    if mode == "Inference":
        spec["ray"]["entrypoint"] = "detector.serve:app"
        spec["objectives"] = {"latencyOptOutReason": "offline scoring"}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MLJob",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}  # fmt: skip


def start_jobs(setup: PullSetup, namespace: str) -> tuple[str, str]:
    """A training and an inference job, both running in the Pull member; their names."""
    eventually(lambda: condition(hub_get(setup, "memberclusters", PULLED), "Ready")
               == ("True", "CapacityKnown"), f"{PULLED} Ready from its agent's lease")  # fmt: skip
    names = []
    for mode in ("Training", "Inference"):
        name = f"{mode.lower()[:5]}-{uuid.uuid4().hex[:5]}"
        setup.testbed.kubectl("apply", "-f", "-",
                              stdin=json.dumps(job_manifest(name, namespace, mode)))  # fmt: skip
        names.append(name)
    for name in names:
        eventually(lambda name=name: hub_get(setup, namespace, "mljobs", name)
                   .get("status", {}).get("phase") == "Running",
                   f"{name} Running, as the agent reports it")  # fmt: skip
        placement = hub_get(setup, namespace, "placements", name)
        assert placement["spec"]["decisions"][0]["cluster"] == PULLED
    return names[0], names[1]


def test_apply_runs_the_shards_in_the_pull_member_and_the_hub_sees_them(
    setup: PullSetup, namespace: str
) -> None:
    train, serve = start_jobs(setup, namespace)
    (ray_job,) = resources(setup.member, "rayjobs", namespace, train)
    (ray_service,) = resources(setup.member, "rayservices", namespace, serve)
    assert working(ray_job) and working(ray_service)
    work = hub_get(setup, f"continuum-member-{PULLED}", "memberworks", f"{namespace}.{train}")
    assert condition(work, "Applied") == ("True", "Applied")
    assert work["status"]["observedGeneration"] == work["metadata"]["generation"]
    # The round trip is the previous renewal's: the second renewal's report has it.
    member = eventually(lambda: (m := hub_get(setup, "memberclusters", PULLED))["status"]
                        .get("agent", {}).get("hubRttMs") and m,
                        "the agent's report in its status")  # fmt: skip
    assert condition(member, "Reachable") == ("True", "LeaseRenewed")
    assert member["status"]["agent"]["clusterID"] == member["status"]["clusterID"]
    assert member["status"]["agent"]["hubRttMs"] > 0
    # No Push member holds anything of them.
    for api in setup.pushed.values():
        assert resources(api, "rayjobs", namespace, train) == []


def test_a_five_minute_hub_outage_deletes_and_duplicates_nothing(
    setup: PullSetup, namespace: str
) -> None:
    train, serve = start_jobs(setup, namespace)
    before = {item["metadata"]["uid"]: item["kind"] for item in
              resources(setup.member, "rayjobs", namespace, train)
              + resources(setup.member, "rayservices", namespace, serve)}  # fmt: skip
    setup.testbed.testbed.pause("hub")
    paused = time.monotonic()
    fenced_at = served_all_along = None
    served_all_along = True
    try:
        while time.monotonic() - paused < HUB_OUTAGE_S:
            (ray_job,) = resources(setup.member, "rayjobs", namespace, train)
            (ray_service,) = resources(setup.member, "rayservices", namespace, serve)
            if fenced_at is None and ray_job["spec"].get("suspend"):
                fenced_at = time.monotonic() - paused
            served_all_along = served_all_along and working(ray_service)
            assert {ray_job["metadata"]["uid"], ray_service["metadata"]["uid"]} == set(before)
            time.sleep(5 * POLL_S)
    finally:
        setup.testbed.testbed.resume("hub")
    resumed = time.monotonic()
    print(f"\nhub stopped {HUB_OUTAGE_S:.0f} s: training shard fenced after {fenced_at} s")
    assert fenced_at is not None and fenced_at <= FENCE_S + 5 + 2
    assert served_all_along  # the inference shard kept serving: edge autonomy

    def running_again() -> bool:
        (ray_job,) = resources(setup.member, "rayjobs", namespace, train)
        return working(ray_job)

    eventually(running_again, "the fenced training shard running again where it was", 120)
    back_s = time.monotonic() - resumed
    print(f"running again {back_s:.1f} s after the hub came back")
    # The operator hears the hub again, starts a session, writes it; the agent resumes.
    assert back_s <= RESUME_BOUND_S
    after = {item["metadata"]["uid"]: item["kind"] for item in
             resources(setup.member, "rayjobs", namespace, train)
             + resources(setup.member, "rayservices", namespace, serve)}  # fmt: skip
    assert after == before  # nothing deleted, nothing made again
    for name in (train, serve):
        placement = hub_get(setup, namespace, "placements", name)
        assert placement["spec"]["decisions"][0]["cluster"] == PULLED
        assert placement["spec"].get("migrations", []) == []
        for api in setup.pushed.values():
            assert resources(api, "rayjobs", namespace, name) == []
            assert resources(api, "rayservices", namespace, name) == []
    eventually(lambda: hub_get(setup, namespace, "mljobs", train).get("status", {})
               .get("phase") == "Running", f"{train} Running on the hub again")  # fmt: skip


def test_a_partition_longer_than_the_lease_fences_then_moves_with_never_two_copies(
    setup: PullSetup, namespace: str
) -> None:
    train, serve = start_jobs(setup, namespace)
    (service_before,) = resources(setup.member, "rayservices", namespace, serve)
    setup.relay.cut()
    cut = time.monotonic()
    seen: dict[str, float] = {}
    most_working = 0
    try:
        while time.monotonic() - cut < 90 and "replacement" not in seen:
            now = time.monotonic() - cut
            held = resources(setup.member, "rayjobs", namespace, train)
            moved = [item for api in setup.pushed.values()
                     for item in resources(api, "rayjobs", namespace, train)]  # fmt: skip
            copies = sum(1 for item in [*held, *moved] if working(item))
            most_working = max(most_working, copies)
            if "fenced" not in seen and held and held[0]["spec"].get("suspend"):
                seen["fenced"] = now
            if any(working(item) for item in moved):
                seen["replacement"] = now
            (service,) = resources(setup.member, "rayservices", namespace, serve)
            assert (
                working(service)
                and service["metadata"]["uid"] == (service_before["metadata"]["uid"])
            ), "the inference shard kept serving through the partition"
            time.sleep(POLL_S)
    finally:
        setup.relay.restore()
    print(
        f"\npartition: fenced after {seen.get('fenced', -1):.1f} s, replacement working "
        f"after {seen.get('replacement', -1):.1f} s; at most {most_working} working copy"
    )
    assert most_working == 1, "two working copies of the training shard at once"
    assert seen["fenced"] <= FENCE_S + 5 + 2, seen  # the agent's last renewal was ≤ 5 s before
    assert seen["replacement"] <= LEASE_S + FENCE_S + 15, seen
    migrations = hub_get(setup, namespace, "placements", train)["spec"]["migrations"]
    assert [(m["from"], m["reason"]) for m in migrations] == [(PULLED, "Failure")]

    # Back: the fenced copy goes (its work no longer lists it, at a newer epoch); it never ran.
    def fenced_copy_gone() -> bool:
        held = resources(setup.member, "rayjobs", namespace, train)
        assert not any(working(item) for item in held), "the fenced copy ran again"
        return held == []

    eventually(fenced_copy_gone, "the fenced copy deleted once the agent is back", 120)
