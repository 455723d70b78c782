"""MemberCluster: probe the member through its kubeconfig Secret, write Reachable and Ready."""

from __future__ import annotations

import time
from typing import Any

import kopf
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from continuum.operator import metrics
from continuum.operator.adapters.kube import MEMBER_REQUEST_TIMEOUT_S, MemberUnavailableError
from continuum.operator.api import (
    GROUP,
    VERSION,
    MemberCluster,
    MemberClusterStatus,
    ResourceAmounts,
    validate_resource,
)
from continuum.operator.api.quantity import Quantity
from continuum.operator.handlers.context import OperatorContext
from continuum.operator.reconcile.membership import ProbeResult, probed_status

PROBE_INTERVAL_S = 10.0


def _sum_allocatable(nodes: list[Any]) -> ResourceAmounts:
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


def probe_member(context: OperatorContext, member: MemberCluster) -> ProbeResult:
    try:
        api = context.members.for_member(member)
        started = time.perf_counter()
        version = client.VersionApi(api).get_code(_request_timeout=MEMBER_REQUEST_TIMEOUT_S)
        latency_ms = (time.perf_counter() - started) * 1000
        nodes = client.CoreV1Api(api).list_node(_request_timeout=MEMBER_REQUEST_TIMEOUT_S).items
    except MemberUnavailableError as error:
        return ProbeResult(failure_reason=error.reason, message=error.message)
    except ApiException as error:
        reason = {401: "Unauthorized", 403: "Forbidden"}.get(error.status or 0, "APIError")
        return ProbeResult(failure_reason=reason, message=f"HTTP {error.status}: {error.reason}")
    except (urllib3.exceptions.HTTPError, OSError) as error:
        return ProbeResult(failure_reason="ConnectionFailed", message=str(error)[:1024])
    # Mirrored from the first answer on, so that the first shards sent there find it listed.
    context.member_mirrors.follow(member.metadata.name or "", api)
    return ProbeResult(
        kubernetes_version=version.git_version,
        node_allocatable=_sum_allocatable(nodes) if nodes else None,
        node_count=len(nodes),
        latency_ms=latency_ms,
    )


def _is_ready(status: MemberClusterStatus | None) -> bool:
    conditions = status.conditions if status else []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


@kopf.timer(GROUP, VERSION, "memberclusters", interval=PROBE_INTERVAL_S, idle=0)
def heartbeat(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **_: Any) -> None:
    context: OperatorContext = memo.context
    metrics.RECONCILES.labels("MemberCluster").inc()
    member = validate_resource(body)
    if not isinstance(member, MemberCluster):
        metrics.RECONCILE_ERRORS.labels("MemberCluster").inc()
        raise kopf.PermanentError(f"invalid MemberCluster: {member}")
    before = member.status
    probe = probe_member(context, member)
    context.health.probed(member.metadata.name or "", probe.answered)
    status = probed_status(member, probe, context.clock())
    patch.status.update(status.to_dict())
    if _is_ready(before) != _is_ready(status):
        context.wake_scheduler.set()
