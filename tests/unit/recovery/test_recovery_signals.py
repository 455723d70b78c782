"""The operator's link signals on synthetic 1 Hz probe series: the risk replayed from a window
of probes, and the status fragment the signals loop applies."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from continuum.operator.api import MemberCluster
from continuum.operator.api.links import LinkReadings, ProbeSample
from continuum.operator.recovery.signals import (
    LINK_DEGRADING,
    LINK_HEALTHY,
    NO_PROBES,
    PACKET_LOSS,
    PROBES_UNANSWERED,
    SIGNALS_UNAVAILABLE,
    SITE_UNREACHABLE,
    UNREACHABLE_FROM_HUB,
    SignalsConfig,
    assess_link,
    latency_to_sites,
    peer_view,
    signals_status,
    worth_writing,
)

pytestmark = pytest.mark.unit

CONFIG = SignalsConfig()
NOW = datetime(2026, 1, 1, tzinfo=UTC)
T0 = 1_000_000.0


def noisy(rng: random.Random, base_ms: float, jitter_ms: float, loss: float) -> float | None:
    if rng.random() < loss:
        return None
    # mostly small jitter, now and then a queueing spike, as on a shared WAN path
    spike = rng.expovariate(1 / 15.0) if rng.random() < 0.03 else 0.0
    return max(0.1, base_ms + rng.uniform(-jitter_ms, jitter_ms) + spike)


def series(rtts: list[float | None]) -> list[ProbeSample]:
    return [ProbeSample(T0 + i, rtt) for i, rtt in enumerate(rtts)]


def scores(samples: list[ProbeSample], start: int, every: int = 2) -> list[tuple[int, float, bool]]:
    """(second, published score, clear) as the loop would see every `every` seconds."""
    found = []
    for second in range(start, len(samples), every):
        link = assess_link(samples[: second + 1], T0 + second, CONFIG)
        assert link is not None
        found.append((second, link.risk.score, link.risk.clear))
    return found


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("base_ms", "jitter_ms"), [(0.3, 0.2), (8.0, 4.0), (40.0, 12.0)])
def test_a_healthy_noisy_link_stays_low(seed: int, base_ms: float, jitter_ms: float) -> None:
    rng = random.Random(seed)
    samples = series([noisy(rng, base_ms, jitter_ms, 0.02) for _ in range(420)])
    found = scores(samples, start=120, every=3)
    assert not any(clear for _, _, clear in found)
    assert max(score for _, score, _ in found) < 0.35, max(found, key=lambda item: item[1])


def test_a_steady_climb_with_loss_rises_and_is_confirmed() -> None:
    rng = random.Random(7)
    rtts = [noisy(rng, 20.0, 5.0, 0.01) for _ in range(300)]
    # then 60 s of RTT climbing 20 -> 260 ms, and loss climbing to 25%
    for step in range(60):
        rtts.append(noisy(rng, 20.0 + 4.0 * step, 5.0, 0.25 * step / 60))
    samples = series(rtts)
    found = scores(samples, start=300)
    confirmed = next(second for second, _, clear in found if clear)
    # The ramp starts at second 300. The median of a 15 s window lags the ramp by 7.5 s, and
    # inflation counts fully at 6x the baseline (about 100 ms here, 20 s into the ramp), then
    # five probes confirm: clear well before the ramp ends.
    assert 10 <= confirmed - 300 <= 35, found
    assert max(score for _, score, _ in found) >= 0.6
    link = assess_link(samples, T0 + len(samples) - 1, CONFIG)
    assert link is not None and link.risk.clear
    assert link.risk.signals["rttInflation"] > 5
    assert link.risk.signals["rttTrend"] > 0.5


def test_a_single_spike_or_a_short_loss_burst_does_not() -> None:
    rng = random.Random(3)
    rtts = [noisy(rng, 20.0, 5.0, 0.0) for _ in range(360)]
    rtts[300] = 700.0  # one probe's RTT
    rtts[330:334] = [None] * 4  # four probes in a row lost, then answered again
    found = scores(samples := series(rtts), start=290, every=1)
    assert not any(clear for _, _, clear in found)
    assert max(score for _, score, _ in found) <= CONFIG.risk.unconfirmed_cap
    assert assess_link(samples, T0 + 359, CONFIG) is not None


def test_the_replay_is_the_same_whatever_came_before_the_history() -> None:
    """Stateless: the verdict depends on the probes of the history window alone."""
    rng = random.Random(5)
    rtts = [noisy(rng, 20.0, 5.0, 0.01) for _ in range(400)]
    one = assess_link(series(rtts), T0 + 399, CONFIG)
    other = assess_link(series([500.0] * 50 + rtts[50:]), T0 + 399, CONFIG)
    assert one == other


def test_no_recent_probes_is_no_verdict() -> None:
    samples = series([20.0] * 60)
    assert assess_link(samples, T0 + 59 + CONFIG.stale_s + 1, CONFIG) is None
    assert assess_link([], T0, CONFIG) is None


def member(status: dict[str, object] | None = None) -> MemberCluster:
    return MemberCluster.model_validate(
        {
            "metadata": {"name": "member-1", "generation": 1},
            "spec": {
                "tier": "Edge",
                "site": "delft",
                "region": "eu-west",
                "kubeconfigSecretRef": {"name": "member-1"},
            },
            **({"status": status} if status else {}),
        }
    )


def readings(rtts: list[float | None], loss: float = 0.0) -> LinkReadings:
    samples = series(rtts)
    return LinkReadings(
        at_s=samples[-1].at_s,
        samples={("hub", "delft"): tuple(samples)},
        rtt_ms={
            ("hub", "delft"): 20.04,
            ("delft", "ghent"): 12.26,
            ("ghent", "delft"): 12.3,
            ("delft", "frankfurt"): 31.0,
        },
        loss={("hub", "delft"): loss},
    )


def degraded(fragment: dict[str, object]) -> dict[str, str]:
    conditions = fragment["conditions"]
    assert isinstance(conditions, list) and len(conditions) == 1
    return {key: conditions[0][key] for key in ("type", "status", "reason")}


def test_latency_to_sites_is_the_sites_row_and_the_hubs_view() -> None:
    assert latency_to_sites("delft", readings([20.0])) == {
        "frankfurt": 31.0, "ghent": 12.3, "hub": 20.0,
    }  # fmt: skip


def test_a_healthy_link_gives_a_low_risk_latencies_and_degraded_false() -> None:
    fragment = signals_status(member(), readings([20.0, 21.0, 19.5] * 40), NOW, CONFIG)
    assert set(fragment) == {"conditions", "risk", "latencyToSites"}
    assert degraded(fragment) == {"type": "Degraded", "status": "False", "reason": LINK_HEALTHY}
    assert fragment["latencyToSites"] == {"frankfurt": 31.0, "ghent": 12.3, "hub": 20.0}
    risk = fragment["risk"]
    assert isinstance(risk, dict) and risk["score"] < 0.1
    for signal in ("rttInflation", "packetLoss", "rttTrend", "heartbeatMissRatio"):
        assert signal in risk["signals"]


def test_the_degraded_reasons() -> None:
    rising = [20.0] * 200 + [20.0 + 5 * i if i % 4 else None for i in range(40)]
    assert degraded(signals_status(member(), readings(rising), NOW, CONFIG))["reason"] == (
        LINK_DEGRADING
    )
    cut = [20.0] * 200 + [None] * 3
    found = degraded(signals_status(member(), readings(cut), NOW, CONFIG))
    assert found == {"type": "Degraded", "status": "True", "reason": PROBES_UNANSWERED}
    lossy = degraded(signals_status(member(), readings([20.0] * 200, loss=0.25), NOW, CONFIG))
    assert lossy == {"type": "Degraded", "status": "True", "reason": PACKET_LOSS}
    none = LinkReadings(at_s=T0, rtt_ms={("delft", "ghent"): 12.0})
    assert degraded(signals_status(member(), none, NOW, CONFIG))["reason"] == NO_PROBES


def peers_see(cut: list[float | None], **views: list[bool]) -> LinkReadings:
    """The hub's probes `cut`, and each named site's last probes of delft, one a second up to
    the hub's last (True: answered)."""
    hub = readings(cut)
    return LinkReadings(
        at_s=hub.at_s, samples=hub.samples, rtt_ms=hub.rtt_ms, loss=hub.loss,
        peer_answers={
            (source, "delft"): tuple(
                (hub.at_s - len(answers) + 1 + i, answered) for i, answered in enumerate(answers)
            )
            for source, answers in views.items()
        },
    )  # fmt: skip


def test_the_other_sites_tell_a_site_out_from_the_hubs_path_to_it() -> None:
    cut = [20.0] * 200 + [None] * 3

    def reason(found: LinkReadings) -> str:
        fragment = signals_status(member(), found, NOW, CONFIG)
        return degraded(fragment)["reason"]

    assert reason(peers_see(cut, ghent=[True, False, False, False])) == SITE_UNREACHABLE
    # One site still reaches it: the hub's path fails, not the site.
    assert reason(peers_see(cut, ghent=[False] * 4, frankfurt=[True] * 4)) == (UNREACHABLE_FROM_HUB)
    # Too few misses yet to say, a site of its own (delft -> delft) or the hub's own pair in
    # the peers' answers say nothing; neither does a peer whose probes are stale.
    assert reason(peers_see(cut, ghent=[True, False])) == PROBES_UNANSWERED
    assert reason(peers_see(cut, delft=[False] * 4, hub=[False] * 4)) == PROBES_UNANSWERED
    stale = peers_see(cut, ghent=[False] * 4)
    stale = LinkReadings(at_s=stale.at_s + CONFIG.stale_s + 1, samples=stale.samples,
                         peer_answers=stale.peer_answers)  # fmt: skip
    assert reason(stale) == NO_PROBES  # the hub's probes are stale too
    # A healthy site is healthy whatever a peer says.
    healthy = peers_see([20.0] * 200, ghent=[False] * 4)
    assert reason(healthy) == LINK_HEALTHY
    message = next(
        c for c in signals_status(member(), peers_see(cut, ghent=[False] * 3), NOW, CONFIG)[
            "conditions"] if c["type"] == "Degraded"
    )["message"]  # fmt: skip
    assert "nor were those from ghent" in message


def test_a_peer_with_stale_probes_says_nothing() -> None:
    hub = readings([20.0] * 50)
    old = {("ghent", "delft"): ((hub.at_s - 60 + i, False) for i in range(4))}
    found = LinkReadings(at_s=hub.at_s, peer_answers={k: tuple(v) for k, v in old.items()})
    assert peer_view("delft", found, CONFIG).cut_off == ()
    assert peer_view("delft", found, CONFIG).reaching == ()


def test_unavailable_signals_keep_the_last_risk_and_latency() -> None:
    before = signals_status(member(), readings([20.0] * 100), NOW, CONFIG)
    later = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    after = signals_status(member(before), None, later, CONFIG, "Prometheus at http://p:9090: "
                           "connection failed")  # fmt: skip
    assert degraded(after) == {"type": "Degraded", "status": "Unknown",
                               "reason": SIGNALS_UNAVAILABLE}  # fmt: skip
    assert after["risk"] == before["risk"]
    assert after["latencyToSites"] == before["latencyToSites"]
    conditions = after["conditions"]
    assert isinstance(conditions, list) and "connection failed" in conditions[0]["message"]
    assert conditions[0]["lastTransitionTime"] == "2026-01-01T00:05:00Z"


def test_a_site_with_no_latency_measured_sends_no_empty_map() -> None:
    """Server-side apply turns a map emptied of a manager's entries into null, which the CRD
    refuses: the whole status write failed while a site was down."""
    before = signals_status(member(), readings([20.0] * 100), NOW, CONFIG)
    down = LinkReadings(at_s=T0, samples={("hub", "delft"): (ProbeSample(T0 - 1.0, None),)})
    after = signals_status(member(before), down, NOW, CONFIG)
    assert "latencyToSites" not in after
    assert after["risk"].get("signals") != {}  # nor an empty map of signals
    assert worth_writing(before, after, CONFIG)


def test_the_transition_time_moves_only_when_the_status_does() -> None:
    first = signals_status(member(), readings([20.0] * 100), NOW, CONFIG)
    later = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    again = signals_status(member(first), readings([20.5] * 100), later, CONFIG)
    assert again["conditions"] == first["conditions"]


def test_only_a_significant_change_is_worth_writing() -> None:
    base = signals_status(member(), readings([20.0] * 100), NOW, CONFIG)
    assert worth_writing(None, base, CONFIG)
    assert not worth_writing(base, base, CONFIG)
    nudged = {**base, "latencyToSites": {"frankfurt": 31.5, "ghent": 12.3, "hub": 20.0}}
    assert not worth_writing(base, nudged, CONFIG)
    moved = {**base, "latencyToSites": {"frankfurt": 36.0, "ghent": 12.3, "hub": 20.0}}
    assert worth_writing(base, moved, CONFIG)
    fewer = {**base, "latencyToSites": {"ghent": 12.3, "hub": 20.0}}
    assert worth_writing(base, fewer, CONFIG)
    risk = base["risk"]
    assert isinstance(risk, dict)
    assert not worth_writing(base, {**base, "risk": {**risk, "score": risk["score"] + 0.02}},
                             CONFIG)  # fmt: skip
    assert worth_writing(base, {**base, "risk": {**risk, "score": risk["score"] + 0.2}}, CONFIG)
    unavailable = signals_status(member(base), None, NOW, CONFIG)
    assert worth_writing(base, unavailable, CONFIG)
