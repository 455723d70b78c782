"""Risk rising on most members at once is held below the alert: the hub's own network."""

from __future__ import annotations

from typing import Any

import pytest

from continuum.operator.recovery.fleet import FleetRise, damped, fleet_wide_rise

pytestmark = pytest.mark.unit
CAP = 0.5


def fragment(score: float | None, degraded: bool = True) -> dict[str, Any]:
    condition = {"type": "Degraded", "status": "True" if degraded else "False",
                 "reason": "LinkDegrading", "message": "RTT 6x its baseline"}  # fmt: skip
    found: dict[str, Any] = {"conditions": [condition], "latencyToSites": {"hub": 80.0}}
    if score is not None:
        found["risk"] = {"score": score, "signals": {"rttInflation": 1.0}}
    return found


def test_most_members_rising_together_is_a_fleet_wide_rise() -> None:
    fragments = {"a": fragment(0.9), "b": fragment(0.8), "c": fragment(0.7), "d": fragment(0.1)}
    assert fleet_wide_rise(fragments, CAP, 0.55, 3) == FleetRise(3, 4)


@pytest.mark.parametrize(
    "scores",
    [
        (0.9, 0.9, 0.1, 0.1),  # two sites failing together: half, and fewer than three
        (0.9, 0.9, 0.9, 0.1, 0.1, 0.1),  # three of six: below the share
        (0.9, 0.9),  # every member, but fewer than three
        (0.5, 0.5, 0.5, 0.5),  # at the cap is not above it
    ],
)
def test_a_few_sites_failing_keep_their_risk(scores: tuple[float, ...]) -> None:
    fragments = {f"m{i}": fragment(score) for i, score in enumerate(scores)}
    assert fleet_wide_rise(fragments, CAP, 0.55, 3) is None


def test_members_without_a_risk_do_not_count() -> None:
    fragments = {"a": fragment(0.9), "b": fragment(0.9), "c": fragment(0.9), "d": fragment(None)}
    assert fleet_wide_rise(fragments, CAP, 0.55, 3) == FleetRise(3, 3)


def test_a_damped_fragment_holds_the_risk_at_the_cap_and_says_why() -> None:
    out = damped(fragment(0.9), CAP, FleetRise(3, 4))
    assert out["risk"]["score"] == CAP
    assert out["risk"]["signals"] == {"rttInflation": 1.0, "fleetWideRise": 0.75}
    message = out["conditions"][0]["message"]
    assert message.startswith("RTT 6x its baseline; 3 of 4 members' links degrade at once")
    assert out["latencyToSites"] == {"hub": 80.0}
    low = damped(fragment(0.2, degraded=False), CAP, FleetRise(3, 4))
    assert low["risk"]["score"] == 0.2
    assert low["conditions"][0]["message"] == "RTT 6x its baseline"
