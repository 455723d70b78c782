"""Federated jobs across members: where the aggregator shard can be reached, and handing that
address to the participants. Pure.

The aggregator shard listens on FEDERATION_PORT in its Ray head pod. Its address is the head
pod's IP, as KubeRay reports it on the aggregator's RayJob (status.rayClusterStatus.head.podIP):
on the testbed every pod's IP is reachable from the other sites through their links, as it is
in a fleet whose members' pod networks are joined (Submariner, Cilium Cluster Mesh). Edge sites
only dial out: participants connect to the aggregator, never the other way round.

A participant is started with its aggregator's address in its environment
(CONTINUUM_AGGREGATOR_ADDRESS), and so waits to be made until that address is known; a running
participant whose aggregator comes back elsewhere (moved, or restarted by KubeRay on a new pod)
is made again with the new address, and continues from the aggregator's newest round.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from continuum.operator.api import JobMode, MLJob, Placement
from continuum.operator.api.shard_resources import FEDERATION_PORT, RAY_JOB, SHARD_LABELS
from continuum.operator.reconcile.handoff import shard_of

WAITING_FOR_AGGREGATOR: Final = "waits for its aggregator's address"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class AggregatorEndpoint:
    shard: int
    cluster: str
    address: str
    """`host:port`, as participants dial it."""


def aggregator_shard(job: MLJob) -> int | None:
    """The Federated job's aggregator shard (the one after its data sources), or None."""
    if job.spec.mode != JobMode.FEDERATED:
        return None
    return len(job.spec.data)


def head_address(resource: Mapping[str, Any]) -> str | None:
    """The Ray head pod's IP that KubeRay reports on a RayJob, if it is an IP address."""
    status = resource.get("status") or {}
    head = ((status.get("rayClusterStatus") or {}).get("head")) or {}
    value = head.get("podIP")
    if not isinstance(value, str):
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def dial_address(host: str, port: int = FEDERATION_PORT) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def aggregator_endpoint(
    job: MLJob, placement: Placement, held: Mapping[str, Sequence[Manifest]]
) -> AggregatorEndpoint | None:
    """Where the aggregator of this Federated job can be reached now: its copy in the member
    the Placement decides for it (`held`: what each member holds of the job), once that copy's
    head pod has an IP. None for other jobs, and while it has none."""
    shard = aggregator_shard(job)
    decision = next((d for d in placement.spec.decisions if d.shard == shard), None)
    if shard is None or decision is None:
        return None
    for resource in held.get(decision.cluster, ()):
        if shard_of(resource) != shard or resource.get("kind") != RAY_JOB.kind:
            continue
        if "deletionTimestamp" in (resource.get("metadata") or {}):
            continue
        host = head_address(resource)
        if host is not None:
            return AggregatorEndpoint(shard, decision.cluster, dial_address(host))
    return None


def started_with(resource: Mapping[str, Any]) -> str | None:
    """The aggregator address a participant's copy was made with."""
    annotations = (resource.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(SHARD_LABELS.aggregator_address_annotation)
    return value if isinstance(value, str) else None
