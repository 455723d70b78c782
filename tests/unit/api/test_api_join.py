"""Joining a Pull member: the hub objects, the agent's grants exactly (each namespaced to the
member's namespace or pinned to its names), the arguments refused by name, and what the
installer is handed."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from continuum.operator.api import MemberCluster, validate_resource
from continuum.operator.api.join import (
    HubCredential,
    JoinError,
    agent_kubeconfig,
    agent_values,
    join_objects,
    parse_capacity,
    parse_duration,
)
from continuum.operator.api.kubeconfig import check_kubeconfig, parse_kubeconfig

pytestmark = pytest.mark.unit

NAMESPACE = "continuum-member-delft"
LABELS = {"continuum.dev/member": "delft", "app.kubernetes.io/managed-by": "continuum"}
AGENT = {"kind": "ServiceAccount", "name": "agent", "namespace": NAMESPACE}
EXPIRY = datetime(2027, 5, 1, 12, 0, tzinfo=UTC)
CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n...").decode()


def objects(**overrides: Any) -> dict[str, dict[str, Any]]:
    arguments: dict[str, Any] = {"name": "delft", "site": "delft", "tier": "Edge",
                                 "region": "eu-west", "capacity": None}  # fmt: skip
    arguments.update(overrides)
    return {body["kind"]: body for body in join_objects(**arguments)}


def refusal(**overrides: Any) -> tuple[str, str]:
    with pytest.raises(JoinError) as raised:
        objects(**overrides)
    return raised.value.argument, str(raised.value)


def test_the_objects_come_in_apply_order_with_the_member_last() -> None:
    listed = join_objects("delft", "delft", "Edge", "eu-west", None)
    assert [(body["kind"], body["metadata"]["name"], body["metadata"].get("namespace"))
            for body in listed] == [
        ("Namespace", NAMESPACE, None),
        ("ServiceAccount", "agent", NAMESPACE),
        ("Lease", "agent", NAMESPACE),
        ("Role", "continuum-agent", NAMESPACE),
        ("RoleBinding", "continuum-agent", NAMESPACE),
        ("ClusterRole", "continuum-agent:delft", None),
        ("ClusterRoleBinding", "continuum-agent:delft", None),
        ("MemberCluster", "delft", None),
    ]  # fmt: skip
    assert all(body["metadata"]["labels"] == LABELS for body in listed)


def test_the_member_is_a_pull_member_without_a_kubeconfig() -> None:
    member = objects(capacity={"cpu": "8", "memory": "32Gi"})["MemberCluster"]
    assert member["apiVersion"] == "continuum.dev/v1alpha1"
    assert member["spec"] == {
        "mode": "Pull", "tier": "Edge", "site": "delft", "region": "eu-west",
        "capacity": {"cpu": "8", "memory": "32Gi"},
    }  # fmt: skip
    model = validate_resource(member)
    assert isinstance(model, MemberCluster)
    assert model.spec.kubeconfig_secret_ref is None


def test_the_region_defaults_to_the_site_and_capacity_may_be_absent() -> None:
    spec = objects(region=None, site="rotterdam")["MemberCluster"]["spec"]
    assert spec == {"mode": "Pull", "tier": "Edge", "site": "rotterdam", "region": "rotterdam"}


def test_the_lease_is_made_empty_for_the_agent_to_hold() -> None:
    lease = objects()["Lease"]
    assert lease["apiVersion"] == "coordination.k8s.io/v1"
    assert "spec" not in lease


def test_the_role_grants_exactly_the_agents_own_work_lease_events_and_token() -> None:
    role = objects()["Role"]
    assert role["rules"] == [
        {"apiGroups": ["continuum.dev"], "resources": ["memberworks"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["continuum.dev"], "resources": ["memberworks/status"],
         "verbs": ["get", "patch", "update"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "resourceNames": ["agent"], "verbs": ["get", "update", "patch"]},
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"],
         "verbs": ["create", "patch"]},
        {"apiGroups": [""], "resources": ["serviceaccounts/token"],
         "resourceNames": ["agent"], "verbs": ["create"]},
    ]  # fmt: skip
    binding = objects()["RoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "continuum-agent"}  # fmt: skip
    assert binding["subjects"] == [AGENT]


def test_the_cluster_role_grants_the_members_own_cluster_object_alone() -> None:
    role = objects()["ClusterRole"]
    assert role["rules"] == [
        {"apiGroups": ["continuum.dev"], "resources": ["memberclusters"],
         "resourceNames": ["delft"], "verbs": ["get", "list", "watch"]},
    ]  # fmt: skip
    binding = objects()["ClusterRoleBinding"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
        "name": "continuum-agent:delft",
    }  # fmt: skip
    assert binding["subjects"] == [AGENT]


@pytest.mark.parametrize("name", ["delft", "a", "site-0042"])
def test_every_grant_is_namespaced_to_the_member_or_pinned_to_its_names(name: str) -> None:
    bodies = join_objects(name, "delft", "Edge", None, None)
    namespace = f"continuum-member-{name}"
    roles = [body for body in bodies if body["kind"] in ("Role", "ClusterRole")]
    bindings = [body for body in bodies if body["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert len(roles) == 2 and len(bindings) == 2
    for role in roles:
        for rule in role["rules"]:
            assert "*" not in [*rule["apiGroups"], *rule["resources"], *rule["verbs"]]
            assert "nonResourceURLs" not in rule
            if role["kind"] == "ClusterRole":
                assert rule["resourceNames"] == [name]
            else:
                assert role["metadata"]["namespace"] == namespace
            # Beyond what it reads, the agent writes only status, its lease, Events and its
            # own token; it never deletes, nor creates anything but Events and the token.
            if set(rule["verbs"]) - {"get", "list", "watch"}:
                assert (rule["resources"][0].endswith("/status") or "resourceNames" in rule
                        or rule["resources"] == ["events"])  # fmt: skip
            assert "delete" not in rule["verbs"] and "deletecollection" not in rule["verbs"]
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "agent", "namespace": namespace}
        ]
        if binding["kind"] == "RoleBinding":
            assert binding["metadata"]["namespace"] == namespace


@pytest.mark.parametrize(
    ("overrides", "argument", "says"),
    [
        ({"name": "Delft"}, "NAME", "DNS label"),
        ({"name": "delft.nl"}, "NAME", "DNS label"),
        ({"name": "-delft"}, "NAME", "DNS label"),
        ({"name": "x" * 47}, "NAME", "at most 46 characters"),
        ({"tier": "Fog"}, "--tier", "'Edge' or 'Cloud'"),
        ({"tier": "edge"}, "--tier", "'Edge' or 'Cloud'"),
        ({"site": "delft west"}, "--site", "label value"),
        ({"site": ""}, "--site", ""),
        ({"region": "eu west"}, "--region", "label value"),
        ({"capacity": {"cpu": "lots"}}, "--capacity", "cpu: 'lots' is not a quantity"),
    ],
)
def test_unusable_arguments_are_refused_by_name(
    overrides: dict[str, Any], argument: str, says: str
) -> None:
    refused, message = refusal(**overrides)
    assert refused == argument
    assert message.startswith(f"{argument}: ") and says in message


def test_the_longest_name_still_makes_a_dns_label_namespace() -> None:
    name = "x" * 46
    namespace = objects(name=name)["Namespace"]["metadata"]["name"]
    assert len(namespace) == 63


def test_capacity_is_parsed_from_key_value_pairs() -> None:
    assert parse_capacity("cpu=8,memory=32Gi") == {"cpu": "8", "memory": "32Gi"}
    assert parse_capacity(" gpu=0.5 ") == {"gpu": "0.5"}
    for text, says in [
        ("cpu", "not KEY=QUANTITY"),
        ("cpu=", "not KEY=QUANTITY"),
        ("=8", "not KEY=QUANTITY"),
        ("disk=1Ti", "'disk' is none of cpu, memory, gpu"),
        ("cpu=1,cpu=2", "cpu is given twice"),
    ]:
        with pytest.raises(JoinError, match=says) as raised:
            parse_capacity(text)
        assert raised.value.argument == "--capacity"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("8760h", 8760 * 3600), ("1h30m", 5400), ("600s", 600), ("10m", 600), ("1h0m1s", 3601)],
)
def test_durations_are_read_as_go_writes_them(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "not a duration"),
        ("1d", "not a duration"),
        ("90", "not a duration"),
        ("1.5h", "not a duration"),
        ("h1", "not a duration"),
        ("1h 30m", "not a duration"),
        ("599s", "between 600 s"),
        ("1193047h", "between 600 s"),
    ],
)
def test_unusable_durations_are_refused(text: str, says: str) -> None:
    with pytest.raises(JoinError, match=says) as raised:
        parse_duration(text)
    assert raised.value.argument == "--token-ttl"


def credential(ca_data: str | None = CA) -> HubCredential:
    return HubCredential("https://hub.example.com:6443", ca_data, "tok-3f9a1c", EXPIRY)


def test_the_values_carry_the_member_the_hub_and_the_token() -> None:
    assert agent_values("delft", credential()) == {
        "member": "delft",
        "hub": {"server": "https://hub.example.com:6443", "caData": CA, "token": "tok-3f9a1c",
                "tokenExpiry": "2027-05-01T12:00:00Z"},
    }  # fmt: skip
    assert "caData" not in agent_values("delft", credential(None))["hub"]


@pytest.mark.parametrize("ca_data", [CA, None])
def test_the_kubeconfig_is_one_the_operator_accepts(ca_data: str | None) -> None:
    rendered = yaml.safe_dump(agent_kubeconfig("delft", credential(ca_data)))
    document, problem = parse_kubeconfig(rendered.encode())
    assert problem is None and document is not None
    assert check_kubeconfig(document) is None
    assert document["current-context"] == "delft"
    [cluster] = document["clusters"]
    assert cluster["cluster"].get("certificate-authority-data") == ca_data
    assert cluster["cluster"]["server"] == "https://hub.example.com:6443"
    [user] = document["users"]
    assert user["user"] == {"token": "tok-3f9a1c"}
    [context] = document["contexts"]
    assert context["context"]["namespace"] == NAMESPACE


def test_a_server_that_is_not_a_url_makes_a_kubeconfig_the_check_refuses() -> None:
    bad = HubCredential("hub.example.com:6443", CA, "tok-3f9a1c", EXPIRY)
    problem = check_kubeconfig(agent_kubeconfig("delft", bad))
    assert problem is not None and problem.field == "clusters[].cluster.server"
