"""Probing a member cluster: its version, nodes and cluster ID, asked through its gated client."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from continuum.operator.adapters.kube import MemberClients, describe_connection_error
from continuum.operator.adapters.member_gate import (
    CONNECTION_ERRORS,
    GatedApiClient,
    MemberUnavailableError,
)
from continuum.operator.api import MemberCluster, ResourceAmounts
from continuum.operator.api.probe import ProbeResult
from continuum.operator.api.quantity import Quantity

CLUSTER_ID_NAMESPACE = "kube-system"


def sum_allocatable(nodes: list[Any]) -> ResourceAmounts:
    """The nodes' allocatable cpu, memory and GPUs, added up."""
    cpu = memory = gpu = Quantity.parse(0).value
    for node in nodes:
        allocatable = node.status.allocatable or {} if node.status else {}
        cpu += Quantity.parse(allocatable.get("cpu", "0")).value
        memory += Quantity.parse(allocatable.get("memory", "0")).value
        gpu += Quantity.parse(allocatable.get("nvidia.com/gpu", "0")).value
    return ResourceAmounts(
        cpu=Quantity.parse(f"{int(cpu * 1000)}m"),
        memory=Quantity.parse(int(memory)),
        gpu=Quantity.parse(f"{int(gpu * 1000)}m"),
    )


def read_cluster_id(api: client.ApiClient, timeout_s: float | None) -> str | None:
    """The kube-system namespace's UID, or None when the credential may not read it."""
    try:
        namespace = client.CoreV1Api(api).read_namespace(
            CLUSTER_ID_NAMESPACE, _request_timeout=timeout_s
        )
    except ApiException as error:
        if error.status in (401, 403, 404):
            return None
        raise
    uid: str | None = namespace.metadata.uid if namespace.metadata else None
    return uid


def _cluster_id(api: GatedApiClient, timeout_s: float | None) -> str | None:
    """The cluster ID; asked once per client, since it never changes."""
    if api.cluster_id is None:
        api.cluster_id = read_cluster_id(api, timeout_s)
    return api.cluster_id


def probe_member(
    members: MemberClients, member: MemberCluster, timeout_s: float | None = None
) -> ProbeResult:
    """Asks the member for its version, its nodes and its cluster ID, each request within
    `timeout_s` (None: the member client's own timeout). Never raises: whatever goes wrong is a
    reason and a message that quote nothing of the member's Secret. Whether another
    MemberCluster registers the same cluster is for the caller to say."""
    name = member.metadata.name or ""
    try:
        api = members.for_member(member)
    except MemberUnavailableError as error:
        return ProbeResult(failure_reason=error.reason, message=error.message)
    except ApiException as error:
        message = f"reading the kubeconfig Secret failed: HTTP {error.status}"
        return ProbeResult(failure_reason="SecretUnreadable", message=message)
    except Exception as error:  # a probe must answer; its text may quote the Secret
        message = f"loading the kubeconfig failed ({type(error).__name__})"
        return ProbeResult(failure_reason="KubeconfigInvalid", message=message)
    try:
        with api.gate.probing():
            started = time.perf_counter()
            version = client.VersionApi(api).get_code(_request_timeout=timeout_s)
            latency_ms = (time.perf_counter() - started) * 1000
            nodes = client.CoreV1Api(api).list_node(_request_timeout=timeout_s).items
            cluster_id = _cluster_id(api, timeout_s) or f"endpoint-{members.endpoint(name)}"
    except ApiException as error:
        api.gate.answering()  # it answered, if only to say no
        reason = {401: "Unauthorized", 403: "Forbidden"}.get(error.status or 0, "APIError")
        message = members.redact(name, f"HTTP {error.status}: {error.reason}")
        return ProbeResult(failure_reason=reason, message=message)
    except CONNECTION_ERRORS as error:
        described = describe_connection_error(error)
        reason = "Timeout" if "within the timeout" in described else "ConnectionFailed"
        return ProbeResult(failure_reason=reason, message=described)
    except Exception as error:  # a probe must answer; its text may quote the member
        return ProbeResult(failure_reason="ProbeFailed",
                           message=f"the probe failed ({type(error).__name__})")  # fmt: skip
    api.gate.answering()
    return ProbeResult(
        kubernetes_version=version.git_version,
        node_allocatable=sum_allocatable(nodes) if nodes else None,
        node_count=len(nodes),
        latency_ms=latency_ms,
        cluster_id=cluster_id,
    )
