"""The operator's risk settings at one probe a second on the cases that pull against each other:
a short warning before a partition must raise an alert early, while a cluster of RTT spikes or
a jittery healthy link must not; and an alert, once raised, publishes a score that does not dip
below a job's threshold while it holds."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from continuum.operator.recovery.risk import LinkSample, RiskAssessment, RiskConfig, RiskDetector
from continuum.operator.recovery.signals import probe_risk_config

pytestmark = pytest.mark.unit

CONFIG = probe_risk_config()
THRESHOLD = 0.7  # an MLJob's default risk threshold


def healthy(
    count: int, rtt: float = 30.0, jitter: float = 6.0, seed: int = 1
) -> list[float | None]:
    rng = random.Random(seed)
    return [rtt + rng.uniform(-jitter, jitter) for _ in range(count)]


def run(trace: list[float | None], config: RiskConfig = CONFIG) -> list[RiskAssessment]:
    detector = RiskDetector(config)
    found = []
    for second, rtt in enumerate(trace):
        detector.observe(LinkSample(float(second), rtt))
        found.append(detector.assess(float(second)))
    return found


def fading(seconds: int, seed: int) -> list[float | None]:
    """A link fading before a partition: over `seconds`, the RTT triples (30 -> 90 ms, jitter
    on top) and the loss of each probe climbs from 2% to 40%."""
    rng = random.Random(seed)
    trace: list[float | None] = []
    for second in range(seconds):
        progress = second / (seconds - 1)
        lost = rng.random() < 0.02 + 0.38 * progress
        trace.append(None if lost else 30.0 + 60.0 * progress + rng.uniform(-6.0, 6.0))
    return trace


@pytest.mark.parametrize("seed", range(8))
def test_a_short_fade_before_a_partition_is_an_alert_well_before_it(seed: int) -> None:
    # 20 s of warning (with the 15 s window, 8 s median and 4.0x full inflation of before,
    # the alert came 4 s ahead at best, mostly 0-2 s)
    warning_s = 20
    found = run(healthy(120) + fading(warning_s, seed) + [None] * 40)
    cut = 120 + warning_s
    first_alert = next(i for i, a in enumerate(found) if a.score > THRESHOLD)
    # an alert 5 s ahead leaves time to start a replacement before the link is cut
    assert first_alert <= cut - 5, [a.raw_score for a in found[120:cut]]
    assert all(a.score > THRESHOLD for a in found[first_alert:])


def test_an_alert_publishes_its_highest_level_while_it_holds() -> None:
    rng = random.Random(4)
    rise = [300.0 + rng.uniform(-20, 20) for _ in range(20)]
    # then back down to about 1.8x the baseline: the evidence falls to about 0.5 (not yet the
    # release score for ten seconds in a row), and would publish that
    easing = healthy(8, rtt=45.0, jitter=2.0, seed=5)
    trace = healthy(120) + rise + easing
    found = run(trace)
    peak = max(a.score for a in found[120:140])
    assert peak > THRESHOLD
    assert all(a.clear and a.score == peak for a in found[140:])
    # The evidence of the moment did dip: without the hold the job's shards would come back.
    assert min(a.raw_score for a in found[140:]) < THRESHOLD
    unheld = run(trace, replace(CONFIG, hold_alert_level=False))
    assert min(a.score for a in unheld[140:]) < THRESHOLD


def test_a_released_alert_starts_its_next_level_afresh() -> None:
    rng = random.Random(6)
    trace = healthy(120) + [400.0 + rng.uniform(-20, 20) for _ in range(20)] + healthy(60)
    found = run(trace)
    assert found[139].clear
    assert not found[-1].clear
    assert found[-1].score < 0.35


def test_a_cluster_of_spikes_is_not_an_inflation() -> None:
    # four seconds of a congested queue in a row: for four assessments, the most of the last
    # 7 probes (the median's window), but only for one of them in both its halves
    trace = [*healthy(120), 450.0, 520.0, 480.0, 500.0, *healthy(10, seed=2)]
    found = run(trace)
    assert sum(1 for a in found if a.signals.get("rttInflation", 0.0) > 2) <= 1
    assert not any(a.clear for a in found)
    whole = run(trace, replace(CONFIG, inflation_halves=False))
    assert sum(1 for a in whole if a.signals.get("rttInflation", 0.0) > 2) == 4
    assert any(a.clear for a in whole)


@pytest.mark.parametrize("seed", range(4))
def test_a_jittery_healthy_link_counts_no_inflation(seed: int) -> None:
    # jitter of +-30%: the median sits some 1.3x above the baseline, a low quantile
    found = run(healthy(300, rtt=40.0, jitter=12.0, seed=seed))
    assert max(a.raw_score for a in found[120:]) < 0.35
    onset_at_baseline = run(
        healthy(300, rtt=40.0, jitter=12.0, seed=seed), replace(CONFIG, rtt_inflation_onset=1.0)
    )
    assert max(a.raw_score for a in onset_at_baseline[120:]) > 0.35


def test_a_doubled_rtt_alone_is_a_risk() -> None:
    found = run(healthy(120) + healthy(20, rtt=70.0, jitter=6.0, seed=3))
    assert found[-1].clear and found[-1].score > THRESHOLD


def test_the_inflation_onset_must_lie_below_the_full_inflation() -> None:
    with pytest.raises(ValueError, match="rtt_inflation_onset"):
        RiskConfig(rtt_inflation_full=2.0, rtt_inflation_onset=2.0)
    with pytest.raises(ValueError, match="rtt_inflation_onset"):
        RiskConfig(rtt_inflation_onset=0.5)
