"""The agent's Prometheus endpoint: its own metrics, in a registry of its own (many agents may
share one process, as the fleet benchmark runs them), and its site's link probes.

`/metrics` (or any path but `/probe`): the lease's age, the round trip of the last renewal to
the hub, and the cluster's nodes and Ready nodes as the last report found them: the signals a
pull site gives the recovery loop from its side. `/probe?module=icmp&target=ADDRESS`: one ICMP
echo to an allowed target, answered as a blackbox exporter answers (`probes.py`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Gauge, make_wsgi_app

from continuum.operator.agent.lease import LeaseKeeper
from continuum.operator.agent.probes import MODULE, LinkProber, ProbeRefusedError

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


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
    nodes = Gauge(
        "continuum_agent_nodes",
        "The member cluster's Node objects, as the agent's last report found them",
        registry=registry,
    )
    nodes.set_function(lambda: _or_nan(lease.report.nodes if lease.report else None))
    ready = Gauge(
        "continuum_agent_nodes_ready",
        "Of the member cluster's nodes, those Ready, as the agent's last report found them",
        registry=registry,
    )
    ready.set_function(lambda: _or_nan(lease.report.nodes_ready if lease.report else None))
    return registry


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def agent_app(registry: CollectorRegistry, prober: LinkProber | None) -> WsgiApp:
    """`/probe` to the prober (404 without one), every other path to the registry."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/probe":
            answer: Iterable[bytes] = metrics(environ, start_response)
            return answer
        if prober is None:
            return _plain(start_response, "404 Not Found", "this agent probes no links\n")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        target = query.get("target", [""])[0]
        try:
            body = prober.exposition(target, query.get("module", [MODULE])[0])
        except ProbeRefusedError as refused:
            return _plain(start_response, "400 Bad Request", f"{refused}\n")
        start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")])
        return [body]

    return app


def _plain(start_response: StartResponse, status: str, text: str) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [text.encode()]


class _Server(ThreadingMixIn, WSGIServer):
    # A probe waits for its echo: scrapes are served each in a thread of its own.
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes come every second: not logged."""


def serve(
    address: str, port: int, registry: CollectorRegistry, prober: LinkProber | None = None
) -> WSGIServer:
    """Serves the agent's endpoint on address:port from a daemon thread; `shutdown()` stops
    it, `server_close()` releases the port."""
    server = make_server(address, port, agent_app(registry, prober), _Server, _QuietHandler)
    threading.Thread(target=server.serve_forever, name="agent-metrics", daemon=True).start()
    return server
