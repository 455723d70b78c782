"""The agent's lease: the Lease as it renews it, and a renewal that cannot reach the hub."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest
from kubernetes import client

from continuum.operator.adapters.pull import parse_report
from continuum.operator.agent.lease import LeaseKeeper, micro_time, renewed
from continuum.operator.api.membercluster import AgentReport
from continuum.operator.api.work import AGENT_REPORT_ANNOTATION

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 6, 9, 0, 0, tzinfo=UTC)
LATER = datetime(2026, 12, 6, 9, 0, 5, 250000, tzinfo=UTC)

JOINED = {
    "apiVersion": "coordination.k8s.io/v1",
    "kind": "Lease",
    "metadata": {"name": "agent", "namespace": "continuum-member-edge-1",
                 "resourceVersion": "41", "labels": {"continuum.dev/member": "edge-1"}},
    "spec": {},
}  # fmt: skip


def test_a_micro_time_always_has_six_digits_even_on_a_whole_second() -> None:
    assert micro_time(NOW) == "2026-12-06T09:00:00.000000Z"
    assert micro_time(LATER) == "2026-12-06T09:00:05.250000Z"


def test_the_first_renewal_takes_the_lease_that_join_made() -> None:
    lease = renewed(JOINED, "edge-1/host/12", 15, NOW)
    assert lease["spec"] == {
        "holderIdentity": "edge-1/host/12",
        "acquireTime": "2026-12-06T09:00:00.000000Z",
        "renewTime": "2026-12-06T09:00:00.000000Z",
        "leaseDurationSeconds": 15,
    }
    # What join wrote stays: the PUT carries its labels and the version it was read at.
    assert lease["metadata"] == JOINED["metadata"]
    assert JOINED["spec"] == {}  # not changed in place


def test_a_renewal_moves_the_renew_time_only() -> None:
    first = renewed(JOINED, "edge-1/host/12", 15, NOW)
    second = renewed(first, "edge-1/host/12", 20, LATER)
    assert second["spec"]["acquireTime"] == first["spec"]["acquireTime"]
    assert second["spec"]["renewTime"] == "2026-12-06T09:00:05.250000Z"
    assert second["spec"]["leaseDurationSeconds"] == 20
    assert "leaseTransitions" not in second["spec"]


def test_a_restarted_agent_takes_over_and_counts_a_transition() -> None:
    first = renewed(JOINED, "edge-1/host/12", 15, NOW)
    restarted = renewed(first, "edge-1/host/13", 15, LATER)
    assert restarted["spec"]["holderIdentity"] == "edge-1/host/13"
    assert restarted["spec"]["acquireTime"] == "2026-12-06T09:00:05.250000Z"
    assert restarted["spec"]["leaseTransitions"] == 1


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_renewal_that_cannot_reach_the_hub_keeps_the_last_renewal_time() -> None:
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{_closed_port()}"
    configuration.retries = False
    ticks = iter(range(100, 200))
    keeper = LeaseKeeper(client.ApiClient(configuration), "edge-1", "edge-1/host/12",
                         clock=lambda: float(next(ticks)), now=lambda: NOW)  # fmt: skip
    assert not keeper.renew()
    assert keeper.last_renewed is None and keeper.seconds_since_renewal() is None
    assert keeper.hub_rtt_ms is None
    assert keeper.last_error == "the connection was refused"


def test_the_report_rides_on_the_renewal_and_the_hub_reads_it_back() -> None:
    report = AgentReport(kubernetes_version="v1.37.2", cluster_id="c-1", nodes=2, nodes_ready=1,
                         hub_rtt_ms=12.5, report_time=NOW)  # fmt: skip
    lease = renewed(JOINED, "edge-1/host/12", 15, NOW, report)
    text = lease["metadata"]["annotations"][AGENT_REPORT_ANNOTATION]
    assert parse_report(text) == report
    assert lease["metadata"]["labels"] == JOINED["metadata"]["labels"]
    assert "annotations" not in JOINED["metadata"]  # not changed in place
    assert parse_report("{not json") is None
    assert parse_report('{"nodes": -1}') is None
    assert parse_report("x" * 20000) is None


def test_a_lease_ages_only_while_the_operator_hears_the_hub() -> None:
    from continuum.operator.adapters.pull import LeaseMirror

    now = [100.0]
    api = client.ApiClient(client.Configuration(host="https://127.0.0.1:9"))
    mirror = LeaseMirror(api, clock=lambda: now[0])  # not started: fed by hand
    lease = renewed(JOINED, "edge-1/host/12", 15, NOW)
    mirror._changed("ADDED", lease, None)
    now[0] = 110.0
    assert mirror.age_s("edge-1") == 10.0
    mirror.out_of_touch()  # the hub stops answering the operator
    now[0] = 400.0
    assert mirror.age_s("edge-1") == 10.0  # the hub's outage is not the agent's silence
    mirror.in_touch()
    assert mirror.age_s("edge-1") == 0.0  # a whole lease again, as after a restart
    now[0] = 405.0
    assert mirror.age_s("edge-1") == 5.0
    assert mirror.age_s("another") is None
    # A watch that replays an older version of the Lease does not make the agent look alive.
    older = renewed(JOINED, "edge-1/host/12", 15, datetime(2026, 12, 6, 8, 0, 0, tzinfo=UTC))
    mirror._changed("MODIFIED", older, None)
    assert mirror.age_s("edge-1") == 5.0
    api.close()
