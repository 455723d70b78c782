"""A member cluster's failure risk from the trend of its link, and its reachability from its
heartbeats. Pure: samples carry their own time, and so does every assessment.

Sites rarely fail out of the blue: a failing uplink first shows as round-trip times that climb
and packets that go missing. The risk detector scores three signals over a sliding window:

- `rttInflation`: how far the window's median RTT has risen above the member's own baseline,
  a low quantile of the RTTs it has answered with (as TCP keeps a minimum RTT), so that a far
  site with a high but steady RTT is not mistaken for a failing one, and a slow start does not
  make a high baseline (counted against at least `baseline_floor_ms`, so that milliseconds of
  queueing on a sub-millisecond link are not a tenfold rise);
- `packetLoss`: the share of probes in the window that went unanswered;
- `rttTrend`: whether the RTT rises steadily (a positive least-squares slope that explains
  most of the variance), as opposed to one spike.

A rise is only *published* as a risk above `unconfirmed_cap` once it has held for
`confirm_assessments` consecutive assessments: one noisy sample must never move shards, since
the scheduler migrates everything off a member whose risk passes a job's threshold. Once
confirmed, the alert holds until the evidence falls below `release_score`: a failing link has
good moments, and a risk that flickered back to normal would invite the shards back.

Real links are noisy: satellite and cellular links show RTT spikes, loss bursts and short
outages that recover. For them (`signals.probe_risk_config`, the operator's settings; the
defaults here are the demo's clean links) the detector also:

- holds an *outage* (`outage_probes` unanswered in a row) at the evidence from before it, and
  does not count its probes as loss afterwards: from the silence alone a blip that recovers
  and a failure look the same, and telling them apart by how long they last is reactive
  recovery's job. An alert raised before the outage holds through it (`silentS` says for how
  long the member has not answered);
- counts `sustainedLoss`, the least loss of the window's three thirds, so that a burst of a
  few seconds is not a failing link (`packetLoss` is still the whole window's);
- lets either an RTT inflation or a sustained loss reach the alert alone (`either_signal`),
  with a steady rise adding confidence;
- takes the median RTT over the last `inflation_window_s` of the window, for a shorter lag,
  and with `inflation_halves` the lesser of the medians of that stretch's two halves: a rise
  must hold across the whole stretch, whereas a cluster of RTT spikes (a congested queue, a
  handover: a second or three each) fills one half at most, where the median of the whole
  stretch lets two such spikes close together raise an alert;
- counts the inflation from `rtt_inflation_onset` up to `rtt_inflation_full`: a jittery link's
  median sits well above its baseline, a low quantile, so that without an onset a full signal
  at a mere doubling of the RTT would keep a healthy link near the unconfirmed cap;
- confirms on `confirm_assessments` of the last `confirm_of` assessments, so one good probe on
  a failing link does not restart the count, and releases an alert only after
  `release_assessments` in a row below the release score;
- with `hold_alert_level`, publishes while an alert holds the highest evidence since it was
  raised, not the evidence of the moment: a failing link has good moments, and a published
  score that dipped under a job's threshold and rose again would move its shards away, back
  and away again (a new alert starts afresh from its own evidence).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LinkSample:
    """One probe of a member. `rtt_ms` is None when the probe went unanswered."""

    at_s: float
    rtt_ms: float | None

    @property
    def answered(self) -> bool:
        return self.rtt_ms is not None


@dataclass(frozen=True)
class RiskConfig:
    window_s: float = 4.0
    min_samples: int = 6
    baseline_samples: int = 5
    # The baseline is this quantile of the last `baseline_history` answered RTTs.
    baseline_quantile: float = 0.1
    baseline_history: int = 400
    # The inflation is the median RTT over max(baseline, this): on a link whose RTT is a
    # fraction of a millisecond, a few milliseconds of queueing are not a rise that matters.
    baseline_floor_ms: float = 1e-3
    # The inflation (median RTT over baseline) at which that signal counts in full, and the
    # one up to which it counts nothing (a jittery link's median sits above its low quantile).
    rtt_inflation_full: float = 6.0
    rtt_inflation_onset: float = 1.0
    # The loss ratio at which that signal counts in full.
    loss_full: float = 0.3
    # A trend counts when the RTT's linear fit explains at least this share of its variance.
    trend_min_r2: float = 0.5
    weights: tuple[float, float, float] = (0.45, 0.35, 0.2)  # inflation, loss, trend
    # A score at or above this, held for `confirm_assessments`, is a clear trend.
    alert_score: float = 0.6
    confirm_assessments: int = 3
    unconfirmed_cap: float = 0.5
    release_score: float = 0.35
    # The noisy-link handling (off here, for the demo's clean links; probe_risk_config in
    # signals.py turns it on for the operator's probes):
    # - a run of at least this many unanswered probes is an outage in progress, and the
    #   evidence is held at what it was when the run began (0: off);
    outage_probes: int = 0
    # - the loss signal is the lesser of the loss in the window's two halves, so that a burst
    #   confined to a few seconds is not a sustained loss;
    sustained_loss: bool = False
    # - the inflation and the loss are each enough alone: the evidence is
    #   (1 - trend weight) * (1 - (1 - inflation)(1 - loss)) + trend weight * trend,
    #   rather than the weighted sum of the three;
    either_signal: bool = False
    # - the median RTT is taken over the last this many seconds of the window (0: all of it);
    inflation_window_s: float = 0.0
    # - confirmation needs `confirm_assessments` at the alert score among the last this many
    #   assessments (0: in a row), and an alert ends after `release_assessments` in a row
    #   below the release score.
    confirm_of: int = 0
    release_assessments: int = 1
    # - while an alert holds, the score published is the highest evidence since it was
    #   raised, rather than the evidence of the moment;
    hold_alert_level: bool = False
    # - the median RTT is the lesser of the medians of the inflation window's two halves;
    inflation_halves: bool = False

    def __post_init__(self) -> None:
        if abs(sum(self.weights) - 1.0) > 1e-9:
            raise ValueError(f"the signal weights must sum to 1, not {sum(self.weights)}")
        if not 0.0 <= self.unconfirmed_cap < self.alert_score <= 1.0:
            raise ValueError("need 0 <= unconfirmed_cap < alert_score <= 1")
        if not 0.0 <= self.release_score <= self.alert_score:
            raise ValueError("need 0 <= release_score <= alert_score")
        if self.window_s <= 0 or self.min_samples < 1 or self.baseline_samples < 1:
            raise ValueError("need window_s > 0, min_samples >= 1 and baseline_samples >= 1")
        if not 1.0 <= self.rtt_inflation_onset < self.rtt_inflation_full:
            raise ValueError("need 1 <= rtt_inflation_onset < rtt_inflation_full")
        if self.baseline_floor_ms < 0 or not 0.0 <= self.baseline_quantile <= 1.0:
            raise ValueError("need baseline_floor_ms >= 0 and 0 <= baseline_quantile <= 1")
        if self.outage_probes < 0 or self.release_assessments < 1 or self.inflation_window_s < 0:
            raise ValueError(
                "need outage_probes >= 0, release_assessments >= 1 and inflation_window_s >= 0"
            )
        if self.confirm_of and self.confirm_of < self.confirm_assessments:
            raise ValueError("need confirm_of 0 or at least confirm_assessments")


@dataclass(frozen=True)
class RiskAssessment:
    at_s: float
    score: float
    """What to publish as status.risk.score, in 0..1."""
    raw_score: float
    """The evidence before confirmation; equals `score` once the trend is clear."""
    clear: bool
    signals: dict[str, float] = field(default_factory=dict)
    reason: str = ""


def _clamp(value: float) -> float:
    return max(0.0, min(1.0, value))


def _lost_share(samples: Sequence[LinkSample]) -> float:
    return sum(1 for s in samples if s.rtt_ms is None) / len(samples) if samples else 0.0


def _without_outages(samples: Sequence[LinkSample], outage_probes: int) -> list[LinkSample]:
    """The samples less every run of at least `outage_probes` unanswered ones."""
    kept: list[LinkSample] = []
    run: list[LinkSample] = []
    for sample in samples:
        if sample.rtt_ms is None:
            run.append(sample)
            continue
        if len(run) < outage_probes:
            kept.extend(run)
        run = []
        kept.append(sample)
    if len(run) < outage_probes:
        kept.extend(run)
    return kept


def _sustained_loss(samples: Sequence[LinkSample], now_s: float, window_s: float) -> float:
    """The least share lost in the three thirds of the window: a burst confined to a few
    seconds is not a sustained loss."""
    third = window_s / 3
    return min(
        _lost_share([s for s in samples if now_s - (k + 1) * third < s.at_s <= now_s - k * third])
        for k in range(3)
    )


def linear_trend(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares slope (per second) and R² of (time, value) points."""
    if len(points) < 3:
        return 0.0, 0.0
    times = [t for t, _ in points]
    values = [v for _, v in points]
    mean_t, mean_v = statistics.fmean(times), statistics.fmean(values)
    var_t = sum((t - mean_t) ** 2 for t in times)
    var_v = sum((v - mean_v) ** 2 for v in values)
    if var_t == 0.0 or var_v == 0.0:
        return 0.0, 0.0
    covariance = sum((t - mean_t) * (v - mean_v) for t, v in points)
    slope = covariance / var_t
    return slope, covariance * covariance / (var_t * var_v)


def _median_rtt(points: Sequence[tuple[float, float]], now_s: float, config: RiskConfig) -> float:
    if not points:
        return math.inf
    if not config.inflation_halves:
        return statistics.median(v for _, v in points)
    span = config.inflation_window_s or config.window_s
    older = [v for t, v in points if t < now_s - span / 2]
    newer = [v for t, v in points if t >= now_s - span / 2]
    return min(statistics.median(half) for half in (older, newer) if half)


@dataclass(frozen=True)
class _Evidence:
    raw: float
    signals: dict[str, float]
    summary: str


class RiskDetector:
    """Watches one member. Feed it samples in time order with `observe`; ask `assess(now)`."""

    def __init__(self, config: RiskConfig | None = None) -> None:
        self.config = config or RiskConfig()
        self._window: deque[LinkSample] = deque()
        self._history: deque[float] = deque(maxlen=self.config.baseline_history)
        self._recent_raw: deque[float] = deque(
            maxlen=max(self.config.confirm_of, self.config.confirm_assessments)
        )
        self._confirmed = 0
        self._below = 0
        self._alerting = False
        self._alert_level = 0.0
        # The current run of unanswered probes: its length and its first probe's time.
        self._silent_probes = 0
        self._silent_since: float | None = None
        self._held: _Evidence | None = None

    @property
    def baseline_rtt_ms(self) -> float | None:
        if len(self._history) < self.config.baseline_samples:
            return None
        ordered = sorted(self._history)
        return ordered[int(self.config.baseline_quantile * (len(ordered) - 1))]

    def observe(self, sample: LinkSample) -> None:
        if self._window and sample.at_s < self._window[-1].at_s:
            raise ValueError(f"sample at {sample.at_s} s is older than the last one")
        self._window.append(sample)
        if sample.rtt_ms is not None:
            self._history.append(sample.rtt_ms)
            self._silent_probes, self._silent_since = 0, None
        else:
            if self._silent_probes == 0:
                self._silent_since = sample.at_s
            self._silent_probes += 1

    def observe_all(self, samples: Iterable[LinkSample]) -> None:
        for sample in samples:
            self.observe(sample)

    def _evidence(self, window: Sequence[LinkSample], baseline: float, now_s: float) -> _Evidence:
        config = self.config
        answered = [(s.at_s, s.rtt_ms) for s in window if s.rtt_ms is not None]
        # A link that answers nothing is out, not lossy: an outage's probes are not loss.
        counted = _without_outages(window, config.outage_probes) if config.outage_probes else window
        loss = _lost_share(counted)
        counted_loss = (
            _sustained_loss(counted, now_s, config.window_s) if config.sustained_loss else loss
        )
        recent = answered
        if config.inflation_window_s:
            recent = [(t, v) for t, v in answered if t >= now_s - config.inflation_window_s]
        median_rtt = _median_rtt(recent, now_s, config)
        inflation = median_rtt / max(baseline, config.baseline_floor_ms, 1e-3)
        slope, r2 = linear_trend(answered)
        inflation_signal = _clamp(
            (inflation - config.rtt_inflation_onset)
            / (config.rtt_inflation_full - config.rtt_inflation_onset)
        )
        loss_signal = _clamp(counted_loss / config.loss_full)
        rising = slope > 0 and r2 >= config.trend_min_r2
        # A rise too small to matter is not a trend, however regular.
        trend_signal = _clamp(r2) if rising and inflation_signal > 0.05 else 0.0
        w_inflation, w_loss, w_trend = config.weights
        if config.either_signal:
            severity = 1.0 - (1.0 - inflation_signal) * (1.0 - loss_signal)
            raw = _clamp((1.0 - w_trend) * severity + w_trend * trend_signal)
        else:
            raw = _clamp(
                w_inflation * inflation_signal + w_loss * loss_signal + w_trend * trend_signal
            )
        signals = {
            "rttMs": round(median_rtt, 3) if math.isfinite(median_rtt) else -1.0,
            "baselineRttMs": round(baseline, 3),
            "rttInflation": round(inflation, 3) if math.isfinite(inflation) else -1.0,
            "packetLoss": round(loss, 3),
            "rttSlopeMsPerS": round(slope, 3),
            "rttTrendR2": round(r2, 3),
            "rttTrend": round(trend_signal, 3),
        }
        if config.sustained_loss:
            signals["sustainedLoss"] = round(counted_loss, 3)
        if config.outage_probes:
            signals["silentS"] = 0.0
        summary = (
            f"RTT {median_rtt:.0f} ms ({inflation:.1f}x baseline), loss {loss:.0%}, "
            f"rising {slope:.1f} ms/s (R² {r2:.2f})"
        )
        return _Evidence(raw, signals, summary)

    def _in_outage(self) -> bool:
        return 0 < self.config.outage_probes <= self._silent_probes

    def assess(self, now_s: float) -> RiskAssessment:
        config = self.config
        while self._window and self._window[0].at_s < now_s - config.window_s:
            self._window.popleft()
        window = list(self._window)
        baseline = self.baseline_rtt_ms
        if baseline is None or len(window) < config.min_samples:
            self._confirmed, self._below, self._alerting, self._alert_level = 0, 0, False, 0.0
            self._recent_raw.clear()
            return RiskAssessment(now_s, 0.0, 0.0, False, reason="not enough samples yet")
        if self._in_outage():
            return self._outage(now_s)
        evidence = self._evidence(window, baseline, now_s)
        self._held = evidence
        raw = evidence.raw
        self._recent_raw.append(raw)
        if config.confirm_of:
            self._confirmed = sum(1 for r in self._recent_raw if r >= config.alert_score)
        else:
            self._confirmed = self._confirmed + 1 if raw >= config.alert_score else 0
        self._below = self._below + 1 if raw < config.release_score else 0
        if self._confirmed >= config.confirm_assessments and raw >= config.alert_score:
            self._alerting = True
        elif self._below >= config.release_assessments:
            self._alerting = False
        clear = self._alerting
        score = self._published(raw)
        if clear:
            reason = evidence.summary
        elif raw >= config.alert_score:
            reason = f"rising ({self._confirmed} of {config.confirm_assessments} to confirm)"
        else:
            reason = "within the member's normal range"
        return RiskAssessment(
            now_s, round(score, 4), round(raw, 4), clear, evidence.signals, reason
        )

    def _published(self, raw: float) -> float:
        """The score to publish for this evidence: capped until an alert is confirmed, and
        with `hold_alert_level` at the alert's highest while it holds."""
        if not self._alerting:
            self._alert_level = 0.0
            return min(raw, self.config.unconfirmed_cap)
        if self.config.hold_alert_level:
            self._alert_level = max(self._alert_level, raw)
            return self._alert_level
        return raw

    def _outage(self, now_s: float) -> RiskAssessment:
        """No answer for `outage_probes` probes or more: an outage, which from the silence alone
        may as well be a blip that recovers as a failure (reactive recovery tells them apart,
        by how long it lasts). The risk is the evidence from before it, and the confirmation
        neither advances nor resets."""
        silent_s = now_s - (self._silent_since if self._silent_since is not None else now_s)
        held = self._held
        raw = held.raw if held is not None else 0.0
        signals = dict(held.signals) if held is not None else {}
        signals["silentS"] = round(silent_s, 1)
        clear = self._alerting
        score = self._published(raw)
        reason = f"no answer for {silent_s:.0f} s; before that: " + (
            held.summary if held is not None else "no evidence"
        )
        return RiskAssessment(now_s, round(score, 4), round(raw, 4), clear, signals, reason)


@dataclass(frozen=True)
class HeartbeatVerdict:
    reachable: bool
    consecutive_misses: int
    since_s: float | None
    """When the member was declared unreachable (the first miss of the run that did it)."""


class HeartbeatDetector:
    """Declares a member unreachable after `misses_to_fail` unanswered heartbeats in a row, and
    reachable again at the first answer: a lost packet is not an outage, as the API-server
    probe it stands for retries over TCP."""

    def __init__(self, misses_to_fail: int = 3) -> None:
        if misses_to_fail < 1:
            raise ValueError("misses_to_fail must be at least 1")
        self.misses_to_fail = misses_to_fail
        self._misses = 0
        self._first_miss_s: float | None = None

    def observe(self, sample: LinkSample) -> HeartbeatVerdict:
        if sample.answered:
            self._misses, self._first_miss_s = 0, None
        else:
            if self._misses == 0:
                self._first_miss_s = sample.at_s
            self._misses += 1
        failed = self._misses >= self.misses_to_fail
        return HeartbeatVerdict(
            reachable=not failed,
            consecutive_misses=self._misses,
            since_s=self._first_miss_s if failed else None,
        )
