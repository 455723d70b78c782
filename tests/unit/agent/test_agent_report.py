"""What the agent reports of its cluster's nodes: counted as the hub's probe counts them, with
allocatable summed over the Ready, schedulable nodes."""

from __future__ import annotations

import pytest
from kubernetes.client import V1Node, V1NodeCondition, V1NodeSpec, V1NodeStatus, V1ObjectMeta

from continuum.operator.agent.report import node_facts
from continuum.operator.api.quantity import Quantity

pytestmark = pytest.mark.unit


def node(name: str, ready: str | None, cpu: str, memory: str, cordoned: bool = False,
         gpu: str | None = None) -> V1Node:  # fmt: skip
    allocatable = {"cpu": cpu, "memory": memory, **({"nvidia.com/gpu": gpu} if gpu else {})}
    conditions = [] if ready is None else [V1NodeCondition(type="Ready", status=ready)]
    return V1Node(
        metadata=V1ObjectMeta(name=name),
        spec=V1NodeSpec(unschedulable=cordoned),
        status=V1NodeStatus(allocatable=allocatable, conditions=conditions),
    )


def test_allocatable_counts_the_ready_schedulable_nodes() -> None:
    facts = node_facts([
        node("a", "True", "4", "8Gi", gpu="1"),
        node("b", "True", "2500m", "4Gi"),
        node("c", "False", "16", "64Gi"),  # not ready
        node("d", "True", "8", "32Gi", cordoned=True),
        node("e", None, "8", "32Gi"),  # no kubelet has reported
    ])  # fmt: skip
    assert (facts["nodes"], facts["nodes_ready"]) == (5, 3)
    allocatable = facts["allocatable"]
    assert allocatable.cpu == Quantity.parse("6500m")
    assert allocatable.memory == Quantity.parse("12Gi")
    assert allocatable.gpu == Quantity.parse("1")


def test_a_cluster_without_usable_nodes_reports_no_allocatable() -> None:
    assert node_facts([]) == {"nodes": 0, "nodes_ready": 0, "allocatable": None}
    assert node_facts([node("c", "False", "16", "64Gi")])["allocatable"] is None
