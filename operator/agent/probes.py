"""The agent as its site's link prober, asked as a blackbox exporter is asked.

The hub cannot probe a site behind NAT; the site can probe the hub. So a Pull site's agent
answers `GET /probe?module=icmp&target=ADDRESS` on its metrics port with one ICMP echo and the
series of the blackbox exporter's `icmp` module that the link rules and the operator read
(docs/monitoring.md): `probe_success`, `probe_duration_seconds` and
`probe_icmp_duration_seconds{phase="rtt"}` (0 when unanswered). Prometheus, scraping the agent
with the labels `source_site=<site>, target_site=hub`, then holds the site's link to the hub
as the site sees it, and the operator takes it for the hub's link to that site when the hub
has no probes of its own there.

Only the targets the agent was given are probed (by default the host of the hub's API server):
its port takes no orders to send echoes anywhere else. Each echo is given up after
`timeout_s` (0.8 s, the blackbox module's); a name that does not resolve is an unanswered
probe, as the blackbox exporter counts it.

icmplib sends the echo: through an unprivileged ping socket where the kernel allows one
(`net.ipv4.ping_group_range`), else a raw socket (root or `CAP_NET_RAW`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import icmplib
from prometheus_client import CollectorRegistry, Gauge, generate_latest

LOG = logging.getLogger(__name__)
ECHO_TIMEOUT_S = 0.8
MODULE = "icmp"

# Sends one echo to an address within a timeout (seconds); its round trip in seconds, or None
# when it went unanswered.
Echo = Callable[[str, float], float | None]


class ProbeRefusedError(Exception):
    """The request names a module or a target the agent does not probe; safe to answer."""


class IcmpUnavailableError(Exception):
    """Neither a ping socket nor a raw socket could be opened."""


class IcmpEcho:
    """One ICMP echo per call, by the first kind of socket the process may open."""

    def __init__(self) -> None:
        self._privileged: bool | None = None
        self._lock = threading.Lock()

    def __call__(self, address: str, timeout_s: float) -> float | None:
        kinds = (False, True) if self._privileged is None else (self._privileged,)
        for privileged in kinds:
            try:
                host = icmplib.ping(address, count=1, timeout=timeout_s, privileged=privileged)
            except icmplib.SocketPermissionError:
                continue
            except icmplib.NameLookupError:
                return None
            with self._lock:
                self._privileged = privileged
            return host.avg_rtt / 1000.0 if host.is_alive else None
        raise IcmpUnavailableError(
            "no ICMP socket may be opened: allow ping sockets (net.ipv4.ping_group_range) or "
            "give the agent CAP_NET_RAW"
        )


@dataclass(frozen=True)
class ProbeResult:
    rtt_s: float | None
    """None: unanswered within the timeout"""
    duration_s: float


class LinkProber:
    """Probes the allowed targets on request; holds nothing between probes."""

    def __init__(
        self,
        targets: Iterable[str],
        echo: Echo | None = None,
        timeout_s: float = ECHO_TIMEOUT_S,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.targets = frozenset(target for target in targets if target)
        self.echo: Echo = echo if echo is not None else IcmpEcho()
        self.timeout_s, self.clock = timeout_s, clock
        self._unavailable_logged = False

    def probe(self, target: str, module: str = MODULE) -> ProbeResult:
        # What the request named is said back cut short: the answer is not an echo chamber.
        if module != MODULE:
            raise ProbeRefusedError(f"module {module[:64]!r} is not served: only {MODULE!r}")
        if target not in self.targets:
            raise ProbeRefusedError(f"target {target[:64]!r} is not one this agent probes")
        started = self.clock()
        try:
            rtt_s = self.echo(target, self.timeout_s)
        except (IcmpUnavailableError, icmplib.ICMPLibError, OSError) as error:
            if not self._unavailable_logged:
                LOG.warning("link probes fail: %s", error)
                self._unavailable_logged = True
            rtt_s = None
        return ProbeResult(rtt_s, self.clock() - started)

    def exposition(self, target: str, module: str = MODULE) -> bytes:
        """The probe's series in the text format, as a blackbox exporter answers a scrape."""
        result = self.probe(target, module)
        registry = CollectorRegistry()
        Gauge("probe_success", "Whether the echo was answered within the timeout",
              registry=registry).set(0 if result.rtt_s is None else 1)  # fmt: skip
        Gauge("probe_duration_seconds", "How long the probe took",
              registry=registry).set(result.duration_s)  # fmt: skip
        Gauge("probe_icmp_duration_seconds", "The echo's round trip (0 when unanswered)",
              ["phase"], registry=registry).labels("rtt").set(result.rtt_s or 0.0)  # fmt: skip
        return generate_latest(registry)
