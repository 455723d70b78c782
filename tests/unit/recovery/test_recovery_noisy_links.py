"""The risk detector's handling of noisy links, with the operator's settings at one probe a
second: outages held at the evidence before them, loss bursts apart from sustained loss, either
signal enough alone, confirmation over k of n and a release that waits."""

from __future__ import annotations

import random

import pytest

from continuum.operator.recovery.risk import LinkSample, RiskAssessment, RiskDetector
from continuum.operator.recovery.signals import probe_risk_config

pytestmark = pytest.mark.unit

CONFIG = probe_risk_config()


def healthy(
    count: int, rtt: float = 30.0, jitter: float = 6.0, seed: int = 1
) -> list[float | None]:
    rng = random.Random(seed)
    return [rtt + rng.uniform(-jitter, jitter) for _ in range(count)]


def run(trace: list[float | None], detector: RiskDetector | None = None) -> list[RiskAssessment]:
    detector = detector or RiskDetector(CONFIG)
    found = []
    for second, rtt in enumerate(trace):
        detector.observe(LinkSample(float(second), rtt))
        found.append(detector.assess(float(second)))
    return found


def test_an_outage_from_a_healthy_link_raises_no_risk() -> None:
    # A blip of 25 s: from the silence alone it may as well recover as fail.
    found = run(healthy(120) + [None] * 25 + healthy(40, seed=2))
    assert not any(a.clear for a in found)
    assert max(a.score for a in found) < 0.2
    silent = found[120 + 20]
    assert silent.signals["silentS"] >= 18
    assert "no answer for" in silent.reason


def test_an_outage_after_a_confirmed_degradation_holds_the_alert() -> None:
    rng = random.Random(3)
    ramp: list[float | None] = [30.0 + 8.0 * step + rng.uniform(-5, 5) for step in range(40)]
    found = run(healthy(120) + ramp + [None] * 20)
    assert found[159].clear
    assert all(a.clear and a.score > 0.7 for a in found[160:])


def test_a_loss_burst_is_not_a_sustained_loss() -> None:
    # 8 s at two probes lost of three (runs too short to be an outage), then well again
    burst: list[float | None] = [None, None, 30.0] * 2 + [None, None]
    found = run(healthy(120) + burst + healthy(30, seed=5))
    assert not any(a.clear for a in found)
    assert max(a.signals["packetLoss"] for a in found[120:]) > 0.35
    assert max(a.signals["sustainedLoss"] for a in found[120:]) <= 0.2


def test_sustained_loss_alone_is_a_risk() -> None:
    # every other probe lost (each third of the window loses 2 or 3 of its 5): a link that
    # answers, badly; no RTT rise at all
    lossy = [None if second % 2 else rtt for second, rtt in enumerate(healthy(40, seed=6))]
    found = run(healthy(120) + lossy)
    assert found[-1].clear and found[-1].score > 0.7


def test_a_severe_rise_in_rtt_alone_is_a_risk() -> None:
    # Ten times the baseline and no loss: the link is failing even though it answers.
    found = run(healthy(120) + healthy(40, rtt=300.0, jitter=20.0, seed=7))
    assert found[-1].clear and found[-1].score > 0.7


def test_spikes_are_not_a_risk() -> None:
    trace = healthy(200)
    for second in (130, 131, 150, 170, 171, 172):
        trace[second] = 500.0
    assert not any(a.clear for a in run(trace))


def test_one_good_probe_does_not_restart_the_confirmation() -> None:
    rng = random.Random(8)
    bad: list[float | None] = [300.0 + rng.uniform(-20, 20) for _ in range(30)]
    for second in range(8, 30, 3):
        bad[second] = 30.0
    found = run(healthy(120) + bad)
    assert found[-1].clear


def test_an_alert_ends_only_after_the_link_has_been_well_for_a_while() -> None:
    detector = RiskDetector(CONFIG)
    found = run(healthy(120) + healthy(30, rtt=300.0, jitter=20.0, seed=9), detector)
    assert found[-1].clear
    recovered = []
    for second, rtt in enumerate(healthy(40, seed=10), start=150):
        detector.observe(LinkSample(float(second), rtt))
        recovered.append(detector.assess(float(second)))
    # The median window needs a few seconds to empty of the bad RTTs, then the release waits.
    first_release = next(i for i, a in enumerate(recovered) if not a.clear)
    assert first_release >= CONFIG.release_assessments
    assert not recovered[-1].clear
