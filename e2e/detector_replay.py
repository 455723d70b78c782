"""Replays fault scripts through the operator's risk detector, offline: the alert's lead on each
failure, and the false alerts.

    python -m e2e.detector_replay e2e/faults/*.csv [--json F]
    python -m e2e.detector_replay --generate partition,sudden-failure --seeds 1000-1099 [--json F]

For each script (e2e/fault_script.py's CSV) and each site it names, the probe series the
operator would read from Prometheus is simulated: one ICMP probe a second from the hub
(a random phase per site), its RTT the site's base RTT (`--base-rtt-ms`, the testbed's own: a
fraction of a millisecond) plus the script's added RTT, plus each direction's jitter (uniform
within +-jitter/2, as the link emulator does); lost with the script's loss in each direction,
when the site is `down` or `partition`, and when its RTT exceeds the blackbox module's 800 ms.
Before the script starts, the link has been as its first row says for `--warmup-s` (the
detector's baseline needs a history, as it has on a running testbed). The series goes through
the operator's own code, `continuum.operator.recovery.signals.assess_link` with the operator's
default `SignalsConfig`, every `--interval-s` (2 s, the operator's `--signals-interval`), as
the signals loop does, and the published `risk.score` is compared to the job's threshold
(`--threshold`, the MLJob default 0.7; the scheduler moves a job's shards off a member whose
risk is above it).

- A *failure* is a `down`, or a `partition` lasting at least `--min-failure-s` (30) until its
  `restore` (or the script's end), as e2e/bench_faults.py counts one; shorter partitions are
  blips, to be ridden out.
- An *alert* starts when the score goes above the threshold and lasts while it stays there.
  A failure's *lead* is its time minus the start of the earliest alert that began within
  `--horizon` before it and held until at least `--grace-s` before it (a move, once made, is
  not undone by a moment of good news); none: the failure was not foreseen, and
  `detected_after_s` is how long after it an alert came, if one did while the site was out.
- A *false alert* is an alert that starts with no failure of its site from `--horizon` after
  it back to the end of a failure in force: it would move shards for nothing.
- A *recovering episode* (the denominator of the false-move rate) is a blip, or a stretch of
  at least 5 s in which the script's RTT is above twice the site's median plus 20 ms or its
  loss at least 10% (stretches less than 10 s apart are one), after which the site does not
  fail within `--horizon`.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import random
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from continuum.operator.api.links import ProbeSample
from continuum.operator.recovery.signals import SignalsConfig, assess_link
from e2e import fault_gen, fault_script

PROBE_TIMEOUT_MS = 800.0
# An arbitrary Unix time for the script's start: the detector only compares times.
EPOCH_S = 1_800_000_000.0
EPISODE_MIN_S = 5.0
EPISODE_MERGE_S = 10.0
LEAD_STEPS_S = (0.0, 5.0, 10.0, 20.0)


@dataclass(frozen=True)
class ReplayOptions:
    seed: int = 0
    base_rtt_ms: float = 0.5
    warmup_s: float = 300.0
    interval_s: float = 2.0
    threshold: float = 0.7
    horizon_s: float = 120.0
    grace_s: float = 10.0
    min_failure_s: float = 30.0
    tail_s: float = 30.0
    """How long after the last row the script is replayed (its last values hold)."""


@dataclass(frozen=True)
class Failure:
    site: str
    at_s: float
    end_s: float
    kind: str  # down or partition


@dataclass(frozen=True)
class Episode:
    site: str
    start_s: float
    end_s: float
    blip: bool


@dataclass
class SiteResult:
    site: str
    failures: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[tuple[float, float]] = field(default_factory=list)
    false_alerts: list[float] = field(default_factory=list)
    recovering_episodes: int = 0
    peak_score: float = 0.0


@dataclass
class ScriptResult:
    name: str
    kind: str
    sites: list[SiteResult]

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [f for site in self.sites for f in site.failures]

    @property
    def false_alerts(self) -> int:
        return sum(len(site.false_alerts) for site in self.sites)

    @property
    def recovering_episodes(self) -> int:
        return sum(site.recovering_episodes for site in self.sites)


def _state_at(rows: Sequence[fault_script.Row], at_s: float) -> fault_script.Row | None:
    """The site's row in force at `at_s` (rows of one site, sorted)."""
    index = bisect.bisect_right([row.at_s for row in rows], at_s) - 1
    return rows[index] if index >= 0 else None


def probe_series(
    rows: Sequence[fault_script.Row], end_s: float, options: ReplayOptions, rng: random.Random
) -> list[ProbeSample]:
    """The hub's probes of one site (its rows only), from -warmup_s to end_s, once a second."""
    phase = rng.random()
    times = [row.at_s for row in rows]
    samples = []
    second = -math.ceil(options.warmup_s)
    while second + phase <= end_s:
        at = second + phase
        index = bisect.bisect_right(times, max(at, 0.0)) - 1
        row = rows[index] if index >= 0 else None
        samples.append(ProbeSample(EPOCH_S + at, _probe(row, options, rng)))
        second += 1
    return samples


def _probe(
    row: fault_script.Row | None, options: ReplayOptions, rng: random.Random
) -> float | None:
    if row is None:
        return options.base_rtt_ms
    if row.state in ("down", "partition"):
        return None
    loss = row.loss_pct / 100.0
    if rng.random() < loss or rng.random() < loss:  # each direction
        return None
    half = row.jitter_ms / 2.0
    rtt = options.base_rtt_ms + row.rtt_ms + rng.uniform(-half, half) + rng.uniform(-half, half)
    rtt = max(options.base_rtt_ms, rtt)
    return None if rtt > PROBE_TIMEOUT_MS else rtt


def failures(rows: Sequence[fault_script.Row], end_s: float, min_failure_s: float) -> list[Failure]:
    """A site's failures (its rows only)."""
    found: list[Failure] = []
    out_since: float | None = None
    kind = ""
    for row in [*rows, None]:
        at = end_s if row is None else row.at_s
        if row is not None and row.state in ("down", "partition") and out_since is None:
            out_since, kind = row.at_s, row.state
        elif out_since is not None and (row is None or row.state == "restore"):
            if kind == "down" or at - out_since >= min_failure_s or _went_down(rows, out_since, at):
                found.append(Failure(rows[0].site, out_since, at if row else math.inf, kind))
            out_since = None
    return found


def _went_down(rows: Sequence[fault_script.Row], start: float, end: float) -> bool:
    return any(row.state == "down" and start <= row.at_s <= end for row in rows)


def episodes(rows: Sequence[fault_script.Row], end_s: float) -> list[Episode]:
    """A site's disturbances: blips and rises in RTT or loss (see the module's docstring)."""
    healthy = statistics.median([row.rtt_ms for row in rows if row.state == "up"] or [0.0])
    spans: list[Episode] = []
    for row, after in zip(rows, [*rows[1:], None], strict=True):
        until = end_s if after is None else after.at_s
        if until <= row.at_s:
            continue
        blip = row.state == "partition"
        raised = row.state == "up" and (row.rtt_ms > 2 * healthy + 20.0 or row.loss_pct >= 10.0)
        if not (blip or raised):
            continue
        last = spans[-1] if spans else None
        if last is not None and row.at_s - last.end_s < EPISODE_MERGE_S:
            spans[-1] = Episode(row.site, last.start_s, until, last.blip or blip)
        else:
            spans.append(Episode(row.site, row.at_s, until, blip))
    return [e for e in spans if e.blip or e.end_s - e.start_s >= EPISODE_MIN_S]


def risk_scores(
    samples: Sequence[ProbeSample], end_s: float, options: ReplayOptions, rng: random.Random,
    config: SignalsConfig,
) -> list[tuple[float, float]]:  # fmt: skip
    """(script time, published risk score) at every read of the signals loop."""
    times = [s.at_s for s in samples]
    scores = []
    at = rng.uniform(0.0, options.interval_s)
    while at <= end_s:
        now = EPOCH_S + at
        upto = bisect.bisect_right(times, now)
        link = assess_link(samples[:upto], now, config)
        scores.append((at, link.risk.score if link is not None else 0.0))
        at += options.interval_s
    return scores


def alerts(scores: Sequence[tuple[float, float]], threshold: float) -> list[tuple[float, float]]:
    """(start, end) of each stretch of reads above the threshold; end inf if it lasts."""
    found: list[tuple[float, float]] = []
    start: float | None = None
    for at, score in scores:
        if score > threshold and start is None:
            start = at
        elif score <= threshold and start is not None:
            found.append((start, at))
            start = None
    if start is not None:
        found.append((start, math.inf))
    return found


def judge_site(
    site: str, rows: Sequence[fault_script.Row], scores: Sequence[tuple[float, float]],
    end_s: float, options: ReplayOptions,
) -> SiteResult:  # fmt: skip
    result = SiteResult(site, peak_score=max((s for _, s in scores), default=0.0))
    result.alerts = alerts(scores, options.threshold)
    site_failures = failures(rows, end_s, options.min_failure_s)
    for failure in site_failures:
        before = [
            start for start, stop in result.alerts
            if failure.at_s - options.horizon_s <= start < failure.at_s
            and stop >= failure.at_s - options.grace_s
        ]  # fmt: skip
        after = [start for start, _ in result.alerts if failure.at_s <= start <= failure.end_s]
        result.failures.append({
            "at_s": failure.at_s,
            "kind": failure.kind,
            "lead_s": round(failure.at_s - min(before), 1) if before else None,
            "detected_after_s": round(min(after) - failure.at_s, 1) if after and not before
            else None,
        })  # fmt: skip
    result.false_alerts = [
        start for start, _ in result.alerts
        if not any(f.at_s - options.horizon_s <= start <= f.end_s for f in site_failures)
    ]  # fmt: skip
    result.recovering_episodes = sum(
        1 for e in episodes(rows, end_s)
        if not any(e.start_s <= f.at_s <= e.end_s + options.horizon_s for f in site_failures)
    )  # fmt: skip
    return result


def replay(
    name: str, kind: str, rows: Sequence[fault_script.Row], options: ReplayOptions,
    config: SignalsConfig | None = None,
) -> ScriptResult:  # fmt: skip
    config = config or SignalsConfig()
    end_s = (rows[-1].at_s if rows else 0.0) + options.tail_s
    rng = random.Random(f"{name}:{options.seed}")
    sites: dict[str, list[fault_script.Row]] = {}
    for row in rows:
        sites.setdefault(row.site, []).append(row)
    results = []
    for site, site_rows in sites.items():
        samples = probe_series(site_rows, end_s, options, rng)
        scores = risk_scores(samples, end_s, options, rng, config)
        results.append(judge_site(site, site_rows, scores, end_s, options))
    return ScriptResult(name, kind, results)


def summary(results: Iterable[ScriptResult]) -> dict[str, Any]:
    """Over many scripts: the leads, the share foreseen by N s, and the false alerts."""
    results = list(results)
    leads: list[float] = []
    unforeseen = 0
    for failure in (f for r in results for f in r.failures):
        if failure["lead_s"] is None:
            unforeseen += 1
        else:
            leads.append(failure["lead_s"])
    count = len(leads) + unforeseen
    episodes_total = sum(r.recovering_episodes for r in results)
    false_total = sum(r.false_alerts for r in results)
    return {
        "scripts": len(results),
        "failures": count,
        "lead_s": _quantiles(leads),
        "foreseen_by": {
            f"{step:g}s": round(sum(1 for v in leads if v >= step) / count, 3) if count else None
            for step in LEAD_STEPS_S
        },
        "not_foreseen": unforeseen,
        "false_alerts": false_total,
        "scripts_with_false_alerts": sum(1 for r in results if r.false_alerts),
        "recovering_episodes": episodes_total,
        "false_alerts_per_recovering_episode": (
            round(false_total / episodes_total, 3) if episodes_total else None
        ),
    }


def _quantiles(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"min": ordered[0], "p10": at(0.1), "p50": at(0.5), "p90": at(0.9), "max": ordered[-1]}


def _seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        seeds.extend(range(int(first), int(last or first) + 1))
    return seeds


def _kind_of(path: Path) -> str:
    return path.stem if path.stem in fault_gen.KINDS else "script"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="detector_replay", description=__doc__.splitlines()[0])
    parser.add_argument("scripts", nargs="*", type=Path, help="fault script CSVs")
    parser.add_argument("--generate", help="comma-separated kinds of e2e/fault_gen.py to replay")
    parser.add_argument("--seeds", default="1000-1019", help="with --generate, e.g. 1000-1099")
    parser.add_argument("--sites", default=",".join(fault_gen.DEFAULT_SITES))
    parser.add_argument("--seed", type=int, default=0, help="the probes' noise")
    parser.add_argument("--threshold", type=float, default=ReplayOptions.threshold)
    parser.add_argument("--horizon-s", type=float, default=ReplayOptions.horizon_s)
    parser.add_argument("--min-failure-s", type=float, default=ReplayOptions.min_failure_s)
    parser.add_argument("--base-rtt-ms", type=float, default=ReplayOptions.base_rtt_ms)
    parser.add_argument("--warmup-s", type=float, default=ReplayOptions.warmup_s)
    parser.add_argument("--json", type=Path, help="write every result and the summaries here")
    parser.add_argument("--quiet", action="store_true", help="print the summaries only")
    args = parser.parse_args(argv)
    options = ReplayOptions(
        seed=args.seed, threshold=args.threshold, horizon_s=args.horizon_s,
        min_failure_s=args.min_failure_s, base_rtt_ms=args.base_rtt_ms, warmup_s=args.warmup_s,
    )  # fmt: skip
    sites = [s for s in args.sites.split(",") if s]
    results: list[ScriptResult] = []
    for path in args.scripts:
        results.append(replay(path.name, _kind_of(path), fault_script.load(path, sites), options))
    if args.generate:
        for kind in args.generate.split(","):
            for seed in _seeds(args.seeds):
                text = fault_gen.script(kind, seed, sites)
                rows = fault_script.parse(text, sites, f"{kind}:{seed}")
                results.append(replay(f"{kind}:{seed}", kind, rows, options))
    if not results:
        parser.error("give scripts, or --generate")
    kinds = sorted({r.kind for r in results})
    summaries = {kind: summary(r for r in results if r.kind == kind) for kind in kinds}
    # A failure with no warning cannot be foreseen: the overall figures leave it out.
    summaries["all-but-sudden"] = summary(r for r in results if r.kind != "sudden-failure")
    if not args.quiet:
        for result in results:
            for site in result.sites:
                for failure in site.failures:
                    print(f"{result.name} {site.site} failure at {failure['at_s']:g} s "
                          f"({failure['kind']}): lead {failure['lead_s']} s, detected after "
                          f"{failure['detected_after_s']} s")  # fmt: skip
                for start in site.false_alerts:
                    print(f"{result.name} {site.site} FALSE alert at {start:g} s")
    for kind, figures in summaries.items():
        print(f"{kind}: {json.dumps(figures)}")
    if args.json:
        args.json.write_text(json.dumps({
            "options": asdict(options),
            "summary": summaries,
            "scripts": [
                {"name": r.name, "kind": r.kind, "sites": [asdict(s) for s in r.sites]}
                for r in results
            ],
        }, indent=1, default=str))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
