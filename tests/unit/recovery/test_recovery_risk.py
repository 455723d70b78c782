"""The risk and heartbeat detectors on hand-made link traces."""

from __future__ import annotations

import random

import pytest

from continuum.operator.recovery.risk import (
    HeartbeatDetector,
    LinkSample,
    RiskAssessment,
    RiskConfig,
    RiskDetector,
    linear_trend,
)

pytestmark = pytest.mark.unit

INTERVAL_S = 0.25


def run(detector: RiskDetector, rtts: list[float | None]) -> list[RiskAssessment]:
    assessments = []
    for index, rtt in enumerate(rtts):
        at = index * INTERVAL_S
        detector.observe(LinkSample(at, rtt))
        assessments.append(detector.assess(at))
    return assessments


def healthy(count: int, rtt: float = 8.0, jitter: float = 1.0, seed: int = 1) -> list[float | None]:
    rng = random.Random(seed)
    return [rtt + rng.uniform(-jitter, jitter) for _ in range(count)]


def degrading(count: int, base: float = 8.0, peak_extra: float = 150.0, peak_loss: float = 0.3,
              seed: int = 2) -> list[float | None]:  # fmt: skip
    rng = random.Random(seed)
    trace: list[float | None] = []
    for index in range(count):
        progress = index / (count - 1)
        lost = rng.random() < progress * peak_loss
        trace.append(None if lost else base + progress * peak_extra + rng.uniform(-1, 1))
    return trace


def test_a_steady_link_carries_no_risk() -> None:
    assessments = run(RiskDetector(), healthy(80))
    assert max(a.score for a in assessments) < 0.05
    assert not any(a.clear for a in assessments)


def test_a_far_site_with_a_high_but_steady_rtt_is_not_at_risk() -> None:
    assessments = run(RiskDetector(), healthy(80, rtt=90.0, jitter=8.0))
    assert max(a.score for a in assessments) < 0.2
    assert not any(a.clear for a in assessments)


def test_noise_and_a_spike_are_never_published_as_a_risk() -> None:
    config = RiskConfig()
    trace = healthy(80, jitter=3.0)
    trace[40:43] = [400.0, None, 350.0]  # one burst: a congested moment, not a failing link
    assessments = run(RiskDetector(config), trace)
    assert not any(a.clear for a in assessments)
    assert max(a.score for a in assessments) <= config.unconfirmed_cap


def test_a_degrading_link_is_flagged_while_it_still_answers() -> None:
    config = RiskConfig()
    trace = healthy(20) + degrading(40)
    assessments = run(RiskDetector(config), trace)
    clear = [index for index, a in enumerate(assessments) if a.clear]
    assert clear, "the ramp was never recognised"
    first = clear[0]
    # Recognised during the ramp, before the link is at its worst, with a score a job's
    # threshold of 0.7 acts on.
    assert 20 < first < len(trace) - 1
    assert max(a.score for a in assessments[first:]) > 0.7
    assert assessments[first].signals["rttInflation"] > 1.5
    assert assessments[first].signals["rttSlopeMsPerS"] > 0


def test_confirmation_holds_back_the_score_until_the_trend_persists() -> None:
    config = RiskConfig(confirm_assessments=4)
    assessments = run(RiskDetector(config), healthy(20) + degrading(40))
    first_alert = next(i for i, a in enumerate(assessments) if a.raw_score >= config.alert_score)
    first_clear = next(i for i, a in enumerate(assessments) if a.clear)
    assert first_clear == first_alert + config.confirm_assessments - 1
    assert all(a.score <= config.unconfirmed_cap for a in assessments[:first_clear])


def test_a_dead_link_is_all_loss() -> None:
    assessments = run(RiskDetector(), [*healthy(20), *([None] * 20)])
    assert assessments[-1].signals["packetLoss"] == 1.0
    assert assessments[-1].clear


def test_no_assessment_before_a_baseline() -> None:
    detector = RiskDetector(RiskConfig(baseline_samples=5, min_samples=6))
    assessments = run(detector, [None, None, 50.0, 60.0])
    assert all(a.score == 0.0 and a.reason == "not enough samples yet" for a in assessments)
    assert detector.baseline_rtt_ms is None


def test_samples_must_come_in_time_order() -> None:
    detector = RiskDetector()
    detector.observe(LinkSample(2.0, 8.0))
    with pytest.raises(ValueError, match="older"):
        detector.observe(LinkSample(1.0, 8.0))


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"weights": (0.5, 0.5, 0.5)}, "sum to 1"), ({"unconfirmed_cap": 0.9}, "unconfirmed_cap")],
)
def test_inconsistent_configs_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RiskConfig(**changes)  # type: ignore[arg-type]


def test_linear_trend() -> None:
    slope, r2 = linear_trend([(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)])
    assert slope == pytest.approx(2.0)
    assert r2 == pytest.approx(1.0)
    assert linear_trend([(0.0, 1.0), (1.0, 1.0), (2.0, 1.0)]) == (0.0, 0.0)
    assert linear_trend([(0.0, 1.0)]) == (0.0, 0.0)


def test_heartbeats_declare_a_member_unreachable_after_consecutive_misses() -> None:
    detector = HeartbeatDetector(misses_to_fail=3)
    trace = [8.0, None, None, 8.0, None, None, None, 9.0]
    verdicts = [detector.observe(LinkSample(float(t), rtt)) for t, rtt in enumerate(trace)]
    assert [v.reachable for v in verdicts] == [True, True, True, True, True, True, False, True]
    assert verdicts[6].since_s == 4.0
    assert verdicts[7].consecutive_misses == 0


def test_heartbeat_detector_needs_at_least_one_miss() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        HeartbeatDetector(misses_to_fail=0)


def test_a_slow_start_does_not_raise_the_baseline() -> None:
    # The first answers come late (workers starting, a busy machine), then the link settles:
    # the baseline must be the settled RTT, or a later degradation would look mild.
    trace = [60.0, 70.0, 55.0, 65.0, 58.0, *healthy(30, rtt=12.0)]
    detector = RiskDetector()
    run(detector, trace)
    baseline = detector.baseline_rtt_ms
    assert baseline is not None and baseline < 15.0


def test_a_confirmed_alert_holds_through_a_good_moment() -> None:
    config = RiskConfig()
    detector = RiskDetector(config)
    assessments = run(detector, healthy(20) + degrading(40))
    assert assessments[-1].clear
    at = len(assessments) * INTERVAL_S
    # Two answers near the baseline: the evidence dips, the alert stays.
    for offset, rtt in enumerate([9.0, 9.5]):
        detector.observe(LinkSample(at + offset * INTERVAL_S, rtt))
        held = detector.assess(at + offset * INTERVAL_S)
        assert held.clear
        assert held.score == held.raw_score


def test_an_alert_is_released_once_the_link_is_back_to_normal() -> None:
    detector = RiskDetector(RiskConfig(window_s=2.0))
    assessments = run(detector, healthy(20) + degrading(30) + healthy(40, seed=5))
    assert any(a.clear for a in assessments)
    assert not assessments[-1].clear
    assert assessments[-1].score < 0.2
