"""An MLJob's Reconciling and Stalled conditions, by the kstatus conventions that Flux and Argo
CD read (sigs.k8s.io/cli-utils/pkg/kstatus): Stalled True when the job cannot get anywhere
without a change by someone (refused at admission, or failed), Reconciling True while it is on
its way (pending a place, placed and starting, recovering), both False once it runs, has
finished or is suspended. With `status.observedGeneration` and `Ready`, a GitOps tool tells
a job in progress from one that is healthy or broken with no code of its own. Pure; on the
status as it is written (a dict), so that every writer of it keeps them right.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

RECONCILING, STALLED = "Reconciling", "Stalled"
# Phases the job rests in: nothing more happens unless something changes.
SETTLED = {"Running": "ShardsRunning", "Succeeded": "Succeeded", "Suspended": "Suspended"}
IN_PROGRESS = {
    "Pending": "WaitingForPlacement",
    "Admitted": "WaitingForPlacement",
    "Placed": "ShardsStarting",
    "Recovering": "ShardsRecovering",
}


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


def _progress(status: Mapping[str, Any]) -> tuple[bool, bool, str, str]:
    """(reconciling, stalled, reason, message)."""
    admitted = _condition(status, "Admitted")
    if admitted is not None and admitted.get("status") == "False":
        reason = str(admitted.get("reason") or "NotAdmitted")
        return False, True, reason, str(admitted.get("message") or "")
    phase = str(status.get("phase") or "Pending")
    if phase == "Failed":
        ready = _condition(status, "Ready") or {}
        return False, True, "JobFailed", str(ready.get("message") or "a shard failed")
    if phase in SETTLED:
        return False, False, SETTLED[phase], f"the job is {phase}"
    scheduled = _condition(status, "Scheduled") or {}
    ready = _condition(status, "Ready") or {}
    message = scheduled.get("message") if phase in ("Pending", "Admitted") else ready.get("message")
    return True, False, IN_PROGRESS.get(phase, "InProgress"), str(message or f"the job is {phase}")


def _upsert(
    conditions: list[dict[str, Any]], kind: str, value: bool, reason: str, message: str,
    generation: int | None, now: datetime,
) -> list[dict[str, Any]]:  # fmt: skip
    wanted = "True" if value else "False"
    previous = next((c for c in conditions if c.get("type") == kind), None)
    kept = previous is not None and previous.get("status") == wanted
    since = previous.get("lastTransitionTime") if previous is not None and kept else None
    condition = {
        "type": kind,
        "status": wanted,
        "reason": reason,
        "message": message[:1024],
        "lastTransitionTime": since or now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return [c for c in conditions if c.get("type") != kind] + [condition]


def with_progress(
    status: Mapping[str, Any], generation: int | None, now: datetime
) -> dict[str, Any]:
    """`status` with its Reconciling and Stalled conditions set from its phase and conditions.
    An empty status (a job not looked at yet) stays empty."""
    if not status:
        return dict(status)
    reconciling, stalled, reason, message = _progress(status)
    conditions = list(status.get("conditions") or [])
    conditions = _upsert(conditions, RECONCILING, reconciling,
                         reason if reconciling else "Settled" if not stalled else "Stalled",
                         message if reconciling else "", generation, now)  # fmt: skip
    conditions = _upsert(conditions, STALLED, stalled, reason if stalled else "NotStalled",
                         message if stalled else "", generation, now)  # fmt: skip
    return {**status, "conditions": conditions}
