"""The agent's report of its cluster: MemberCluster status.agent on the hub, what the hub's probe
would find if it could reach the cluster (its version, ID, nodes and allocatable, computed as the
probe computes them) and the round trip of the last lease renewal.

Written as a merge patch of that one key, every `interval_s` or as soon as the cluster's facts
change. Its answer carries the MemberCluster's spec, whose agent times the lease follows.
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
from continuum.operator.agent.works import FIELD_MANAGER
from continuum.operator.api import GROUP, VERSION, MemberCluster
from continuum.operator.api.membercluster import AgentReport
from continuum.operator.api.validation import validate_as

LOG = logging.getLogger(__name__)
MEMBER_PLURAL = "memberclusters"
MERGE_PATCH = "application/merge-patch+json"
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
        self._sent: tuple[AgentReport, bool] | None = None
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
        """Writes status.agent if the facts changed since the last report, or it is due;
        returns whether it wrote."""
        facts = self.facts()
        rtt = self.lease.hub_rtt_ms
        # The round trip changes with every renewal: it counts as a change when it becomes known.
        seen = (facts, rtt is not None)
        due = self._sent_at is None or self.clock() - self._sent_at >= self.interval_s
        if not due and seen == self._sent:
            return False
        report = facts.model_copy(
            update={"hub_rtt_ms": None if rtt is None else round(rtt, 1),
                    "report_time": self.now()}
        )  # fmt: skip
        # Every field, absent ones as null: a merge patch removes what it sets to null.
        patch = {"status": {"agent": report.model_dump(mode="json")}}
        try:
            written: Any = self._objects.patch_cluster_custom_object_status(
                GROUP, VERSION, MEMBER_PLURAL, self.member, patch,
                field_manager=FIELD_MANAGER, _content_type=MERGE_PATCH,
                _request_timeout=REQUEST_TIMEOUT_S,
            )  # fmt: skip
        except ApiException as error:
            if error.status != 404:
                raise
            self._failed(f"MemberCluster {self.member} does not exist on the hub")
            return False
        self._sent, self._sent_at = seen, self.clock()
        self._take_timing(written)
        self.last_error = ""
        return True

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
