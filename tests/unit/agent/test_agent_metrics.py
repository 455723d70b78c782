"""The agent's metrics, scraped over a real HTTP socket: its lease's age and its round trip to
the hub, in a registry of its own."""

from __future__ import annotations

import urllib.request

import pytest
from kubernetes import client

from continuum.operator.agent.lease import LeaseKeeper
from continuum.operator.agent.metrics import agent_registry, serve
from continuum.operator.cli import build_parser

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def scrape(port: int) -> dict[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return dict(
        line.split(" ", 1) for line in text.splitlines() if line.startswith("continuum_agent_")
    )


def test_the_lease_age_and_the_round_trip_are_scraped_as_they_are_now() -> None:
    clock = Clock()
    lease = LeaseKeeper(client.ApiClient(), "edge-1", "edge-1/host/1", clock=clock)
    server = serve("127.0.0.1", 0, agent_registry(lease))
    port = server.server_address[1]
    try:
        assert scrape(port) == {
            "continuum_agent_lease_age_seconds": "NaN",
            "continuum_agent_hub_rtt_seconds": "NaN",
        }
        lease.last_renewed, lease.hub_rtt_ms = 498.0, 42.0
        clock.now = 503.5
        assert scrape(port) == {
            "continuum_agent_lease_age_seconds": "5.5",
            "continuum_agent_hub_rtt_seconds": "0.042",
        }
    finally:
        server.shutdown()
        server.server_close()


def test_the_agent_command_needs_its_member() -> None:
    args = build_parser().parse_args(["agent", "--member", "edge-1", "--metrics-port", "9"])
    assert (args.member, args.kubeconfig, args.hub_kubeconfig) == ("edge-1", None, None)
    assert args.metrics_port == 9
    with pytest.raises(SystemExit):
        build_parser().parse_args(["agent"])
