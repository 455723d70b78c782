"""A rise in risk on most members at once is the hub's own network, not as many failing sites.
Pure.

The risk of each member comes from the hub's probes of its site. When the hub's uplink
degrades, every one of those links degrades together, and every member's risk rises: taken
one by one, each would move its shards, and a hub-side blip would move the fleet. The
eviction policy (`reconcile/eviction.py`) holds reactive evictions in that case; this holds
the proactive moves by the same measure: when at least `share` of the members, and at least
`min_members` of them, have a risk above the alert cap at once, every member's published risk
is capped below it, with the signal `fleetWideRise` (the share rising) saying why. Sites that
fail together are still a few of the fleet (two of four edge sites, say) and keep their risk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FleetRise:
    rising: int
    total: int

    @property
    def share(self) -> float:
        return self.rising / self.total if self.total else 0.0


def _score(fragment: Mapping[str, Any]) -> float | None:
    score = (fragment.get("risk") or {}).get("score")
    return float(score) if isinstance(score, int | float) else None


def fleet_wide_rise(
    fragments: Mapping[str, Mapping[str, Any]], cap: float, share: float, min_members: int
) -> FleetRise | None:
    """Whether the risks in `fragments` (member -> its signals status fragment) rise together:
    at least `share` of the members with a risk, and `min_members`, above `cap`."""
    scores = [score for score in map(_score, fragments.values()) if score is not None]
    rising = sum(1 for score in scores if score > cap)
    if rising >= min_members and rising >= share * len(scores):
        return FleetRise(rising, len(scores))
    return None


def damped(fragment: Mapping[str, Any], cap: float, rise: FleetRise) -> dict[str, Any]:
    """The fragment with its risk capped at `cap` and the reason among its signals; the
    Degraded condition says the same in its message."""
    result = dict(fragment)
    risk = fragment.get("risk")
    if risk:
        signals = {**(risk.get("signals") or {}), "fleetWideRise": round(rise.share, 3)}
        result["risk"] = {**risk, "score": min(risk["score"], cap), "signals": signals}
    note = (
        f"; {rise.rising} of {rise.total} members' links degrade at once, more likely the "
        "hub's own network: their risk is held at most "
        f"{cap:g}, so no shard moves for it"
    )
    result["conditions"] = [
        {**condition, "message": (condition.get("message") or "") + note}
        if condition.get("type") == "Degraded" and condition.get("status") == "True"
        else condition
        for condition in fragment.get("conditions") or []
    ]
    return result
