"""Registers the testbed's member clusters in its hub: a kubeconfig Secret and a MemberCluster each.

The members' tier, site and declared capacity come from a topology file in the benchmark format
(e2e/topology/default.yaml unless one is given): member-1 .. member-(N-1) take the edge clusters in
the file's order, and the last member takes the first cloud cluster.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from e2e.binaries import kubectl


class ClusterInfo(Protocol):
    """What registration needs of a cluster (the testbed's ClusterInfo has it): registration
    stays below the testbed, which calls it."""

    @property
    def name(self) -> str: ...

    @property
    def kubeconfig(self) -> Path: ...


DEFAULT_TOPOLOGY = Path(__file__).resolve().parent / "topology" / "default.yaml"
NETWORK_CONFIG_MAP = "continuum-network"
SYSTEM_NAMESPACE = "continuum-system"
SECRET_KEY = "kubeconfig"


class TopologyError(ValueError):
    pass


def load_topology(path: Path) -> dict[str, Any]:
    import yaml

    try:
        topology = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise TopologyError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(topology, dict) or not isinstance(topology.get("clusters"), list):
        raise TopologyError(f"{path}: needs a list `clusters`")
    return topology


def assign_clusters(topology: dict[str, Any], members: int, source: Path) -> list[dict[str, Any]]:
    """The topology cluster each member stands for, member-1 first."""
    if members == 0:
        return []
    edges = [cluster for cluster in topology["clusters"] if cluster.get("tier") == "Edge"]
    clouds = [cluster for cluster in topology["clusters"] if cluster.get("tier") == "Cloud"]
    if not clouds:
        raise TopologyError(
            f"{source}: the last member is the cloud, but no cluster has tier Cloud"
        )
    if len(edges) < members - 1:
        raise TopologyError(
            f"{source}: {members} members need {members - 1} edge clusters, "
            f"the file has {len(edges)}"
        )
    return [*edges[: members - 1], clouds[0]]


def latency_file(topology_file: Path) -> Path:
    """The latency CSV that goes with a topology file: `<stem>-latency.csv` beside it."""
    return topology_file.with_name(f"{topology_file.stem}-latency.csv")


def regions(topology: dict[str, Any]) -> dict[str, str]:
    """Each site's region, by site name."""
    return {site["name"]: site.get("region", "") for site in topology.get("sites", [])}


def network_objects(source: Path) -> list[dict[str, Any]]:
    """What every member's registration shares: the operator's namespace and, if the topology
    has a latency CSV beside it, the network ConfigMap."""
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM_NAMESPACE}}
    ]
    latency = latency_file(source)
    if latency.exists():
        # The operator reads site-to-site RTT and bandwidth from here (the latency CSV format).
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": NETWORK_CONFIG_MAP, "namespace": SYSTEM_NAMESPACE},
                "data": {"latency.csv": latency.read_text()},
            }
        )
    return objects


def manifests(
    members: Sequence[ClusterInfo], topology: dict[str, Any], source: Path
) -> list[dict[str, Any]]:
    region_of = regions(topology)
    objects = network_objects(source)
    for member, cluster in zip(
        members, assign_clusters(topology, len(members), source), strict=True
    ):
        secret_name = f"{member.name}-kubeconfig"
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": secret_name, "namespace": SYSTEM_NAMESPACE},
                "type": "Opaque",
                "stringData": {SECRET_KEY: member.kubeconfig.read_text()},
            }
        )
        objects.append(
            {
                "apiVersion": "continuum.dev/v1alpha1",
                "kind": "MemberCluster",
                "metadata": {
                    "name": member.name,
                    "labels": {"continuum.dev/topology-cluster": cluster["name"]},
                },
                "spec": {
                    "tier": cluster["tier"],
                    "site": cluster["site"],
                    "region": region_of.get(cluster["site"], ""),
                    "kubeconfigSecretRef": {
                        "name": secret_name,
                        "namespace": SYSTEM_NAMESPACE,
                        "key": SECRET_KEY,
                    },
                    "capacity": {
                        "cpu": str(cluster.get("cpu", 0)),
                        "memory": f"{cluster.get('memoryGiB', 0)}Gi",
                        "gpu": str(cluster.get("gpu", 0)),
                    },
                    "costPerHour": float(cluster.get("costPerHour", 0.0)),
                },
            }
        )
    return objects


def register_members(clusters: Sequence[ClusterInfo], topology_file: Path | None) -> None:
    """`clusters` as `Testbed.up` returns them: the hub first, then the members in order."""
    source = topology_file or DEFAULT_TOPOLOGY
    hub, *members = clusters
    apply(hub, manifests(members, load_topology(source), source))


def apply(hub: ClusterInfo, objects: Sequence[dict[str, Any]]) -> None:
    """Server-side applies `objects` to the hub."""
    document = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
    result = kubectl(
        hub.kubeconfig, "apply", "--server-side", "-f", "-", stdin=document, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"registering members in the hub failed:\n{result.stderr}")
