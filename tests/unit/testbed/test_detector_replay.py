"""The noisy fault-script generator and the offline replay of scripts through the operator's
risk code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e2e import detector_replay, fault_gen, fault_script

pytestmark = pytest.mark.unit

SITES = list(fault_gen.DEFAULT_SITES)


def rows_of(kind: str, seed: int) -> list[fault_script.Row]:
    return fault_script.parse(fault_gen.script(kind, seed, SITES), SITES)


@pytest.mark.parametrize("kind", fault_gen.KINDS)
def test_every_kind_generates_a_valid_noisy_script(kind: str) -> None:
    for seed in range(3):
        rows = rows_of(kind, seed)
        assert 150 <= rows[-1].at_s <= 240
        # at most one row a site-second, apart from a restore and the row that reshapes
        per_second: dict[tuple[float, str], int] = {}
        for row in rows:
            per_second[row.at_s, row.site] = per_second.get((row.at_s, row.site), 0) + 1
        assert max(per_second.values()) <= 2
        assert {row.site for row in rows} == set(SITES)
        assert max(row.rtt_ms for row in rows) < 1500
    assert fault_gen.script(kind, 5, SITES) == fault_gen.script(kind, 5, SITES)
    assert fault_gen.script(kind, 5, SITES) != fault_gen.script(kind, 6, SITES)


def failures_of(kind: str, seed: int) -> list[detector_replay.Failure]:
    rows = rows_of(kind, seed)
    end = rows[-1].at_s + 30
    return [
        failure
        for site in SITES
        for failure in detector_replay.failures([r for r in rows if r.site == site], end, 30.0)
    ]


def test_the_episodes_fail_as_their_kind_says() -> None:
    for seed in range(5):
        assert [(f.site, f.kind) for f in failures_of("slow-degradation-failure", seed)] == [
            ("delft", "down")
        ]
        assert [f.kind for f in failures_of("partition", seed)] == ["partition"]
        assert sorted(f.site for f in failures_of("two-sites-fail", seed)) == ["delft", "eindhoven"]
        assert failures_of("degradation-recovers", seed) == []


def parse(text: str) -> list[fault_script.Row]:
    return fault_script.parse("at_s,site,rtt_ms,jitter_ms,loss_pct,state\n" + text, SITES)


def test_a_long_partition_is_a_failure_and_a_short_one_a_blip() -> None:
    rows = parse("0,delft,20,2,0,up\n10,delft,,,,partition\n20,delft,,,,restore\n"
                 "60,delft,,,,partition\n100,delft,,,,restore\n")  # fmt: skip
    found = detector_replay.failures(rows, 130.0, 30.0)
    assert [(f.at_s, f.end_s, f.kind) for f in found] == [(60.0, 100.0, "partition")]
    episodes = detector_replay.episodes(rows, 130.0)
    assert [(e.start_s, e.blip) for e in episodes] == [(10.0, True), (60.0, True)]


def ramp_then_down() -> str:
    lines = ["0,delft,20,4,0.5,up"]
    for step in range(30):
        at = 100 + 2 * step
        lines.append(f"{at},delft,{20 + 15 * step},{4 + step},{step},up")
    lines.append("160,delft,,,,down")
    return "\n".join(lines) + "\n"


def test_a_failure_after_a_clear_warning_is_foreseen() -> None:
    result = detector_replay.replay(
        "ramp", "script", parse(ramp_then_down()), detector_replay.ReplayOptions()
    )
    (failure,) = result.failures
    assert failure["at_s"] == 160.0
    assert failure["lead_s"] is not None and failure["lead_s"] >= 10
    assert result.false_alerts == 0


def test_a_blip_and_spikes_are_no_alert() -> None:
    text = (
        "0,delft,30,6,0.5,up\n50,delft,400,6,0.5,up\n52,delft,30,6,0.5,up\n"
        "90,delft,,,,partition\n115,delft,,,,restore\n115,delft,30,6,0.5,up\n"
        "150,delft,30,6,60,up\n156,delft,30,6,0.5,up\n"
        "180,delft,42,6,0.5,up\n195,delft,30,6,0.5,up\n220,delft,30,6,0.5,up\n"
    )
    result = detector_replay.replay("blip", "script", parse(text), detector_replay.ReplayOptions())
    assert result.failures == []
    assert result.false_alerts == 0
    # the blip, the loss burst; the spike is too short, the RTT up by 40% too small
    assert result.recovering_episodes == 2
    # ... and the replay sees the rise, below the alert: a replay that never read the probes
    # would pass the rest
    (site,) = result.sites
    assert 0.0 < site.peak_score <= 0.5


def test_the_cli_writes_json(tmp_path: Path) -> None:
    script = tmp_path / "ramp.csv"
    script.write_text("at_s,site,rtt_ms,jitter_ms,loss_pct,state\n" + ramp_then_down())
    out = tmp_path / "out.json"
    assert detector_replay.main([str(script), "--json", str(out), "--quiet"]) == 0
    written = json.loads(out.read_text())
    assert written["summary"]["script"]["failures"] == 1
    assert written["summary"]["script"]["foreseen_by"]["5s"] == 1.0
    assert written["scripts"][0]["sites"][0]["site"] == "delft"
