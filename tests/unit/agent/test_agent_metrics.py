"""The agent's endpoint, scraped over a real HTTP socket: its lease's age, its round trip to
the hub and its cluster's nodes, in a registry of its own; and its site's link probes, asked
as a blackbox exporter is asked, with a real ICMP echo."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIServer

import pytest
from kubernetes import client

from continuum.operator.agent.lease import LeaseKeeper
from continuum.operator.agent.metrics import agent_registry, serve
from continuum.operator.agent.probes import LinkProber
from continuum.operator.api.membercluster import AgentReport
from continuum.operator.cli import build_parser
from continuum.operator.cli.agent import hub_host

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def scrape(port: int, path: str = "/metrics", prefix: str = "continuum_agent_") -> dict[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
        text = reply.read().decode()
    return dict(line.split(" ", 1) for line in text.splitlines() if line.startswith(prefix))


def test_the_lease_age_and_the_round_trip_are_scraped_as_they_are_now() -> None:
    clock = Clock()
    lease = LeaseKeeper(client.ApiClient(), "edge-1", "edge-1/host/1", clock=clock)
    server = serve("127.0.0.1", 0, agent_registry(lease))
    port = server.server_address[1]
    try:
        assert scrape(port) == {
            "continuum_agent_lease_age_seconds": "NaN",
            "continuum_agent_hub_rtt_seconds": "NaN",
            "continuum_agent_nodes": "NaN",
            "continuum_agent_nodes_ready": "NaN",
        }
        lease.last_renewed, lease.hub_rtt_ms = 498.0, 42.0
        lease.set_report(AgentReport(nodes=3, nodes_ready=2))
        clock.now = 503.5
        assert scrape(port) == {
            "continuum_agent_lease_age_seconds": "5.5",
            "continuum_agent_hub_rtt_seconds": "0.042",
            "continuum_agent_nodes": "3.0",
            "continuum_agent_nodes_ready": "2.0",
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


@pytest.fixture
def serve_probes() -> Iterator[Callable[[LinkProber | None], int]]:
    """Serves an agent's endpoint with the given prober; its port. Stopped after the test."""
    servers: list[WSGIServer] = []

    def start(prober: LinkProber | None) -> int:
        lease = LeaseKeeper(client.ApiClient(), "edge-1", "edge-1/host/1")
        servers.append(serve("127.0.0.1", 0, agent_registry(lease), prober))
        return servers[-1].server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_probe_of_an_allowed_target_is_one_real_echo_in_the_blackbox_series(
    serve_probes: Callable[[LinkProber | None], int],
) -> None:
    port = serve_probes(LinkProber(["127.0.0.1"]))
    found = scrape(port, "/probe?module=icmp&target=127.0.0.1", prefix="probe_")
    assert found["probe_success"] == "1.0"
    assert 0 < float(found['probe_icmp_duration_seconds{phase="rtt"}']) < 0.8
    assert float(found["probe_duration_seconds"]) >= float(
        found['probe_icmp_duration_seconds{phase="rtt"}']
    )


def test_an_unanswered_echo_is_a_failed_probe_with_no_round_trip(
    serve_probes: Callable[[LinkProber | None], int],
) -> None:
    # A stand-in for the echo: nothing on this machine may be pinged that does not answer
    # without sending traffic off it.
    port = serve_probes(LinkProber(["hub.example"], echo=lambda address, timeout_s: None))
    found = scrape(port, "/probe?target=hub.example", prefix="probe_")
    assert found["probe_success"] == "0.0"
    assert found['probe_icmp_duration_seconds{phase="rtt"}'] == "0.0"


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("target=10.0.0.9", "target '10.0.0.9' is not one this agent probes"),
        ("module=http_2xx&target=127.0.0.1", "module 'http_2xx' is not served: only 'icmp'"),
    ],
)
def test_the_agent_probes_only_the_targets_it_was_given(
    query: str, why: str, serve_probes: Callable[[LinkProber | None], int]
) -> None:
    sent: list[str] = []

    def echo(address: str, timeout_s: float) -> float:
        sent.append(address)
        return 0.001

    port = serve_probes(LinkProber(["127.0.0.1"], echo=echo))
    with pytest.raises(urllib.error.HTTPError) as refused:
        scrape(port, f"/probe?{query}")
    assert refused.value.code == 400 and refused.value.read().decode() == f"{why}\n"
    assert sent == []


def test_without_a_prober_the_agent_answers_no_probe(
    serve_probes: Callable[[LinkProber | None], int],
) -> None:
    port = serve_probes(None)
    with pytest.raises(urllib.error.HTTPError) as missing:
        scrape(port, "/probe?target=127.0.0.1")
    assert missing.value.code == 404


def test_the_hub_is_probed_at_its_api_servers_host() -> None:
    assert hub_host("https://10.20.0.1:6443") == "10.20.0.1"
    assert hub_host("https://hub.example.net") == "hub.example.net"
    args = build_parser().parse_args(["agent", "--member", "e", "--probe-target", "10.0.0.2"])
    assert args.probe_target == ["10.0.0.2"]
