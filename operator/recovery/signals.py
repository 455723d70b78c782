"""A member's link signals, from what Prometheus measured, into the part of its status the
signals own: `risk`, `latencyToSites` and the `Degraded` condition. Pure: the readings and the
time come in, a status fragment goes out.

The risk detector is replayed, each time, over the probes Prometheus holds for the hub's pair
to the member's site: a fresh `RiskDetector` sees the last `history_s` seconds of probes (its
baseline) and is assessed at each probe of the last `assess_s` seconds (so that a rise must
hold for `confirm_assessments` probes, and an alert holds while the evidence stays above the
release score). Nothing is kept between reads: the state is Prometheus's, and an operator
restarted reaches the same verdict from the same probes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from continuum.operator.api import (
    ConditionStatus,
    DegradedReason,
    MemberCluster,
    MemberClusterConditionType,
    MemberClusterStatus,
    Risk,
    upsert_condition,
)
from continuum.operator.api.links import HUB_PLACE, LinkReadings, ProbeSample
from continuum.operator.recovery.risk import (
    HeartbeatDetector,
    HeartbeatVerdict,
    LinkSample,
    RiskAssessment,
    RiskConfig,
    RiskDetector,
)

# The Degraded condition's reasons.
PROBES_UNANSWERED: Final = DegradedReason.PROBES_UNANSWERED
SITE_UNREACHABLE: Final = DegradedReason.SITE_UNREACHABLE
UNREACHABLE_FROM_HUB: Final = DegradedReason.UNREACHABLE_FROM_HUB
LINK_DEGRADING: Final = DegradedReason.LINK_DEGRADING
PACKET_LOSS: Final = DegradedReason.PACKET_LOSS
LINK_HEALTHY: Final = DegradedReason.LINK_HEALTHY
NO_PROBES: Final = DegradedReason.NO_PROBES
SIGNALS_UNAVAILABLE: Final = DegradedReason.SIGNALS_UNAVAILABLE


def probe_risk_config() -> RiskConfig:
    """The risk detector's settings for blackbox probes once a second over noisy links (the
    demo's defaults assume ten a second over clean ones). At 1 Hz:

    - `window_s` 15: the loss and the trend fit of 15 probes (a straight-line fit over 15 noisy
      points reaches R² 0.5 by chance well under 1% of the time); `inflation_window_s` 6 and
      `inflation_halves`: the median RTT is the lesser of the medians of the last 6 s of
      probes' two halves, so that a rise must hold for the 6 s (a cluster of spikes fills one
      half at most), and lags a rise by about 4.5 s rather than 7.5 (the median of 15);
    - `min_samples` 10: a window two thirds full; fewer probes scraped is no verdict;
    - `baseline_samples` 10, `baseline_history` 300: the baseline is the 10th percentile of the
      last 5 minutes of answered probes, so a degradation must last about 4.5 minutes before
      it becomes the new normal; `baseline_floor_ms` 10: a few milliseconds of queueing are
      noise on any WAN path, and a ratio to a sub-millisecond baseline (a LAN, or the testbed)
      would call them a tenfold rise;
    - `outage_probes` 3: three probes in a row unanswered (the heartbeat's count) is an outage,
      which from the silence alone may be a blip that recovers as well as a failure: the risk
      stays what it was before it, and its probes are not counted as loss afterwards either.
      Outages are reactive recovery's, which tells blip from failure by their length;
    - `sustained_loss`: the loss counted is the least of the window's three 5 s thirds, so
      that a burst of a few seconds (a handover, a queue overflowing) is not a failing link;
    - `either_signal`, `rtt_inflation_onset` 1.5, `rtt_inflation_full` 2, `loss_full` 0.3:
      an RTT twice its baseline in both halves, or 30% of the probes lost in every third of
      the window, is a failing link on its own (the weighted sum of the demo capped an
      RTT-only rise below a job's threshold); a steady rise adds up to 0.2. Up to 1.5x the
      baseline the RTT counts nothing: a jittery link's median sits that far above the 10th
      percentile that is its baseline. Counted in full only at 4x, a link fading for less than
      about 20 s before a partition is seldom foreseen 5 s ahead; the halves keep out the
      spikes that a lower full inflation would otherwise turn into alerts;
    - `confirm_assessments` 4 of `confirm_of` 6 at the alert score before it is published
      above `unconfirmed_cap` (one noisy second never moves shards, and one good probe on a
      failing link does not restart the count), and `release_assessments` 10: an alert ends
      after 10 s in a row below the release score, not at the first good moment;
    - `hold_alert_level`: while an alert holds, its highest score is published, so that a job
      moved off the member stays moved until the alert ends, rather than flipping back each
      time the evidence dips under the job's threshold.

    Judged offline with `e2e/detector_replay.py`: designed on generated seeds 0-99, reported
    on 1000-1199 (docs/operator.md, Link signals).
    """
    return RiskConfig(
        window_s=15.0,
        min_samples=10,
        baseline_samples=10,
        baseline_quantile=0.1,
        baseline_history=300,
        baseline_floor_ms=10.0,
        rtt_inflation_full=2.0,
        rtt_inflation_onset=1.5,
        confirm_assessments=4,
        confirm_of=6,
        release_assessments=10,
        outage_probes=3,
        sustained_loss=True,
        either_signal=True,
        inflation_window_s=6.0,
        inflation_halves=True,
        hold_alert_level=True,
    )


@dataclass(frozen=True)
class SignalsConfig:
    risk: RiskConfig = field(default_factory=probe_risk_config)
    history_s: float = 300.0
    """How far back the probes are read: the baseline's history."""
    assess_s: float = 60.0
    """The replay assesses at every probe of this last stretch (the confirmation and the
    hysteresis of an alert live within it)."""
    misses_to_fail: int = 3
    """Probes in a row unanswered that make the site's link count as down (ProbesUnanswered)."""
    degraded_loss: float = 0.2
    """A recorded loss (30 s mean) at or above this is Degraded, reason PacketLoss."""
    stale_s: float = 10.0
    """Probes older than this, with none newer, are no probes: Prometheus stopped scraping."""
    risk_step: float = 0.05
    """A new risk score is written when it moved by at least this, ..."""
    latency_step_ms: float = 1.0
    latency_step_ratio: float = 0.05
    """... and an RTT when it moved by more than the larger of these (absolute, relative)."""

    def __post_init__(self) -> None:
        if self.history_s < self.risk.window_s or self.assess_s <= 0:
            raise ValueError("need history_s >= the risk window and assess_s > 0")
        if self.misses_to_fail < 1 or not 0.0 < self.degraded_loss <= 1.0:
            raise ValueError("need misses_to_fail >= 1 and 0 < degraded_loss <= 1")


@dataclass(frozen=True)
class LinkAssessment:
    """The hub's link to one site: the risk detector's last verdict and the heartbeat's."""

    risk: RiskAssessment
    heartbeat: HeartbeatVerdict | None
    probes: int
    """how many probes were replayed"""


def assess_link(
    samples: Sequence[ProbeSample], now_s: float, config: SignalsConfig
) -> LinkAssessment | None:
    """Replays the probes (in time order, none after `now_s`) into a fresh detector; None when
    there are none recent enough to judge by."""
    recent = [s for s in samples if now_s - config.history_s <= s.at_s <= now_s]
    if not recent or recent[-1].at_s < now_s - config.stale_s:
        return None
    detector = RiskDetector(config.risk)
    heartbeat = HeartbeatDetector(config.misses_to_fail)
    verdict: HeartbeatVerdict | None = None
    assessment = RiskAssessment(now_s, 0.0, 0.0, False, reason="not enough samples yet")
    assess_from = recent[-1].at_s - config.assess_s
    for probe in recent:
        sample = LinkSample(probe.at_s, probe.rtt_ms)
        detector.observe(sample)
        verdict = heartbeat.observe(sample)
        if probe.at_s >= assess_from:
            assessment = detector.assess(probe.at_s)
    return LinkAssessment(assessment, verdict, len(recent))


def latency_to_sites(site: str, readings: LinkReadings) -> dict[str, float]:
    """From the member's site to every other site measured, and from the hub (key `hub`) to
    it: the recorded RTTs, in ms, rounded to 0.1 ms."""
    found = {
        target: round(rtt, 1)
        for (source, target), rtt in readings.rtt_ms.items()
        if source == site and target not in (site, HUB_PLACE)
    }
    hub = readings.rtt_ms.get((HUB_PLACE, site))
    if hub is not None:
        found[HUB_PLACE] = round(hub, 1)
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class PeerView:
    """How the other sites that probe a site see it, by their recent probes."""

    reaching: tuple[str, ...]
    """answered their last probe"""
    cut_off: tuple[str, ...]
    """their last `misses_to_fail` probes went unanswered"""


def peer_view(site: str, readings: LinkReadings, config: SignalsConfig) -> PeerView:
    """The other sites' recent view of `site`. A site whose own probes are stale (it is out
    itself, or Prometheus cannot scrape it) says nothing, nor one between the two verdicts."""
    reaching, cut_off = [], []
    for source, verdicts in readings.peer_answers_to.get(site, {}).items():
        if source in (site, HUB_PLACE) or not verdicts:
            continue
        if verdicts[-1][0] < readings.at_s - config.stale_s:
            continue
        if verdicts[-1][1]:
            reaching.append(source)
        elif len(verdicts) >= config.misses_to_fail and not any(
            answered for _, answered in verdicts[-config.misses_to_fail :]
        ):
            cut_off.append(source)
    return PeerView(tuple(reaching), tuple(cut_off))


def _unanswered(site: str, misses: int, peers: PeerView) -> tuple[DegradedReason, str]:
    """The reason and message for a site whose hub probes go unanswered, by what the other
    sites see: the site out, the hub's path to it, or nothing more known. The probes are the
    hub's of the site, or a Pull site's agent's of the hub (api/links.seen_from): the messages
    name the link, not a direction."""
    hub = f"the last {misses} probes between the hub and {site} were not answered"
    if peers.reaching:
        return UNREACHABLE_FROM_HUB, (
            f"{hub}, but {', '.join(peers.reaching)} reach it: the hub's path to it fails, "
            "not the site"
        )
    if peers.cut_off:
        return SITE_UNREACHABLE, (
            f"{hub}, nor were those from {', '.join(peers.cut_off)}: the site or its own link "
            "is out"
        )
    return PROBES_UNANSWERED, hub


def _degraded(
    site: str,
    link: LinkAssessment | None,
    loss: float | None,
    peers: PeerView,
    config: SignalsConfig,
) -> tuple[ConditionStatus, DegradedReason, str]:
    if link is None:
        return (ConditionStatus.UNKNOWN, NO_PROBES,
                f"Prometheus holds no recent probes between the hub and {site}")  # fmt: skip
    if link.heartbeat is not None and not link.heartbeat.reachable:
        reason, message = _unanswered(site, link.heartbeat.consecutive_misses, peers)
        return ConditionStatus.TRUE, reason, message
    if link.risk.clear:
        return ConditionStatus.TRUE, LINK_DEGRADING, link.risk.reason
    if loss is not None and loss >= config.degraded_loss:
        return (ConditionStatus.TRUE, PACKET_LOSS,
                f"{loss:.0%} of the probes between the hub and {site} in the last 30 s were "
                "lost")  # fmt: skip
    return ConditionStatus.FALSE, LINK_HEALTHY, link.risk.reason


def _risk(link: LinkAssessment, config: SignalsConfig) -> Risk:
    signals = dict(link.risk.signals)
    if link.heartbeat is not None:
        misses = link.heartbeat.consecutive_misses
        signals["heartbeatMissRatio"] = round(min(1.0, misses / config.misses_to_fail), 3)
    return Risk(score=link.risk.score, signals=signals)


def signals_status(
    member: MemberCluster,
    readings: LinkReadings | None,
    now: datetime,
    config: SignalsConfig,
    unavailable: str = "",
) -> dict[str, Any]:
    """The signals-owned part of the member's status (`conditions` holding Degraded alone,
    `risk`, `latencyToSites`), to be applied by the signals' field manager. `readings` None:
    Prometheus could not be read (`unavailable` says why); Degraded is then Unknown and the risk
    and latencies stay as they were, as they do when no probe of the site is recent."""
    status = member.status or MemberClusterStatus()
    site = member.spec.site
    risk, latency = status.risk, dict(status.latency_to_sites)
    if readings is None:
        state, reason = ConditionStatus.UNKNOWN, SIGNALS_UNAVAILABLE
        message = (
            f"{unavailable or 'Prometheus could not be read'}; the last known risk and "
            "latencies stand"
        )
    else:
        link = assess_link(readings.samples.get((HUB_PLACE, site), ()), readings.at_s, config)
        latency = latency_to_sites(site, readings)
        state, reason, message = _degraded(
            site, link, readings.loss.get((HUB_PLACE, site)), peer_view(site, readings, config),
            config,
        )  # fmt: skip
        if link is not None:
            risk = _risk(link, config)
    conditions = upsert_condition(
        status.conditions, MemberClusterConditionType.DEGRADED, state, reason, message,
        observed_generation=member.metadata.generation, now=now,
    )  # fmt: skip
    degraded = next(c for c in conditions if c.type == MemberClusterConditionType.DEGRADED)
    # An empty map is left out, not sent: server-side apply turns a map emptied of the
    # entries a manager owned into null, which the schema refuses (the whole write fails).
    # Left out, the field manager's entries are removed with the field.
    fragment = MemberClusterStatus.model_validate(
        {"conditions": [degraded]}
        | ({"latencyToSites": latency} if latency else {})
        | ({"risk": _without_empty_signals(risk)} if risk is not None else {})
    )
    return fragment.to_dict()


def _without_empty_signals(risk: Risk) -> dict[str, Any]:
    found = risk.to_dict()
    if not found.get("signals"):
        found.pop("signals", None)
    return found


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


def worth_writing(
    current: Mapping[str, Any] | None, fragment: Mapping[str, Any], config: SignalsConfig
) -> bool:
    """Whether `fragment` differs from the member's raw status `current` by enough to write:
    Degraded's status or reason, the risk score by `risk_step`, a latency added, gone or moved
    by more than the larger of `latency_step_ms` and `latency_step_ratio`. Noise alone writes
    nothing; what the status shows is then at most that far from the measurement."""
    current = current or {}
    old, new = _condition(current, "Degraded"), _condition(fragment, "Degraded")
    if (old.get("status"), old.get("reason")) != (new.get("status"), new.get("reason")):
        return True
    old_risk, new_risk = current.get("risk"), fragment.get("risk")
    if (old_risk is None) != (new_risk is None):
        return True
    if (
        old_risk is not None
        and new_risk is not None
        and abs(float(old_risk["score"]) - float(new_risk["score"])) >= config.risk_step
    ):
        return True
    old_latency: Mapping[str, float] = current.get("latencyToSites") or {}
    new_latency: Mapping[str, float] = fragment.get("latencyToSites") or {}
    if set(old_latency) != set(new_latency):
        return True
    return any(
        abs(new_latency[key] - old_latency[key])
        > max(config.latency_step_ms, config.latency_step_ratio * old_latency[key])
        for key in new_latency
    )
