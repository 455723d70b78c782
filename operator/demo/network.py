"""The demo's emulated network: each member's uplink over a run, healthy, degrading, or down."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LinkState:
    extra_rtt_ms: float
    loss: float
    up: bool


@dataclass(frozen=True)
class DegradingLink:
    """A member's uplink over a run: healthy until `degrade_at_s`, then its RTT ramps up by
    `peak_extra_rtt_ms` and its loss to `peak_loss` over `ramp_s`, and at `failure_at_s` the
    site goes down. `failure_at_s` None: it never fails; `degrade_at_s` None: no warning."""

    degrade_at_s: float | None
    ramp_s: float
    peak_extra_rtt_ms: float
    peak_loss: float
    failure_at_s: float | None

    def at(self, elapsed_s: float) -> LinkState:
        if self.failure_at_s is not None and elapsed_s >= self.failure_at_s:
            return LinkState(0.0, 1.0, up=False)
        if self.degrade_at_s is None or elapsed_s < self.degrade_at_s:
            return LinkState(0.0, 0.0, up=True)
        progress = min(1.0, (elapsed_s - self.degrade_at_s) / max(self.ramp_s, 1e-9))
        return LinkState(progress * self.peak_extra_rtt_ms, progress * self.peak_loss, up=True)


HEALTHY_LINK = DegradingLink(None, 0.0, 0.0, 0.0, None)
