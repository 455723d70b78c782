"""The node agent's reading of a pod: environment and command as the kubelet gives them."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

import pytest

from e2e import pod_network, pod_spec

pytestmark = pytest.mark.unit

FACTS = pod_spec.NodeFacts(node_name="member-1-node", host_ip="10.77.1.1", pod_ip="10.77.1.130")
POD: dict[str, Any] = {
    "metadata": {
        "name": "rc-head-x1",
        "namespace": "team-a",
        "uid": "u-1",
        "labels": {"ray.io/cluster": "rc", "ray.io/group": "headgroup"},
        "annotations": {"note": "n"},
    },
    "spec": {"serviceAccountName": "default"},
}
OBJECTS: dict[tuple[str, str, str], dict[str, str]] = {
    ("configmap", "team-a", "settings"): {"ROUNDS": "5", "MODE": "fast"},
    ("secret", "team-a", "store"): {"token": "s3cr3t"},
}


def lookup(kind: str, namespace: str, name: str) -> Mapping[str, str] | None:
    return OBJECTS.get((kind, namespace, name))


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return pod_spec.env(POD, container, FACTS, lookup)


def test_values_expand_earlier_variables_and_leave_unknown_references_and_escapes() -> None:
    container = {
        "env": [
            {"name": "A", "value": "alpha"},
            {"name": "B", "value": "$(A)-beta $(LATER) $$(A) $(A"},
            {"name": "LATER", "value": "z"},
        ]
    }
    assert env_of(container) == {"A": "alpha", "B": "alpha-beta $(LATER) $(A) $(A", "LATER": "z"}


def test_field_references_are_filled_from_the_pod_and_the_node() -> None:
    paths = {
        "NAME": "metadata.name",
        "NS": "metadata.namespace",
        "UID": "metadata.uid",
        "CLUSTER": "metadata.labels['ray.io/cluster']",
        "NOTE": "metadata.annotations['note']",
        "MISSING_LABEL": "metadata.labels['absent']",
        "NODE": "spec.nodeName",
        "SA": "spec.serviceAccountName",
        "POD_IP": "status.podIP",
        "HOST_IP": "status.hostIP",
    }
    container = {
        "env": [{"name": k, "valueFrom": {"fieldRef": {"fieldPath": v}}} for k, v in paths.items()]
    }
    assert env_of(container) == {
        "NAME": "rc-head-x1", "NS": "team-a", "UID": "u-1", "CLUSTER": "rc", "NOTE": "n",
        "MISSING_LABEL": "", "NODE": "member-1-node", "SA": "default",
        "POD_IP": "10.77.1.130", "HOST_IP": "10.77.1.1",
    }  # fmt: skip


def test_resource_references_round_up_to_the_divisor() -> None:
    container = {
        "resources": {"limits": {"cpu": "1500m", "memory": "4Gi"}, "requests": {"cpu": "250m"}},
        "env": [
            {"name": "CPUS", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "MILLI", "valueFrom": {"resourceFieldRef": {
                "resource": "requests.cpu", "divisor": "1m"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}},
            {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {
                "resource": "limits.memory", "divisor": "1Mi"}}},
        ],
    }  # fmt: skip
    assert env_of(container) == {
        "CPUS": "2", "MILLI": "250", "MEM": str(4 * 2**30), "MEM_MI": "4096",
    }  # fmt: skip


def test_config_maps_and_secrets_by_key_and_whole_with_prefix() -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        "env": [
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "store", "key": "token"}}},
            {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k",
                                                              "optional": True}}},
        ],
    }  # fmt: skip
    assert env_of(container) == {"CFG_ROUNDS": "5", "CFG_MODE": "fast", "TOKEN": "s3cr3t"}


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ({"name": "X", "valueFrom": {"secretKeyRef": {"name": "store", "key": "absent"}}},
         "secretKeyRef store/absent does not exist"),
        ({"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "status.phase"}}},
         "fieldRef.fieldPath 'status.phase'"),
        ({"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "cpu"}}},
         "resourceFieldRef.resource 'cpu'"),
    ],
)  # fmt: skip
def test_what_the_node_cannot_give_is_an_error_naming_the_field(
    variable: dict[str, Any], message: str
) -> None:
    with pytest.raises(pod_spec.PodSpecError, match=message.replace("(", r"\(")):
        env_of({"env": [variable]})


def test_the_command_is_command_then_args_expanded() -> None:
    container = {"command": ["/bin/bash", "-c", "--"], "args": ["ray start --port=$(PORT) $$HOME"]}
    assert pod_spec.argv(container, {"PORT": "6379"}) == [
        "/bin/bash", "-c", "--", "ray start --port=6379 $HOME",
    ]  # fmt: skip
    assert pod_spec.argv({"args": ["python", "x.py"]}, {}) == ["python", "x.py"]
    with pytest.raises(pod_spec.PodSpecError, match="neither command nor args"):
        pod_spec.argv({"name": "c"}, {})


def test_a_sites_pods_take_the_upper_half_of_its_range_and_never_the_gateway() -> None:
    cidr = pod_network.pod_cidr("10.77.3.1")
    assert cidr == ipaddress.IPv4Network("10.77.3.128/25")
    assert pod_network.gateway(cidr) == ipaddress.IPv4Address("10.77.3.129")
    addresses = pod_network.pod_addresses(cidr)
    assert addresses[0] == ipaddress.IPv4Address("10.77.3.130")
    assert pod_network.gateway(cidr) not in addresses and len(addresses) == 125


def test_a_pods_hosts_name_itself_and_the_services() -> None:
    hosts = pod_network.hosts_file(
        "rc-head-x1", "10.77.1.130", [("10.77.1.131", ["svc.team-a.svc.cluster.local", "svc"])]
    )
    assert hosts.splitlines() == [
        "127.0.0.1\tlocalhost",
        "10.77.1.130\trc-head-x1",
        "10.77.1.131\tsvc.team-a.svc.cluster.local svc",
    ]
    assert pod_network.resolv_conf("team-a").startswith(
        "search team-a.svc.cluster.local svc.cluster.local cluster.local\n"
    )


@pytest.mark.parametrize(
    ("pod_context", "own", "expected"),
    [
        ({}, {}, None),
        ({"runAsUser": 1000, "runAsGroup": 2000}, {}, pod_spec.Identity(1000, 2000)),
        ({"runAsUser": 1000}, {"runAsUser": 1001}, pod_spec.Identity(1001, 0)),
        ({"runAsNonRoot": True}, {}, pod_spec.Identity(65532, 65532)),
        ({}, {"runAsNonRoot": True, "runAsGroup": 5}, pod_spec.Identity(65532, 5)),
        ({"runAsNonRoot": True}, {"runAsUser": 7}, pod_spec.Identity(7, 0)),
    ],
)
def test_a_container_runs_as_its_security_context_says_the_containers_over_the_pods(
    pod_context: dict[str, Any], own: dict[str, Any], expected: pod_spec.Identity | None
) -> None:
    pod = {"spec": {"securityContext": pod_context}}
    assert pod_spec.identity(pod, {"name": "c", "securityContext": own}) == expected


def test_a_container_that_must_not_run_as_root_but_asks_for_uid_0_is_refused() -> None:
    pod = {"spec": {"securityContext": {"runAsNonRoot": True}}}
    with pytest.raises(pod_spec.PodSpecError, match="runAsNonRoot is true but runAsUser is 0"):
        pod_spec.identity(pod, {"name": "c", "securityContext": {"runAsUser": 0}})


def test_a_probe_port_is_a_number_or_the_name_of_a_declared_port() -> None:
    container = {"name": "c", "ports": [{"name": "metrics", "containerPort": 9090}]}
    assert pod_spec.container_port(container, "metrics") == 9090
    assert pod_spec.container_port(container, 8080) == 8080
    assert pod_spec.container_port(container, "8080") == 8080
    # As a kubelet says of a name the container does not declare: the probe fails.
    assert pod_spec.container_port(container, "http") is None
