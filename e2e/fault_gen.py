"""Noisy fault scripts (e2e/fault_script.py's CSV), generated from a seed.

    python -m e2e.fault_gen --kind slow-degradation-failure --seed 7 [--sites delft,ghent]
        [--duration-s 200] [--out FILE]
    python -m e2e.fault_gen --builtin [--out-dir e2e/faults]

Real links are not clean ramps: satellite and cellular links show jitter, RTT spikes, loss
bursts and short outages that recover, and their failures come with anything from minutes to
seconds of warning. A script here is a *background* of that noise on every site, with an
*episode* on top of it at one or two sites. The model, per site (every number drawn from the
seed, so two sites and two seeds differ):

- *Background*: a WAN round trip of 15-60 ms and a jitter of 2 ms to 35% of it (the script's
  `rtt_ms`, `jitter_ms`: the testbed's own RTT is a fraction of a millisecond), a residual loss
  of 0-1.5%, and a slow wander: every 8-25 s the RTT moves by a log-normal step (sigma 12%)
  pulled back toward its level, the jitter with it.
- *RTT spikes* (a congested queue, a satellite handover): a Poisson process, one every 25-70 s
  on average, each adding 80-600 ms for 1-3 s.
- *Loss bursts*: a Poisson process, one every 30-90 s, each 15-70% loss for 2-8 s.
- *Blips*: short outages that recover, a Poisson process, one every 60-180 s, each a
  `partition` of 2-25 s, log-uniform (under the benchmark's 30 s that makes a partition a
  failure), then `restore` and the background again. Two blips may follow each other closely
  enough to make one partition of 30 s or more: a failure with no warning, as on a real link.
  No disturbance of the background runs into the script's last 5 s.
- The noise rates and sizes are scaled by a per-site `noise` factor of 0.6-1.4.

The episodes (the failing or degrading site is the first site, the second too for two sites):

- `slow-degradation-failure`: a warning of 30-120 s in which the added RTT climbs to 150-600 ms
  and the loss to 5-40% (a convex or concave ramp, rows every 2 s with 30% multiplicative noise
  on each), the background noise going on, then `down` for the rest of the script;
- `degradation-recovers`: the same rise over 20-90 s, held 10-60 s, back over 10-60 s; no
  failure;
- `sudden-failure`: `down` with no warning at all (no detector can see it coming: reported
  apart);
- `partition`: a warning of 8-60 s in which the loss climbs to 20-60% and the RTT by 40-250 ms
  (a fading link), then a partition of 40-90 s, then `restore`;
- `two-sites-fail`: two sites behind one failing upstream: both degrade over one warning of
  30-120 s (each with its own noise and size) and go `down` within 0-5 s of each other.

The episode starts 60-110 s in (after a baseline of healthy-but-noisy probes), and the script
lasts 150-240 s unless `duration_s` says otherwise; at least 25 s follow a failure. Values are
rounded to 0.1 ms and 0.1%; rows come at most one a second per site, and only when a value
changes.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from e2e import fault_script

KINDS = (
    "slow-degradation-failure",
    "degradation-recovers",
    "sudden-failure",
    "partition",
    "two-sites-fail",
)
DEFAULT_SITES = ("delft", "eindhoven", "ghent")
# The seeds of the committed built-in scripts (e2e/faults/<kind>.csv), one per kind.
BUILTIN_SEED = 2026
RAMP_STEP_S = 2.0


@dataclass(frozen=True)
class Shaping:
    rtt_ms: float
    jitter_ms: float
    loss_pct: float
    state: str  # up, partition or down


@dataclass
class _Interval:
    start: float
    end: float
    rtt_ms: float = 0.0
    loss: float = 0.0  # a ratio
    partition: bool = False


@dataclass
class _Site:
    """One site's link over time: what the script sets at each second."""

    name: str
    base_rtt_ms: float
    base_jitter_ms: float
    base_loss: float
    wander: list[tuple[float, float]]  # (from time, RTT factor)
    events: list[_Interval] = field(default_factory=list)
    # The episode: extra RTT, jitter and loss as a function of time, and its failure.
    episode: Callable[[float], tuple[float, float, float]] | None = None
    episode_span: tuple[float, float] = (math.inf, math.inf)
    partition_span: tuple[float, float] | None = None
    down_at: float = math.inf

    def factor(self, at_s: float) -> float:
        value = 1.0
        for start, step in self.wander:
            if start > at_s:
                break
            value = step
        return value

    def shaping(self, at_s: float) -> Shaping:
        if at_s >= self.down_at:
            return Shaping(0.0, 0.0, 0.0, "down")
        if self.partition_span and self.partition_span[0] <= at_s < self.partition_span[1]:
            return Shaping(0.0, 0.0, 0.0, "partition")
        factor = self.factor(at_s)
        rtt, jitter, keep = self.base_rtt_ms * factor, self.base_jitter_ms * factor, 1.0
        keep *= 1.0 - self.base_loss
        if self.episode is not None and self.episode_span[0] <= at_s < self.episode_span[1]:
            extra_rtt, extra_jitter, extra_loss = self.episode(at_s)
            rtt, jitter, keep = rtt + extra_rtt, jitter + extra_jitter, keep * (1.0 - extra_loss)
        for event in self.events:
            if event.start <= at_s < event.end:
                if event.partition:
                    return Shaping(0.0, 0.0, 0.0, "partition")
                rtt += event.rtt_ms
                keep *= 1.0 - event.loss
        return Shaping(round(rtt, 1), round(jitter, 1), round(100.0 * (1.0 - keep), 1), "up")


def _poisson(rng: random.Random, mean_gap_s: float, until_s: float) -> list[float]:
    times, at = [], rng.expovariate(1.0 / mean_gap_s)
    while at < until_s:
        times.append(at)
        at += rng.expovariate(1.0 / mean_gap_s)
    return times


def _background(rng: random.Random, name: str, duration_s: float) -> _Site:
    base = rng.uniform(15.0, 60.0)
    noise = rng.uniform(0.6, 1.4)
    site = _Site(
        name=name,
        base_rtt_ms=base,
        base_jitter_ms=rng.uniform(2.0, max(2.5, 0.35 * base)),
        base_loss=rng.uniform(0.0, 0.015),
        wander=[],
    )
    at, level = rng.uniform(8.0, 25.0), 1.0
    while at < duration_s:
        # a log-normal step, pulled halfway back toward the site's level
        level = math.exp(0.5 * math.log(level) + rng.gauss(0.0, 0.12))
        site.wander.append((at, level))
        at += rng.uniform(8.0, 25.0)
    for start in _poisson(rng, rng.uniform(25.0, 70.0) / noise, duration_s):
        extra = rng.uniform(80.0, 600.0) * noise
        site.events.append(_Interval(start, start + rng.randint(1, 3), rtt_ms=extra))
    for start in _poisson(rng, rng.uniform(30.0, 90.0) / noise, duration_s):
        loss = min(0.95, rng.uniform(0.15, 0.7) * noise)
        site.events.append(_Interval(start, start + rng.uniform(2.0, 8.0), loss=loss))
    for start in _poisson(rng, rng.uniform(60.0, 180.0) / noise, duration_s):
        length = math.exp(rng.uniform(math.log(2.0), math.log(25.0)))  # mostly short
        site.events.append(_Interval(start, start + length, partition=True))
    # Every disturbance is over before the end: a script must not end inside a blip.
    site.events = [e for e in site.events if e.end <= duration_s - 5.0]
    return site


def _ramp(
    rng: random.Random, start: float, rise_s: float, peak_rtt: float, peak_loss: float,
    hold_s: float = math.inf, fall_s: float = 0.0,
) -> Callable[[float], tuple[float, float, float]]:  # fmt: skip
    """A rise to (peak_rtt, peak_loss) over `rise_s` (convex or concave), held, then back down,
    with 30% multiplicative noise drawn afresh every RAMP_STEP_S."""
    shape = rng.uniform(0.6, 2.0)
    noise: dict[int, tuple[float, float]] = {}

    def extra(at_s: float) -> tuple[float, float, float]:
        elapsed = at_s - start
        if elapsed < rise_s:
            progress = (elapsed / rise_s) ** shape
        elif elapsed < rise_s + hold_s:
            progress = 1.0
        else:
            progress = max(0.0, 1.0 - (elapsed - rise_s - hold_s) / max(fall_s, 1e-9))
        step = int(elapsed // RAMP_STEP_S)
        if step not in noise:
            noise[step] = (rng.uniform(0.7, 1.3), rng.uniform(0.7, 1.3))
        rtt_noise, loss_noise = noise[step]
        rtt = peak_rtt * progress * rtt_noise
        return rtt, 0.15 * rtt, min(0.95, peak_loss * progress * loss_noise)

    return extra


def _clear_events(site: _Site, start: float, end: float) -> None:
    """No background event during the site's own failure (a down site has no noise)."""
    site.events = [e for e in site.events if e.end <= start or e.start >= end]


def _degrade_then_fail(rng: random.Random, site: _Site, start: float, warning_s: float) -> None:
    site.episode = _ramp(rng, start, warning_s, rng.uniform(150.0, 600.0), rng.uniform(0.05, 0.4))
    site.episode_span = (start, start + warning_s)
    site.down_at = start + warning_s
    _clear_events(site, site.down_at, math.inf)


def generate(
    kind: str, seed: int, sites: Sequence[str] = DEFAULT_SITES, duration_s: float | None = None
) -> list[tuple[float, str, Shaping]]:
    """The rows of a script of `kind`: (at_s, site, shaping), sorted, one a site-second at most."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r} (kinds: {', '.join(KINDS)})")
    needed = 2 if kind == "two-sites-fail" else 1
    if len(sites) < needed:
        raise ValueError(f"{kind} needs at least {needed} sites")
    rng = random.Random(f"{kind}:{seed}")
    duration = duration_s if duration_s is not None else float(rng.randint(150, 240))
    links = [_background(rng, name, duration) for name in sites]
    start = rng.uniform(60.0, 110.0)
    first = links[0]
    # The episode must leave the failure at least 25 s to be seen before the script ends.
    latest_failure = duration - 25.0
    if kind == "slow-degradation-failure":
        warning = min(rng.uniform(30.0, 120.0), latest_failure - start)
        _degrade_then_fail(rng, first, start, warning)
    elif kind == "degradation-recovers":
        rise, hold, fall = rng.uniform(20.0, 90.0), rng.uniform(10.0, 60.0), rng.uniform(10.0, 60.0)
        peak_rtt, peak_loss = rng.uniform(150.0, 600.0), rng.uniform(0.05, 0.4)
        first.episode = _ramp(rng, start, rise, peak_rtt, peak_loss, hold, fall)
        first.episode_span = (start, start + rise + hold + fall)
    elif kind == "sudden-failure":
        first.down_at = min(start + rng.uniform(0.0, 60.0), latest_failure)
        _clear_events(first, first.down_at, math.inf)
    elif kind == "partition":
        warning = rng.uniform(8.0, 60.0)
        cut_at = min(start + warning, latest_failure)
        length = min(rng.uniform(40.0, 90.0), duration - cut_at - 5.0)
        first.episode = _ramp(rng, start, cut_at - start, rng.uniform(40.0, 250.0),
                              rng.uniform(0.2, 0.6))  # fmt: skip
        first.episode_span = (start, cut_at)
        first.partition_span = (cut_at, cut_at + length)
        _clear_events(first, cut_at, cut_at + length)
    else:
        warning = min(rng.uniform(30.0, 120.0), latest_failure - start - 5.0)
        _degrade_then_fail(rng, first, start, warning)
        skew = rng.uniform(-5.0, 5.0)
        _degrade_then_fail(rng, links[1], start + skew, warning)
    return _rows(links, duration)


def _rows(links: Sequence[_Site], duration_s: float) -> list[tuple[float, str, Shaping]]:
    rows: list[tuple[float, str, Shaping]] = []
    for site in links:
        last: Shaping | None = None
        for second in range(int(duration_s) + 1):
            now = site.shaping(float(second))
            if now == last:
                continue
            if last is not None and last.state == "partition" and now.state == "up":
                rows.append((float(second), site.name, Shaping(0.0, 0.0, 0.0, "restore")))
            rows.append((float(second), site.name, now))
            last = now
    rows.sort(key=lambda row: row[0])  # stable: a site's rows keep their order
    return rows


def to_csv(rows: Sequence[tuple[float, str, Shaping]]) -> str:
    lines = [",".join(fault_script.HEADER)]
    for at_s, site, shaping in rows:
        if shaping.state == "up":
            values = f"{shaping.rtt_ms:g},{shaping.jitter_ms:g},{shaping.loss_pct:g}"
        else:
            values = ",,"
        lines.append(f"{at_s:g},{site},{values},{shaping.state}")
    return "\n".join(lines) + "\n"


def script(
    kind: str, seed: int, sites: Sequence[str] = DEFAULT_SITES, duration_s: float | None = None
) -> str:
    """The CSV text, checked by fault_script's parser."""
    text = to_csv(generate(kind, seed, sites, duration_s))
    fault_script.parse(text, sites, f"<{kind} seed {seed}>")
    return text


def builtin_path(kind: str, directory: Path | None = None) -> Path:
    return (directory or Path(__file__).resolve().parent / "faults") / f"{kind}.csv"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fault_gen", description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=KINDS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sites", default=",".join(DEFAULT_SITES), help="comma-separated")
    parser.add_argument("--duration-s", type=float)
    parser.add_argument("--out", type=Path, help="the CSV (default: standard output)")
    parser.add_argument("--builtin", action="store_true",
                        help=f"write every kind with seed {BUILTIN_SEED} to --out-dir")  # fmt: skip
    parser.add_argument("--out-dir", type=Path, help="for --builtin (default: e2e/faults)")
    args = parser.parse_args(argv)
    sites = [s for s in args.sites.split(",") if s]
    if args.builtin:
        for kind in KINDS:
            path = builtin_path(kind, args.out_dir)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(script(kind, BUILTIN_SEED, sites, args.duration_s))
            print(path)
        return 0
    if args.kind is None:
        parser.error("--kind is required (or --builtin)")
    text = script(args.kind, args.seed, sites, args.duration_s)
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
