"""`continuum member join` on the testbed's hub: each Pull member's agent token reads and writes
its own member's objects and nothing else. With a's token the agent's requests on a succeed;
with b's token every one of them is refused (403), and so is listing every member, MLJob,
Placement or Secret. Joining twice changes nothing, and `member leave` removes it all.

The requests go to the hub as the agent would send them, over HTTPS with the token and the CA
that join printed, and no client library between."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from continuum.operator.api.kubeconfig import check_kubeconfig
from continuum.operator.api.work import work_name
from e2e.operator_process import REPO, get_json
from e2e.pytest_plugin import RunningTestbed, eventually

pytestmark = pytest.mark.integration

CONTINUUM = "/apis/continuum.dev/v1alpha1"
LEASES = "/apis/coordination.k8s.io/v1"
MEMBERS = ("a", "b")
JOB_NAMESPACE, JOB = "team-rbac", "trainer"
WORK = work_name(JOB_NAMESPACE, JOB)
# The RBAC authorizer and the token authenticator see a new binding or account from their
# informers, a moment after it is written.
AUTHORIZER_WAIT_S = 30.0
COMMAND_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Agent:
    """What join handed one member's installer: the hub, its CA and the agent's token."""

    member: str
    server: str
    context: ssl.SSLContext
    token: str

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json") -> int:  # fmt: skip
        """The HTTP status the hub answers this agent's request with."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.server + path, data=data, method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": content_type,
                     "Accept": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.context) as response:
                response.read()
                status: int = response.status
                return status
        except urllib.error.HTTPError as error:
            return error.code


def join(testbed: RunningTestbed, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "continuum.operator.cli", "member", "join", name,
         "--site", f"site-{name}", "--tier", "Edge", "--capacity", "cpu=8,memory=32Gi",
         "--kubeconfig", str(testbed.hub.kubeconfig), *extra],
        cwd=REPO, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False,
    )  # fmt: skip


def leave(testbed: RunningTestbed, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "continuum.operator.cli", "member", "leave", name,
         "--kubeconfig", str(testbed.hub.kubeconfig)],
        cwd=REPO, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False,
    )  # fmt: skip


def joined(testbed: RunningTestbed, name: str) -> Agent:
    """Joins `name` and returns its agent, once the hub authorizes that agent."""
    result = join(testbed, name)
    assert result.returncode == 0, result.stderr
    values = yaml.safe_load(result.stdout)
    assert set(values) == {"member", "hub"} and values["member"] == name
    hub = values["hub"]
    assert hub["server"] == testbed.hub.server
    assert datetime.fromisoformat(hub["tokenExpiry"]) > datetime.now(UTC)
    assert hub["token"] not in result.stderr
    ca = base64.b64decode(hub["caData"]).decode()
    agent = Agent(name, hub["server"], ssl.create_default_context(cadata=ca), hub["token"])
    eventually(lambda: agent.request("GET", lease_path(name)) == 200,
               f"the hub to authorize {name}'s agent", AUTHORIZER_WAIT_S, interval=0.2)  # fmt: skip
    return agent


def works_path(member: str) -> str:
    return f"{CONTINUUM}/namespaces/continuum-member-{member}/memberworks"


def lease_path(member: str) -> str:
    return f"{LEASES}/namespaces/continuum-member-{member}/leases/agent"


def put_work(testbed: RunningTestbed, member: str) -> None:
    """A MemberWork in the member's namespace, as the operator would write it."""
    work = {
        "apiVersion": "continuum.dev/v1alpha1", "kind": "MemberWork",
        "metadata": {"name": WORK, "namespace": f"continuum-member-{member}"},
        "spec": {"member": member, "placementEpoch": 1,
                 "jobRef": {"namespace": JOB_NAMESPACE, "name": JOB, "uid": str(uuid.uuid4())}},
    }  # fmt: skip
    testbed.kubectl("apply", "-f", "-", stdin=json.dumps(work))


def lease_update(testbed: RunningTestbed, member: str, holder: str) -> dict[str, Any]:
    """The member's Lease as the admin reads it, with the agent's renewal in it: the body of
    an UPDATE."""
    lease: dict[str, Any] = get_json(testbed, "lease", "agent", "-n", f"continuum-member-{member}")
    lease["spec"] = {**lease.get("spec", {}), "holderIdentity": holder,
                     "renewTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                     "leaseDurationSeconds": 15}  # fmt: skip
    return lease


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def agent_requests(testbed: RunningTestbed, member: str) -> dict[str, tuple[str, str, Any, str]]:
    """What member's agent does on the hub, by name: (method, path, body, content type)."""
    merge = "application/merge-patch+json"
    works = works_path(member)
    cluster = f"{CONTINUUM}/memberclusters/{member}"
    return {
        "get memberwork": ("GET", f"{works}/{WORK}", None, ""),
        "list memberworks": ("GET", works, None, ""),
        "watch memberworks": ("GET", f"{works}?watch=true&timeoutSeconds=1", None, ""),
        "patch memberwork status": (
            "PATCH", f"{works}/{WORK}/status", {"status": {"reportTime": now()}}, merge),
        "update lease": (
            "PUT", lease_path(member), lease_update(testbed, member, f"{member}/agent-1"), ""),
        "get membercluster": ("GET", cluster, None, ""),
        "list its membercluster": (
            "GET", f"{CONTINUUM}/memberclusters?fieldSelector=metadata.name%3D{member}", None, ""),
        "watch its membercluster": (
            "GET", f"{CONTINUUM}/memberclusters?fieldSelector=metadata.name%3D{member}"
            "&watch=true&timeoutSeconds=1", None, ""),
    }  # fmt: skip


# Refused to every agent: no member reads the fleet, the jobs, the placements or any Secret.
FORBIDDEN_TO_ALL = {
    "list memberclusters": f"{CONTINUUM}/memberclusters",
    "list mljobs": f"{CONTINUUM}/mljobs",
    "list placements": f"{CONTINUUM}/placements",
    "list memberworks anywhere": f"{CONTINUUM}/memberworks",
    "list secrets": "/api/v1/secrets",
    "list secrets in its namespace": "/api/v1/namespaces/continuum-member-{member}/secrets",
    "list leases anywhere": f"{LEASES}/leases",
}


@pytest.fixture(scope="module")
def agents(testbed: RunningTestbed) -> Iterator[dict[str, Agent]]:
    try:
        joined_agents = {name: joined(testbed, name) for name in MEMBERS}
        for name in MEMBERS:
            put_work(testbed, name)
        yield joined_agents
    finally:
        for name in MEMBERS:
            leave(testbed, name)


def statuses(agent: Agent, requests: dict[str, tuple[str, str, Any, str]]) -> dict[str, int]:
    return {what: agent.request(method, path, body, content_type or "application/json")
            for what, (method, path, body, content_type) in requests.items()}  # fmt: skip


@pytest.mark.parametrize(("owner", "other"), [("a", "b"), ("b", "a")])
def test_an_agent_works_on_its_own_member(
    testbed: RunningTestbed, agents: dict[str, Agent], owner: str, other: str
) -> None:
    answered = statuses(agents[owner], agent_requests(testbed, owner))
    assert answered == {what: 200 for what in answered}
    lease = get_json(testbed, "lease", "agent", "-n", f"continuum-member-{owner}")
    assert lease["spec"]["holderIdentity"] == f"{owner}/agent-1"


@pytest.mark.parametrize(("owner", "other"), [("a", "b"), ("b", "a")])
def test_another_members_agent_is_refused_everything_of_it(
    testbed: RunningTestbed, agents: dict[str, Agent], owner: str, other: str
) -> None:
    answered = statuses(agents[other], agent_requests(testbed, owner))
    assert answered == {what: 403 for what in answered}


@pytest.mark.parametrize("name", MEMBERS)
def test_no_agent_lists_the_fleet_the_jobs_or_secrets(agents: dict[str, Agent], name: str) -> None:
    agent = agents[name]
    answered = {what: agent.request("GET", path.format(member=name))
                for what, path in FORBIDDEN_TO_ALL.items()}  # fmt: skip
    assert answered == {what: 403 for what in answered}


def test_no_agent_makes_or_deletes_work_or_leases(
    testbed: RunningTestbed, agents: dict[str, Agent]
) -> None:
    agent = agents["a"]
    work = {"apiVersion": "continuum.dev/v1alpha1", "kind": "MemberWork",
            "metadata": {"name": "forged"},
            "spec": {"member": "a", "placementEpoch": 1,
                     "jobRef": {"namespace": "x", "name": "y", "uid": "z"}}}  # fmt: skip
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "agent-2"}}  # fmt: skip
    assert {
        "create memberwork": agent.request("POST", works_path("a"), work),
        "patch memberwork spec": agent.request(
            "PATCH", f"{works_path('a')}/{WORK}", {"spec": {"finished": True}},
            "application/merge-patch+json"),
        "delete memberwork": agent.request("DELETE", f"{works_path('a')}/{WORK}"),
        "create another lease": agent.request(
            "POST", f"{LEASES}/namespaces/continuum-member-a/leases", lease),
        "delete its lease": agent.request("DELETE", lease_path("a")),
        # Its report rides on its Lease: it cannot set its own member's Ready.
        "patch its membercluster status": agent.request(
            "PATCH", f"{CONTINUUM}/memberclusters/a/status",
            {"status": {"conditions": []}}, "application/merge-patch+json"),
        "patch its membercluster spec": agent.request(
            "PATCH", f"{CONTINUUM}/memberclusters/a", {"spec": {"tier": "Cloud"}},
            "application/merge-patch+json"),
    } == {what: 403 for what in ("create memberwork", "patch memberwork spec",
                                  "delete memberwork", "create another lease",
                                  "delete its lease", "patch its membercluster status",
                                  "patch its membercluster spec")}  # fmt: skip


def hub_objects(testbed: RunningTestbed, name: str) -> dict[str, dict[str, Any]]:
    namespace = f"continuum-member-{name}"
    found = {
        "namespace": get_json(testbed, "namespace", namespace),
        "serviceaccount": get_json(testbed, "serviceaccount", "agent", "-n", namespace),
        "lease": get_json(testbed, "lease", "agent", "-n", namespace),
        "role": get_json(testbed, "role", "continuum-agent", "-n", namespace),
        "rolebinding": get_json(testbed, "rolebinding", "continuum-agent", "-n", namespace),
        "clusterrole": get_json(testbed, "clusterrole", f"continuum-agent:{name}"),
        "clusterrolebinding": get_json(testbed, "clusterrolebinding", f"continuum-agent:{name}"),
        "membercluster": get_json(testbed, "membercluster", name),
    }
    missing = [kind for kind, body in found.items() if body is None]
    assert not missing, f"join made no {missing}"
    return found


def test_joining_again_changes_nothing_and_still_works(
    testbed: RunningTestbed, agents: dict[str, Agent]
) -> None:
    first = agents["a"]
    # The agent holds its lease: a second join must leave the agent's fields alone.
    assert first.request("PUT", lease_path("a"), lease_update(testbed, "a", "a/agent-7")) == 200
    before = hub_objects(testbed, "a")
    again = joined(testbed, "a")
    after = hub_objects(testbed, "a")
    assert {kind: body["metadata"]["resourceVersion"] for kind, body in after.items()} == {
        kind: body["metadata"]["resourceVersion"] for kind, body in before.items()
    }
    assert after["lease"]["spec"]["holderIdentity"] == "a/agent-7"
    assert again.token != first.token
    for agent in (first, again):  # a new token does not revoke the one an agent holds
        assert agent.request("GET", f"{works_path('a')}/{WORK}") == 200
        assert agent.request("GET", f"{works_path('b')}/{WORK}") == 403


def test_the_kubeconfig_output_is_a_hub_kubeconfig_for_the_agent(
    testbed: RunningTestbed, agents: dict[str, Agent]
) -> None:
    result = join(testbed, "b", "--output", "kubeconfig", "--token-ttl", "1h")
    assert result.returncode == 0, result.stderr
    document = yaml.safe_load(result.stdout)
    assert check_kubeconfig(document) is None
    [user] = document["users"]
    token = user["user"]["token"]
    assert token not in result.stderr
    [cluster] = document["clusters"]
    ca = base64.b64decode(cluster["cluster"]["certificate-authority-data"]).decode()
    agent = Agent("b", cluster["cluster"]["server"], ssl.create_default_context(cadata=ca), token)
    assert agent.request("GET", f"{works_path('b')}/{WORK}") == 200
    assert agent.request("GET", f"{works_path('a')}/{WORK}") == 403


def test_leave_removes_the_member_and_its_credential(testbed: RunningTestbed) -> None:
    name = f"leaving-{uuid.uuid4().hex[:6]}"
    agent = joined(testbed, name)
    result = leave(testbed, name)
    assert result.returncode == 0, result.stderr
    assert get_json(testbed, "membercluster", name) is None
    assert get_json(testbed, "clusterrole", f"continuum-agent:{name}") is None
    assert get_json(testbed, "clusterrolebinding", f"continuum-agent:{name}") is None
    eventually(lambda: get_json(testbed, "namespace", f"continuum-member-{name}") is None,
               "the member's namespace to go", 60.0, interval=0.5)  # fmt: skip
    # Its account is gone, and with it the token's validity.
    eventually(
        lambda: agent.request("GET", lease_path(name)) == 401,
        "the departed agent's token to be refused", AUTHORIZER_WAIT_S, interval=0.2,
    )  # fmt: skip
    again = leave(testbed, name)
    assert again.returncode == 0, again.stderr


def test_bad_arguments_and_push_members_are_refused_by_name(testbed: RunningTestbed) -> None:
    for extra, argument in [(("Bad_Name",), "NAME"), (("ok", "--tier", "Fog"), "--tier"),
                            (("ok", "--capacity", "cpu=lots"), "--capacity"),
                            (("ok", "--token-ttl", "1d"), "--token-ttl"),
                            (("ok", "--server", "hub:6443"), "--server")]:  # fmt: skip
        result = join(testbed, *extra)
        assert result.returncode == 2, (extra, result.stderr)
        assert f"{argument}" in result.stderr, (extra, result.stderr)
    assert get_json(testbed, "membercluster", "ok") is None
    assert get_json(testbed, "namespace", "continuum-member-ok") is None
    pushed = {"apiVersion": "continuum.dev/v1alpha1", "kind": "MemberCluster",
              "metadata": {"name": "pushed"},
              "spec": {"tier": "Cloud", "site": "cloud", "region": "cloud",
                       "kubeconfigSecretRef": {"name": "pushed"}}}  # fmt: skip
    testbed.kubectl("apply", "-f", "-", stdin=json.dumps(pushed))
    try:
        result = join(testbed, "pushed")
        assert result.returncode == 2 and "exists as a Push member" in result.stderr
        assert get_json(testbed, "namespace", "continuum-member-pushed") is None
        assert leave(testbed, "pushed").returncode == 2
        assert get_json(testbed, "membercluster", "pushed") is not None
    finally:
        testbed.kubectl("delete", "membercluster", "pushed", "--wait=false", check=False)
