"""The agent's report of its cluster: what the hub's probe would find if it could reach the
cluster (its version, ID, nodes and allocatable, computed as the probe computes them), sent with
every lease renewal in the Lease's continuum.dev/agent-report annotation; the lease adds the
round trip of its last renewal. The operator puts it in the MemberCluster's status.agent: the
agent writes no MemberCluster, so it cannot set its own member's Ready.

The facts are looked at every `CHECK_INTERVAL_S`; the MemberCluster is read every
`interval_s` for the agent times the lease follows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

import continuum
from continuum.operator.adapters.kube import describe_connection_error
from continuum.operator.adapters.member_gate import CONNECTION_ERRORS
from continuum.operator.adapters.member_probe import read_cluster_id, sum_allocatable
from continuum.operator.agent.lease import LeaseKeeper
from continuum.operator.api import GROUP, VERSION, MemberCluster
from continuum.operator.api.membercluster import AgentReport
from continuum.operator.api.validation import validate_as

LOG = logging.getLogger(__name__)
MEMBER_PLURAL = "memberclusters"
REPORT_INTERVAL_S = 30.0
CHECK_INTERVAL_S = 5.0
REQUEST_TIMEOUT_S = 10.0


def _ready(node: Any) -> bool:
    conditions = (node.status.conditions if node.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def node_facts(nodes: Sequence[Any]) -> dict[str, Any]:
    """nodes, nodesReady and allocatable (summed over the Ready, schedulable nodes; none when
    there are none) of the cluster's Node objects."""
    ready = [node for node in nodes if _ready(node)]
    usable = [node for node in ready if not (node.spec and node.spec.unschedulable)]
    return {
        "nodes": len(nodes),
        "nodes_ready": len(ready),
        "allocatable": sum_allocatable(usable) if usable else None,
    }


class ClusterReporter:
    def __init__(
        self,
        member: str,
        hub: client.ApiClient,
        local: client.ApiClient,
        lease: LeaseKeeper,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        interval_s: float = REPORT_INTERVAL_S,
    ) -> None:
        self.member = member
        self._objects = client.CustomObjectsApi(hub)
        self._local = local
        self.lease = lease
        self.clock, self.now, self.interval_s = clock, now, interval_s
        self._cluster_id: str | None = None
        self._sent_at: float | None = None
        self.last_error = ""

    def facts(self) -> AgentReport:
        """What the agent finds of its cluster, without the times and the round trip."""
        version = client.VersionApi(self._local).get_code(_request_timeout=REQUEST_TIMEOUT_S)
        nodes = client.CoreV1Api(self._local).list_node(_request_timeout=REQUEST_TIMEOUT_S).items
        if self._cluster_id is None:
            self._cluster_id = read_cluster_id(self._local, REQUEST_TIMEOUT_S)
        return AgentReport(
            version=continuum.__version__,
            kubernetes_version=version.git_version,
            cluster_id=self._cluster_id,
            **node_facts(nodes),
        )

    def read_timing(self) -> None:
        """Reads the MemberCluster for its agent times (kept by the lease)."""
        body: Any = self._objects.get_cluster_custom_object(
            GROUP, VERSION, MEMBER_PLURAL, self.member, _request_timeout=REQUEST_TIMEOUT_S
        )
        self._take_timing(body)

    def _take_timing(self, body: dict[str, Any]) -> None:
        member = validate_as(MemberCluster, body)
        if isinstance(member, MemberCluster):
            self.lease.set_timing(member.spec.timing)

    def report(self) -> bool:
        """Hands the cluster's facts to the lease, and reads the agent times when they are due;
        returns whether the facts changed."""
        facts = self.facts()
        changed = facts != self.lease.report
        self.lease.set_report(facts)
        due = self._sent_at is None or self.clock() - self._sent_at >= self.interval_s
        if due:
            try:
                self.read_timing()
            except ApiException as error:
                if error.status != 404:
                    raise
                self._failed(f"MemberCluster {self.member} does not exist on the hub")
                return changed
            self._sent_at = self.clock()
        self.last_error = ""
        return changed

    def _failed(self, message: str) -> None:
        if message != self.last_error:
            LOG.warning("reporting the cluster failed: %s", message)
        self.last_error = message

    def run(self, stop: threading.Event) -> None:
        """Checks the cluster every CHECK_INTERVAL_S and reports until `stop` is set."""
        while not stop.is_set():
            try:
                self.report()
            except ApiException as error:
                self._failed(f"HTTP {error.status}: {error.reason}")
            except CONNECTION_ERRORS as error:
                self._failed(describe_connection_error(error))
            stop.wait(CHECK_INTERVAL_S)
