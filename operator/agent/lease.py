"""The agent's Lease on the hub: `agent` in the member's namespace, renewed every
renewIntervalSeconds of the MemberCluster's spec.agent. The operator declares a Pull member lost
from it, not from probes, so a member behind NAT needs no inbound connection.

`member join` creates the Lease (a Role cannot restrict create to one name); the agent only
updates it, at the resourceVersion it last read or wrote, and reads it again after a 409. The
time of the last renewal that took is kept from a monotonic clock: what a fence, which stops the
shards that must not run twice once the agent cannot renew, measures its silence by.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from continuum.operator.adapters.kube import describe_connection_error
from continuum.operator.adapters.member_gate import CONNECTION_ERRORS
from continuum.operator.api.membercluster import AgentReport, AgentTiming
from continuum.operator.api.work import AGENT_NAME, AGENT_REPORT_ANNOTATION, member_namespace

LOG = logging.getLogger(__name__)
# coordination.k8s.io/v1 through the custom-objects client: plain dicts in and out, so the
# server's MicroTimes go back to it as it wrote them (the typed client turns a time on a whole
# second into a string the server refuses as a MicroTime).
LEASE_GROUP, LEASE_VERSION, LEASE_PLURAL = "coordination.k8s.io", "v1", "leases"
# After a renewal that failed, try again this soon, within the renew interval.
RETRY_S = 1.0
MIN_TIMEOUT_S = 1.0


def micro_time(moment: datetime) -> str:
    """metav1.MicroTime's form: UTC, six digits of microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def renewed(
    lease: dict[str, Any],
    holder: str,
    duration_s: int,
    now: datetime,
    report: AgentReport | None = None,
) -> dict[str, Any]:
    """The Lease as this agent renews it: held by `holder`, renewed `now`, for `duration_s`,
    carrying its `report` of the cluster. A holder taking over (a new agent process) sets the
    acquire time and counts a transition."""
    if report is not None:
        metadata = dict(lease.get("metadata") or {})
        metadata["annotations"] = {
            **(metadata.get("annotations") or {}),
            AGENT_REPORT_ANNOTATION: report.model_dump_json(by_alias=True, exclude_none=True),
        }
        lease = {**lease, "metadata": metadata}
    spec = dict(lease.get("spec") or {})
    if spec.get("holderIdentity") != holder:
        if spec.get("holderIdentity"):
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        spec["holderIdentity"] = holder
        spec["acquireTime"] = micro_time(now)
    spec["renewTime"] = micro_time(now)
    spec["leaseDurationSeconds"] = duration_s
    return {**lease, "spec": spec}


class LeaseKeeper:
    """Renews the member's Lease. `clock` is monotonic (the renewal's age and round trip), `now`
    the wall clock written to the Lease."""

    def __init__(
        self,
        hub: client.ApiClient,
        member: str,
        holder: str,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._objects = client.CustomObjectsApi(hub)
        self.namespace = member_namespace(member)
        self.holder = holder
        self.clock, self.now = clock, now
        self.timing = AgentTiming()
        """The MemberCluster's spec.agent times (the defaults until it has been read)."""
        self._lease: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self.last_renewed: float | None = None
        """When (`clock`) the last renewal took; None before the first."""
        self.hub_rtt_ms: float | None = None
        """The round trip of the last renewal that took."""
        self.last_error = ""
        self.report: AgentReport | None = None
        """The agent's report of its cluster, sent with each renewal (`ClusterReporter`)."""

        self._fenced: tuple[int, int | None] = (0, None)

    def set_report(self, report: AgentReport) -> None:
        self.report = report

    def set_fenced(self, shards: int, awaiting: int | None) -> None:
        """How many shards the agent holds fenced, and the oldest session they wait past."""
        self._fenced = (shards, awaiting)

    def set_timing(self, timing: AgentTiming) -> None:
        if timing != self.timing:
            LOG.info("agent times: %s", timing.to_dict() or "the defaults")
        self.timing = timing

    def seconds_since_renewal(self) -> float | None:
        with self._lock:
            last = self.last_renewed
        return None if last is None else self.clock() - last

    def renew(self) -> bool:
        """One renewal: True when it took. A 409 (the Lease moved on since it was read) reads it
        again and tries once more."""
        timing = self.timing
        timeout = max(MIN_TIMEOUT_S, float(timing.renew_interval_seconds))
        try:
            lease = self._lease if self._lease is not None else self._read(timeout)
            try:
                written, rtt_s = self._update(lease, timing.lease_duration_seconds, timeout)
            except ApiException as error:
                if error.status != 409:
                    raise
                written, rtt_s = self._update(
                    self._read(timeout), timing.lease_duration_seconds, timeout
                )
        except ApiException as error:
            self._lease = None
            self._failed(f"HTTP {error.status}: {error.reason}")
            return False
        except CONNECTION_ERRORS as error:
            self._failed(describe_connection_error(error))
            return False
        self._lease = written
        with self._lock:
            self.last_renewed = self.clock()
            self.hub_rtt_ms = rtt_s * 1000
        self.last_error = ""
        return True

    def _read(self, timeout_s: float) -> dict[str, Any]:
        lease: Any = self._objects.get_namespaced_custom_object(
            LEASE_GROUP, LEASE_VERSION, self.namespace, LEASE_PLURAL, AGENT_NAME,
            _request_timeout=timeout_s,
        )  # fmt: skip
        return dict(lease)

    def _update(
        self, lease: dict[str, Any], duration_s: int, timeout_s: float
    ) -> tuple[dict[str, Any], float]:
        """PUTs the renewed Lease at its resourceVersion; returns it as written and the round
        trip in seconds."""
        report = self.report
        if report is not None:
            rtt = self.hub_rtt_ms
            shards, awaiting = self._fenced
            report = report.model_copy(
                update={"hub_rtt_ms": None if rtt is None else round(rtt, 1),
                        "fenced_shards": shards, "awaiting_session": awaiting,
                        "report_time": self.now()}
            )  # fmt: skip
        body = renewed(lease, self.holder, duration_s, self.now(), report)
        started = self.clock()
        written: Any = self._objects.replace_namespaced_custom_object(
            LEASE_GROUP, LEASE_VERSION, self.namespace, LEASE_PLURAL, AGENT_NAME, body,
            _request_timeout=timeout_s,
        )  # fmt: skip
        return dict(written), self.clock() - started

    def _failed(self, message: str) -> None:
        if message != self.last_error:
            LOG.warning("renewing Lease %s/%s failed: %s", self.namespace, AGENT_NAME, message)
        self.last_error = message

    def run(self, stop: threading.Event) -> None:
        """Renews every renew interval until `stop` is set; after a failure, sooner."""
        while not stop.is_set():
            started = self.clock()
            took = self.renew()
            interval = float(self.timing.renew_interval_seconds)
            wait_s = interval if took else min(RETRY_S, interval)
            stop.wait(max(0.0, wait_s - (self.clock() - started)))
