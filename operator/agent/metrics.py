"""The agent's Prometheus metrics, in a registry of its own (many agents may share one process,
as the fleet benchmark runs them): its lease's age and its round trip to the hub, the signals a
pull site gives the recovery loop from its side."""

from __future__ import annotations

import math
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from continuum.operator.agent.lease import LeaseKeeper


def agent_registry(lease: LeaseKeeper) -> CollectorRegistry:
    """The metrics of one agent, read from its lease keeper at each scrape."""
    registry = CollectorRegistry()
    age = Gauge(
        "continuum_agent_lease_age_seconds",
        "Seconds since the agent last renewed its Lease on the hub (NaN before the first)",
        registry=registry,
    )
    age.set_function(lambda: _or_nan(lease.seconds_since_renewal()))
    rtt = Gauge(
        "continuum_agent_hub_rtt_seconds",
        "The round trip of the agent's last Lease renewal to the hub",
        registry=registry,
    )
    rtt.set_function(lambda: _or_nan(None if lease.hub_rtt_ms is None else lease.hub_rtt_ms / 1e3))
    return registry


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def serve(address: str, port: int, registry: CollectorRegistry) -> WSGIServer:
    """Serves `registry` on address:port from a daemon thread; `shutdown()` stops it."""
    server, _ = start_http_server(port, addr=address, registry=registry)
    return server
