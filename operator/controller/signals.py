"""The signals loop: every `signals_interval_s`, the link signals read from Prometheus become
each MemberCluster's `risk`, `latencyToSites` and `Degraded` condition.

One thread, started only with `--prometheus-url`. Each pass reads the probes and the recorded
RTT and loss once for every member (`adapters/link_signals.py`), replays each member's probes
into the risk model and makes its status fragment (`recovery/signals.py`), and applies the
fragments that changed enough, with server-side apply as the signals' field manager, so the
heartbeat's writes of the same status never undo them (nor they the heartbeat's). A written
fragment wakes the scheduler, which reads the risk and latencies from the members' status:
the state is in the API server and in Prometheus, none of it only here.

Prometheus unreachable: every member's Degraded turns Unknown (SignalsUnavailable) with its
risk and latencies as they were, `continuum_signals_up` is 0, the outage is logged once (and
its end once), and the scheduler goes on with what the members' status holds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from continuum.operator.adapters import metrics
from continuum.operator.adapters.hub import SIGNALS_MANAGER
from continuum.operator.adapters.kube import api_status_message
from continuum.operator.adapters.link_signals import LinkSignals, SignalsUnavailableError, connect
from continuum.operator.api import MemberCluster
from continuum.operator.api.links import LinkReadings
from continuum.operator.controller.context import OperatorContext
from continuum.operator.recovery.fleet import damped, fleet_wide_rise
from continuum.operator.recovery.signals import SignalsConfig, signals_status, worth_writing

LOG = logging.getLogger(__name__)
DEGRADED_VALUES = {"True": 1.0, "False": 0.0, "Unknown": -1.0}


class LinkReader(Protocol):
    def read(self, at_s: float, window_s: float) -> LinkReadings: ...


# Applies a status fragment to the named MemberCluster as the signals' field manager.
ApplyStatus = Callable[[str, dict[str, Any]], object]


class SignalsPass:
    """One pass at a time; holds only whether the last read failed (to log an outage once)."""

    def __init__(
        self,
        reader: LinkReader,
        apply: ApplyStatus,
        config: SignalsConfig,
        wake: Callable[[], None] = lambda: None,
        fleet_share: float = 0.55,
        fleet_min_members: int = 3,
    ) -> None:
        self.reader, self.apply, self.config, self.wake = reader, apply, config, wake
        # A rise on this share of the members, and this many, at once is the hub's own network
        # (recovery/fleet.py); the same measure as the eviction policy's.
        self.fleet_share, self.fleet_min_members = fleet_share, fleet_min_members
        self.unavailable: str | None = None

    def _read(self, now: datetime) -> LinkReadings | None:
        started = time.perf_counter()
        try:
            readings = self.reader.read(now.timestamp(), self.config.history_s)
        except SignalsUnavailableError as error:
            metrics.SIGNALS_UP.set(0)
            if self.unavailable is None:
                LOG.warning("link signals unavailable: %s; scheduling goes on with the last "
                            "known risk and latencies", error)  # fmt: skip
            self.unavailable = str(error)
            return None
        metrics.SIGNALS_READ_SECONDS.observe(time.perf_counter() - started)
        metrics.SIGNALS_UP.set(1)
        if self.unavailable is not None:
            LOG.info("link signals available again")
            self.unavailable = None
        return readings

    def run(
        self, members: list[MemberCluster], raw: Mapping[str, dict[str, Any]], now: datetime
    ) -> int:
        """Reads once and writes each member whose fragment changed enough; returns how many
        were written. `raw` holds each member's object as read, by name."""
        readings = self._read(now)
        written = 0
        fragments = {
            member.metadata.name or "": signals_status(
                member, readings, now, self.config, self.unavailable or ""
            )
            for member in members
            if member.metadata.deletion_timestamp is None
        }
        cap = self.config.risk.unconfirmed_cap
        rise = fleet_wide_rise(fragments, cap, self.fleet_share, self.fleet_min_members)
        if rise is not None:
            fragments = {name: damped(fragment, cap, rise) for name, fragment in fragments.items()}
        for name, fragment in fragments.items():
            score = (fragment.get("risk") or {}).get("score")
            if score is not None:
                metrics.MEMBER_RISK.labels(name).set(score)
            state = fragment["conditions"][0]["status"]
            metrics.MEMBER_DEGRADED.labels(name).set(DEGRADED_VALUES.get(state, -1.0))
            current = (raw.get(name) or {}).get("status")
            if not worth_writing(current, fragment, self.config):
                continue
            try:
                self.apply(name, fragment)
            except ApiException as error:
                # The API server's own words say which field it refused: the fragment is
                # ours, computed from probe figures, and holds nothing secret.
                metrics.RECONCILE_ERRORS.labels("Signals").inc()
                LOG.warning("could not write the signals of %s: HTTP %s: %s", name,
                            error.status, api_status_message(error))  # fmt: skip
                continue
            except Exception as error:  # one member's write must not stop the others'
                metrics.RECONCILE_ERRORS.labels("Signals").inc()
                LOG.warning("could not write the signals of %s: %s", name,
                            type(error).__name__)  # fmt: skip
                continue
            written += 1
            before = ((current or {}).get("risk") or {}).get("score")
            if before != score:
                self.wake()
        return written


def signals_loop(context: OperatorContext, signals: SignalsPass) -> None:
    """Runs passes every `signals_interval_s` until `context.stop` is set; never raises."""
    interval = context.config.signals_interval_s
    while not context.stop.is_set():
        started = time.monotonic()
        if context.mirror.wait_synced(0):
            metrics.RECONCILES.labels("Signals").inc()
            try:
                listed = context.mirror.list(MemberCluster)
                raw = {name: body for (_, name), body in listed.raw.items()}
                signals.run(listed.valid, raw, context.clock())
            except Exception:
                metrics.RECONCILE_ERRORS.labels("Signals").inc()
                LOG.exception("signals pass failed; retrying at the next tick")
        context.stop.wait(max(0.0, interval - (time.monotonic() - started)))


def start_signals(context: OperatorContext) -> threading.Thread | None:
    """The signals thread, when a Prometheus URL is configured."""
    config = context.config
    if not config.prometheus_url:
        return None
    client, shown = connect(config.prometheus_url, config.prometheus_timeout_s)
    reader = LinkSignals(client, shown, config.prometheus_timeout_s)
    signals = SignalsPass(
        reader,
        lambda name, status: context.hub.apply_member_status(name, status, SIGNALS_MANAGER),
        config.signals,
        context.wake_scheduler.set,
        config.eviction.unhealthy_threshold,
        config.eviction.min_unhealthy,
    )
    LOG.info("reading link signals from Prometheus at %s every %g s", shown,
             config.signals_interval_s)  # fmt: skip
    thread = threading.Thread(
        target=signals_loop, args=(context, signals), name="signals-loop", daemon=True
    )
    thread.start()
    return thread
