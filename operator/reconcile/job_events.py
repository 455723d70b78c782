"""Which Events a change of an MLJob's status deserves. Pure.

An Event goes out when one of the job's conditions that people act on changes, not on every
cycle: Warning when it is refused, unschedulable or its Placement refused, Normal once it is
placed; Warning when shards become unavailable, Normal when they are back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class JobEvent:
    type: str  # Normal or Warning
    reason: str
    message: str


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    conditions = status.get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind), {})


def status_events(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[JobEvent]:
    """The Events for a job whose status goes from `before` to `after` (status dicts)."""
    events: list[JobEvent] = []
    for kind in ("Admitted", "Scheduled"):
        old, new = _condition(before, kind), _condition(after, kind)
        if not new or (old.get("status"), old.get("message")) == (new["status"], new["message"]):
            continue
        if new["status"] == "True":
            if kind == "Scheduled":
                events.append(JobEvent("Normal", "Placed", new["message"]))
        elif new["reason"] != "Suspended":
            events.append(JobEvent("Warning", new["reason"], new["message"]))
    old, new = _condition(before, "ShardsUnavailable"), _condition(after, "ShardsUnavailable")
    if new.get("status") == "True" and (old.get("status"), old.get("reason")) != (
        "True",
        new["reason"],
    ):
        events.append(JobEvent("Warning", "ShardsUnavailable", new["message"]))
    elif new.get("status") == "False" and old.get("status") == "True":
        events.append(JobEvent("Normal", "ShardsAvailable", new["message"]))
    return events
