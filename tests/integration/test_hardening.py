"""The hardening review's reproductions, on the testbed: each is a way the review found to
break the operator, and holds it to not breaking that way.

Hostile member credentials, names the hub refuses, states that had no status, deletions that
hung, one hung member stalling the others, and one cluster registered twice. The operator runs
as a separate process with short probe intervals, so that what a member's failure does shows
within seconds.

The module shares the testbed and the operator; each test works in a namespace of its own, and
deletes its jobs and the MemberClusters it made before the next test starts (a member it pauses
or deletes is back by then), so that each test passes alone and in any order.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from e2e import kuberay_sim
from e2e.binaries import kubectl
from e2e.operator_process import REPO, Operator, condition, get_json, member_api
from e2e.pytest_plugin import RunningTestbed
from e2e.pytest_plugin import eventually as wait_until
from e2e.registration import register_members

pytestmark = pytest.mark.integration

PROBE_INTERVAL_S = 4
MEMBER_TIMEOUT_S = 2
SYSTEM = "continuum-system"


def eventually(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    return wait_until(check, what, timeout, interval=0.25)


@pytest.fixture(scope="module")
def operator(
    testbed: RunningTestbed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    register_members([testbed.hub, *testbed.members], None)
    testbed.kubectl("apply", "-f", str(REPO / "examples" / "tenants.yaml"))
    running = Operator(
        testbed.hub.kubeconfig,
        tmp_path_factory.mktemp("hardening") / "operator.log",
        ["--probe-interval", str(PROBE_INTERVAL_S), "--member-timeout", str(MEMBER_TIMEOUT_S),
         "--member-cleanup-timeout", "20", "--failure-threshold", "1"],
    )  # fmt: skip
    running.start()
    eventually(lambda: running.probe("/readyz")[0] == 200, "the operator to be ready")
    eventually(
        lambda: get_json(testbed, "validatingwebhookconfiguration", "continuum.dev"),
        "the operator to register its webhook",
    )
    try:
        yield running
    finally:
        if running.process is not None:
            running.stop()


@pytest.fixture
def namespace(namespace: str, testbed: RunningTestbed, operator: Operator) -> Iterator[str]:
    """The test's own namespace; its jobs are deleted after the test, by the running operator,
    so that no later test shares the members with their shards or their deletion."""
    yield namespace
    testbed.kubectl("delete", "mljobs", "--all", "-n", namespace, "--timeout=60s", check=False)


def log_offset(operator: Operator) -> int:
    return operator.log.stat().st_size


def log_since(operator: Operator, offset: int) -> str:
    """What the operator logged since `offset`: the test's own part of the module's log."""
    return operator.log.read_bytes()[offset:].decode(errors="replace")


def job_manifest(
    name: str,
    namespace: str,
    *,
    site: str | None = None,
    residency: str = "Region",
    tenant: str = "research",
    suspend: bool = False,
    image: str = "rayproject/ray:2.50.0",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "mode": "Training",
        "tenant": tenant,
        "shards": {"count": 1, "resources": {"cpu": "100m", "memory": "128Mi"}},
        "ray": {"image": image, "entrypoint": "python train.py"},
        "suspend": suspend,
    }
    if site is not None:
        spec["data"] = [{"name": f"{site}-data", "site": site, "residency": residency}]
    return {
        "apiVersion": "continuum.dev/v1alpha1",
        "kind": "MLJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def apply(testbed: RunningTestbed, *objects: dict[str, Any]) -> None:
    document = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    testbed.kubectl("apply", "-f", "-", stdin=json.dumps(document))


def rayjobs(
    testbed: RunningTestbed, namespace: str, skip: str = ""
) -> dict[str, list[dict[str, Any]]]:
    """Member name -> the RayJobs Continuum made in `namespace` there (but in `skip`, which
    does not answer: kubectl would wait on it for ever)."""
    found = {}
    for member in testbed.members:
        if member.name == skip:
            continue
        listed = get_json(testbed, "rayjobs", "-n", namespace, "-l",
                          "continuum.dev/managed-by=continuum", cluster=member)  # fmt: skip
        found[member.name] = listed["items"] if listed else []
    return found


def deployed_to(testbed: RunningTestbed, namespace: str, job: str, skip: str = "") -> str | None:
    for member, items in rayjobs(testbed, namespace, skip).items():
        if any(item["metadata"]["annotations"]["continuum.dev/job-name"] == job for item in items):
            return member
    return None


def events_for(testbed: RunningTestbed, namespace: str, name: str) -> list[dict[str, Any]]:
    listed = get_json(testbed, "events", "-n", namespace,
                      "--field-selector", f"involvedObject.name={name}")  # fmt: skip
    return listed["items"] if listed else []


def reachable(testbed: RunningTestbed, member: str) -> dict[str, Any] | None:
    return condition(get_json(testbed, "membercluster", member), "Reachable")


def member_kubeconfig(testbed: RunningTestbed, name: str) -> dict[str, Any]:
    member = next(cluster for cluster in testbed.members if cluster.name == name)
    document: dict[str, Any] = json.loads(member.kubeconfig.read_text())
    return document


def with_server(kubeconfig: dict[str, Any], server: str) -> dict[str, Any]:
    changed = json.loads(json.dumps(kubeconfig))
    changed["clusters"][0]["cluster"]["server"] = server
    return changed


class HostileMember:
    """A MemberCluster whose kubeconfig Secret holds `text`; removed again on exit."""

    def __init__(self, testbed: RunningTestbed, text: str, secret_namespace: str = SYSTEM):
        self.testbed, self.text, self.secret_namespace = testbed, text, secret_namespace
        self.name = f"hostile-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> HostileMember:
        secret = {
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": self.name, "namespace": self.secret_namespace},
            "data": {"kubeconfig": base64.b64encode(self.text.encode()).decode()},
        }  # fmt: skip
        member = {
            "apiVersion": "continuum.dev/v1alpha1", "kind": "MemberCluster",
            "metadata": {"name": self.name},
            "spec": {"tier": "Edge", "site": "porto", "region": "eu-south",
                     "kubeconfigSecretRef": {"name": self.name,
                                             "namespace": self.secret_namespace}},
        }  # fmt: skip
        apply(self.testbed, secret, member)
        return self

    def reachable(self) -> dict[str, Any]:
        found: dict[str, Any] = eventually(
            lambda: reachable(self.testbed, self.name), f"a Reachable condition on {self.name}"
        )
        return found

    def assert_refused(self, reason: str, says: str) -> None:
        """Reachable=False for `reason`, its message saying `says`; then one more probe, which
        must not do what this one refused to either."""
        found = self.reachable()
        assert (found["status"], found["reason"]) == ("False", reason), found
        assert says in found["message"], found
        time.sleep(PROBE_INTERVAL_S + 1)

    def __exit__(self, *_: object) -> None:
        # Waited for: gone before the next test, and never left with the operator's finalizer
        # when the module's operator stops.
        self.testbed.kubectl("delete", "membercluster", self.name, "--timeout=30s", check=False)
        self.testbed.kubectl("delete", "secret", self.name, "-n", self.secret_namespace,
                             check=False)  # fmt: skip


def leaks(testbed: RunningTestbed, operator: Operator, marker: str) -> list[str]:
    """Where `marker` shows: any Continuum object, any Event, the operator's log, its metrics."""
    places = []
    for kind in ("memberclusters", "mljobs", "placements", "tenants"):
        if marker in testbed.kubectl("get", kind, "-A", "-o", "json"):
            places.append(kind)
    if marker in testbed.kubectl("get", "events", "-A", "-o", "json"):
        places.append("events")
    if marker in operator.log.read_text(errors="replace"):
        places.append("the operator's log")
    if marker in operator.probe("/metrics")[1]:
        places.append("metrics")
    return places


def kubeconfig_text(document: dict[str, Any]) -> str:
    return json.dumps(document)


# ---------------------------------------------------------------------------------------------
# Security


def test_an_exec_plugin_in_a_member_kubeconfig_never_runs(
    testbed: RunningTestbed, operator: Operator, tmp_path: Path
) -> None:
    marker_file = tmp_path / "exec-ran"
    kubeconfig = member_kubeconfig(testbed, "member-1")
    kubeconfig["users"][0]["user"] = {
        "exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "sh",
                 "args": ["-c", f"id > {marker_file}"]},
    }  # fmt: skip
    with HostileMember(testbed, kubeconfig_text(kubeconfig)) as member:
        member.assert_refused("KubeconfigRefused", "users[0].user.exec")
    assert not marker_file.exists()


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(str(self.headers))
        self.send_response(401)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_token_file_is_never_read_nor_sent(
    testbed: RunningTestbed, operator: Operator, tmp_path: Path
) -> None:
    marker = f"cmk-{uuid.uuid4().hex}"
    token_file = tmp_path / "token"
    token_file.write_text(marker)
    listener = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    kubeconfig = with_server(member_kubeconfig(testbed, "member-1"),
                             f"http://127.0.0.1:{listener.server_address[1]}")  # fmt: skip
    kubeconfig["users"][0]["user"] = {"tokenFile": str(token_file)}
    try:
        with HostileMember(testbed, kubeconfig_text(kubeconfig)) as member:
            member.assert_refused("KubeconfigRefused", "users[0].user.tokenFile")
    finally:
        listener.shutdown()
    assert not any(marker in headers for headers in _Recorder.seen)
    assert _Recorder.seen == []
    assert leaks(testbed, operator, marker) == []


def test_a_kubeconfig_that_is_not_yaml_leaks_nothing(
    testbed: RunningTestbed, operator: Operator
) -> None:
    marker = f"cmk-{uuid.uuid4().hex}"
    text = f"users:\n- user:\n    token: {marker}\n  name: x\n   bad: [indent: {marker}\n"
    with HostileMember(testbed, text) as member:
        member.assert_refused("KubeconfigInvalid", "not valid YAML")
    assert leaks(testbed, operator, marker) == []


def test_a_secret_outside_the_system_namespace_is_refused_at_apply_and_never_read(
    testbed: RunningTestbed, operator: Operator
) -> None:
    marker = f"cmk-{uuid.uuid4().hex}"
    elsewhere = f"other-{uuid.uuid4().hex[:8]}"
    name = f"elsewhere-{uuid.uuid4().hex[:8]}"
    testbed.kubectl("create", "namespace", elsewhere)
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": name, "namespace": elsewhere},
              "stringData": {"kubeconfig": f"token: {marker}"}}  # fmt: skip
    member = {"apiVersion": "continuum.dev/v1alpha1", "kind": "MemberCluster",
              "metadata": {"name": name},
              "spec": {"tier": "Edge", "site": "porto", "region": "eu-south",
                       "kubeconfigSecretRef": {"name": name, "namespace": elsewhere}}}  # fmt: skip
    apply(testbed, secret)

    def refused() -> str:
        result = kubectl(testbed.hub.kubeconfig, "apply", "-f", "-", stdin=json.dumps(member),
                         check=False)  # fmt: skip
        if result.returncode == 0:
            # In before the API server loaded the webhook (failure policy Ignore): the probe
            # refuses it all the same; removed, so that the next apply meets the webhook.
            found = eventually(lambda: reachable(testbed, name), "its Reachable condition")
            assert found["reason"] == "SecretNamespaceNotAllowed", found
            testbed.kubectl("delete", "membercluster", name)
            return ""
        return result.stderr

    try:
        message = eventually(refused, "the webhook to refuse the MemberCluster")
        assert "spec.kubeconfigSecretRef.namespace" in message
        time.sleep(PROBE_INTERVAL_S + 1)
        assert leaks(testbed, operator, marker) == []
    finally:
        testbed.kubectl("delete", "membercluster", name, "--timeout=30s", check=False)
        testbed.kubectl("delete", "namespace", elsewhere, "--wait=false", check=False)


# ---------------------------------------------------------------------------------------------
# Names, and writes the hub refuses


def test_a_job_name_longer_than_a_label_value_is_placed_and_deployed(
    testbed: RunningTestbed, operator: Operator, namespace: str
) -> None:
    name = "a-very-long-job-name-" + "x" * 100  # a valid MLJob name, 121 characters
    logged_from = log_offset(operator)
    apply(testbed, job_manifest(name, namespace))
    placement = eventually(lambda: get_json(testbed, "placement", name, "-n", namespace),
                           "the Placement of the long-named job")  # fmt: skip
    label = placement["metadata"]["labels"]["continuum.dev/job"]
    assert len(label) <= 63
    eventually(lambda: deployed_to(testbed, namespace, name), "its RayJob in a member")
    scheduled = condition(get_json(testbed, "mljob", name, "-n", namespace), "Scheduled")
    assert scheduled is not None and scheduled["status"] == "True"
    # Only this test's part of the log: another test's job may have been refused before.
    assert "refused the Placement" not in log_since(operator, logged_from)


REFUSING_POLICY = """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: NAME}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: [continuum.dev]
        apiVersions: ["*"]
        operations: [CREATE, UPDATE]
        resources: [placements]
  validations:
    - expression: "object.metadata.namespace != 'NAMESPACE'"
      message: "placements in NAMESPACE are frozen by policy"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: NAME}
spec:
  policyName: NAME
  validationActions: [Deny]
"""


def test_a_placement_the_hub_refuses_for_good_backs_off_with_a_condition_and_one_event(
    testbed: RunningTestbed, operator: Operator, namespace: str
) -> None:
    policy = f"freeze-{namespace}"
    manifest = REFUSING_POLICY.replace("NAMESPACE", namespace).replace("NAME", policy)
    testbed.kubectl("apply", "-f", "-", stdin=manifest)
    try:
        # The API server loads a new policy within a second or so.
        time.sleep(2)
        apply(testbed, job_manifest("refused", namespace))
        scheduled = eventually(
            lambda: (c := condition(get_json(testbed, "mljob", "refused", "-n", namespace),
                                    "Scheduled")) and c["reason"] == "PlacementRefused" and c,
            "Scheduled=False, reason PlacementRefused",
        )  # fmt: skip
        assert scheduled["status"] == "False"
        assert "frozen by policy" in scheduled["message"]
        started = time.monotonic()
        time.sleep(15)
        log = operator.log.read_text()
        tries = len(re.findall(rf"refused the Placement of {namespace}/refused", log))
        # 1, 2, 4, 8 s apart: five tries at most in the first 15 s, where a hot loop would
        # make dozens a second.
        assert 1 <= tries <= 6, tries
        assert "Traceback" not in log
        refusals = [e for e in events_for(testbed, namespace, "refused")
                    if e["reason"] == "PlacementRefused"]  # fmt: skip
        assert len(refusals) == 1, refusals
        assert time.monotonic() - started >= 15
    finally:
        testbed.kubectl("delete", "validatingadmissionpolicybinding", policy, check=False)
        testbed.kubectl("delete", "validatingadmissionpolicy", policy, check=False)
    # Once the hub takes it, the job is placed at the next try (the backoff is at most 16 s
    # by now) and says so.
    eventually(lambda: get_json(testbed, "placement", "refused", "-n", namespace),
               "the Placement once the policy is gone", timeout=60)  # fmt: skip
    eventually(
        lambda: (condition(get_json(testbed, "mljob", "refused", "-n", namespace), "Scheduled")
                 or {}).get("status") == "True",
        "Scheduled=True once placed",
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Every state has a status


def test_a_job_created_suspended_says_so(
    testbed: RunningTestbed, operator: Operator, namespace: str
) -> None:
    apply(testbed, job_manifest("asleep", namespace, suspend=True))
    status = eventually(
        lambda: (get_json(testbed, "mljob", "asleep", "-n", namespace).get("status") or {})
        .get("phase") == "Suspended"
        and get_json(testbed, "mljob", "asleep", "-n", namespace)["status"],
        "phase Suspended", timeout=15,
    )  # fmt: skip
    scheduled = condition({"status": status}, "Scheduled")
    assert scheduled is not None
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Suspended")
    assert deployed_to(testbed, namespace, "asleep") is None


# ---------------------------------------------------------------------------------------------
# Deletion never hangs on what cannot matter


def test_a_job_whose_tenant_was_deleted_can_be_deleted(
    testbed: RunningTestbed, operator: Operator, namespace: str
) -> None:
    tenant = f"short-lived-{uuid.uuid4().hex[:6]}"
    apply(testbed, {"apiVersion": "continuum.dev/v1alpha1", "kind": "Tenant",
                    "metadata": {"name": tenant}, "spec": {"weight": 1}})  # fmt: skip
    manifest = json.dumps(job_manifest("bereft", namespace, tenant=tenant))
    eventually(
        lambda: testbed.kubectl("apply", "-f", "-", stdin=manifest, check=False) or
        get_json(testbed, "mljob", "bereft", "-n", namespace),
        "the job accepted (the webhook checks its Tenant)",
    )  # fmt: skip
    eventually(lambda: deployed_to(testbed, namespace, "bereft"), "its RayJob in a member")
    testbed.kubectl("delete", "tenant", tenant)
    # The job may still be edited (suspended, say) and deleted.
    testbed.kubectl("patch", "mljob", "bereft", "-n", namespace, "--type=merge",
                    "-p", json.dumps({"metadata": {"labels": {"touched": "yes"}}}))  # fmt: skip
    testbed.kubectl("delete", "mljob", "bereft", "-n", namespace, "--timeout=30s")
    assert get_json(testbed, "mljob", "bereft", "-n", namespace) is None
    assert deployed_to(testbed, namespace, "bereft") is None


def test_a_member_that_never_held_the_job_does_not_hold_up_its_deletion(
    testbed: RunningTestbed, operator: Operator, namespace: str
) -> None:
    kubeconfig = with_server(member_kubeconfig(testbed, "member-1"), "https://127.0.0.1:9")
    with HostileMember(testbed, kubeconfig_text(kubeconfig)) as member:
        assert member.reachable()["status"] == "False"
        apply(testbed, job_manifest("passing", namespace))
        eventually(lambda: deployed_to(testbed, namespace, "passing"), "its RayJob in a member")
        testbed.kubectl("delete", "mljob", "passing", "-n", namespace, "--timeout=20s")
    assert get_json(testbed, "mljob", "passing", "-n", namespace) is None


def test_a_deleted_member_cluster_is_emptied_of_its_shard_resources(
    testbed: RunningTestbed, operator: Operator, namespace: str
) -> None:
    # The cloud member: the only one at frankfurt, where this job's data must stay.
    apply(testbed, job_manifest("homeless", namespace, site="frankfurt", residency="Site"))
    eventually(lambda: deployed_to(testbed, namespace, "homeless") == "member-4",
               "the job's RayJob in member-4")  # fmt: skip
    try:
        testbed.kubectl("delete", "membercluster", "member-4", "--timeout=60s")
        assert rayjobs(testbed, namespace)["member-4"] == []
        events = testbed.kubectl("get", "events", "-n", "default", "-o", "json",
                                 "--field-selector", "involvedObject.name=member-4")  # fmt: skip
        assert "CleanedUp" in events
    finally:
        register_members([testbed.hub, *testbed.members], None)
    eventually(lambda: (reachable(testbed, "member-4") or {}).get("status") == "True",
               "member-4 registered and reachable again")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# One hung member cannot stall the others


def test_a_hung_member_costs_its_own_work_only(
    testbed: RunningTestbed, operator: Operator, namespace: str
) -> None:
    # Work on every member before the hang, the hung one included, as in a real outage.
    sites = ["delft", "eindhoven", "ghent", "frankfurt"]
    apply(testbed, *(job_manifest(f"before-{i}", namespace, site=sites[i % 4])
                     for i in range(12)))  # fmt: skip
    eventually(lambda: all(deployed_to(testbed, namespace, f"before-{i}") for i in range(12)),
               "the first jobs deployed")  # fmt: skip
    testbed.testbed.pause("member-3")
    stopped = time.monotonic()
    try:
        # New jobs bound for healthy members (delft is member-1, eindhoven member-2).
        applied: dict[str, float] = {}
        for i in range(10):
            name = f"after-{i}"
            apply(testbed, job_manifest(name, namespace, site=("delft", "eindhoven")[i % 2],
                                        residency="Site"))  # fmt: skip
            applied[name] = time.monotonic()
        waits = {}
        for name, at in applied.items():
            eventually(lambda n=name: deployed_to(testbed, namespace, n, skip="member-3"),  # type: ignore[misc]
                       f"{name}'s RayJob")  # fmt: skip
            waits[name] = time.monotonic() - at
        # Each poll of deployed_to lists three members with kubectl; a hung member that
        # stalls the others makes this 90 s and more.
        assert max(waits.values()) < 10, waits
        gone = eventually(
            lambda: (c := reachable(testbed, "member-3")) and c["status"] == "False" and c,
            "member-3 reported unreachable",
        )
        detected_s = time.monotonic() - stopped
        # Probe interval plus the member timeout, plus the time to write and see the status.
        assert detected_s <= PROBE_INTERVAL_S + MEMBER_TIMEOUT_S + 6, detected_s
        assert gone["reason"] == "Timeout"
        code, body = operator.probe("/readyz?verbose")
        assert code == 200
        assert re.search(r"\[-\]member member-3 not answering", body), body
        assert operator.probe("/healthz")[0] == 200
    finally:
        testbed.testbed.resume("member-3")
    eventually(lambda: (reachable(testbed, "member-3") or {}).get("status") == "True",
               "member-3 back")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# One cluster registered twice


def second_registration_of_member_1(name: str) -> dict[str, Any]:
    """A MemberCluster `name` registering member-1's cluster again, with member-1's Secret."""
    return {
        "apiVersion": "continuum.dev/v1alpha1", "kind": "MemberCluster",
        "metadata": {"name": name},
        "spec": {"tier": "Edge", "site": "delft", "region": "eu-west",
                 "kubeconfigSecretRef": {"name": "member-1-kubeconfig", "namespace": SYSTEM},
                 "capacity": {"cpu": "8", "memory": "32Gi"}},
    }  # fmt: skip


def test_one_cluster_registered_twice_is_refused_and_nothing_flaps(
    testbed: RunningTestbed, operator: Operator, namespace: str
) -> None:
    apply(testbed, job_manifest("steady", namespace, site="delft", residency="Site"))
    eventually(lambda: deployed_to(testbed, namespace, "steady") == "member-1",
               "the job's RayJob in member-1")  # fmt: skip
    apply(testbed, second_registration_of_member_1("member-1-twin"))
    try:
        ready = eventually(
            lambda: (c := condition(get_json(testbed, "membercluster", "member-1-twin"),
                                    "Ready")) and c["reason"] == "DuplicateCluster" and c,
            "the twin refused as a duplicate",
        )  # fmt: skip
        assert ready["status"] == "False"
        assert "member-1" in ready["message"]
        first = rayjobs(testbed, namespace)["member-1"]
        uids = {item["metadata"]["uid"] for item in first}
        time.sleep(3 * PROBE_INTERVAL_S)
        assert {item["metadata"]["uid"] for item in rayjobs(testbed, namespace)["member-1"]} == uids
        original = condition(get_json(testbed, "membercluster", "member-1"), "Ready")
        assert original is not None and original["status"] == "True"
    finally:
        testbed.kubectl("delete", "membercluster", "member-1-twin", "--timeout=60s", check=False)


def test_deleting_the_second_registration_of_a_cluster_leaves_its_shards(
    testbed: RunningTestbed, operator: Operator, namespace: str
) -> None:
    apply(testbed, job_manifest("shared", namespace, site="delft", residency="Site"))
    eventually(lambda: deployed_to(testbed, namespace, "shared") == "member-1",
               "the job's RayJob in member-1")  # fmt: skip
    uids = {item["metadata"]["uid"] for item in rayjobs(testbed, namespace)["member-1"]}
    apply(testbed, second_registration_of_member_1("member-1-second"))
    try:
        eventually(
            lambda: (c := condition(get_json(testbed, "membercluster", "member-1-second"),
                                    "Ready")) and c["reason"] == "DuplicateCluster",
            "the second registration refused as a duplicate",
        )  # fmt: skip
    finally:
        testbed.kubectl("delete", "membercluster", "member-1-second", "--timeout=60s")
    time.sleep(PROBE_INTERVAL_S)
    left = {item["metadata"]["uid"] for item in rayjobs(testbed, namespace).get("member-1", [])}
    assert left == uids, "the cluster's other MemberCluster still runs the job there"


# ---------------------------------------------------------------------------------------------
# A shard that cannot move


def test_a_shard_that_cannot_move_says_so_during_an_outage(
    testbed: RunningTestbed, operator: Operator, namespace: str
) -> None:
    apply(testbed, job_manifest("rooted", namespace, site="eindhoven", residency="Site"))
    eventually(lambda: deployed_to(testbed, namespace, "rooted") == "member-2",
               "the job's RayJob in member-2")  # fmt: skip
    api = member_api(testbed, "member-2")
    kuberay_sim.advance(api, namespace, to=kuberay_sim.Target.RUNNING)
    api.close()
    testbed.testbed.pause("member-2")
    try:
        unavailable = eventually(
            lambda: (c := condition(get_json(testbed, "mljob", "rooted", "-n", namespace),
                                    "ShardsUnavailable")) and c["status"] == "True" and c,
            "ShardsUnavailable=True on the job",
        )  # fmt: skip
        assert unavailable["reason"] == "MemberUnreachable"
        assert "shard 0 on member-2" in unavailable["message"]
        applied = condition(get_json(testbed, "placement", "rooted", "-n", namespace), "Applied")
        assert applied is not None and applied["status"] == "False"
        assert applied["reason"] == "MembersUnreachable"
        time.sleep(2 * PROBE_INTERVAL_S)
        warnings = [e for e in events_for(testbed, namespace, "rooted")
                    if e["reason"] == "ShardsUnavailable"]  # fmt: skip
        assert len(warnings) == 1
    finally:
        testbed.testbed.resume("member-2")
    eventually(
        lambda: (condition(get_json(testbed, "mljob", "rooted", "-n", namespace),
                           "ShardsUnavailable") or {}).get("status") == "False",
        "ShardsUnavailable=False once member-2 is back",
    )  # fmt: skip
    assert any(e["reason"] == "ShardsAvailable" for e in events_for(testbed, namespace, "rooted"))


# ---------------------------------------------------------------------------------------------
# Read in the code


def test_an_update_keeps_what_other_writers_put_on_a_shard_resource(
    testbed: RunningTestbed, operator: Operator, namespace: str
) -> None:
    apply(testbed, job_manifest("annotated", namespace, site="delft", residency="Site"))
    eventually(lambda: deployed_to(testbed, namespace, "annotated") == "member-1",
               "the job's RayJob in member-1")  # fmt: skip
    member = testbed.members[0]
    (item,) = rayjobs(testbed, namespace)["member-1"]
    name = item["metadata"]["name"]
    checkpoint = "continuum.dev/last-checkpoint=2026-12-06T08:00:00Z"
    testbed.kubectl("annotate", "rayjob", name, "-n", namespace, "example.com/owner=team-a",
                    checkpoint, cluster=member)  # fmt: skip
    testbed.kubectl("patch", "mljob", "annotated", "-n", namespace, "--type=merge", "-p",
                    json.dumps({"spec": {"ray": {"image": "rayproject/ray:2.51.0"}}}))  # fmt: skip

    def updated() -> dict[str, Any] | None:
        current = get_json(testbed, "rayjob", name, "-n", namespace, cluster=member)
        image = current["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"][
            "containers"
        ][0]["image"]
        return current if image == "rayproject/ray:2.51.0" else None

    current = eventually(updated, "the RayJob updated to the new image")
    annotations = current["metadata"]["annotations"]
    assert annotations["example.com/owner"] == "team-a"
    assert annotations["continuum.dev/last-checkpoint"] == "2026-12-06T08:00:00Z"
