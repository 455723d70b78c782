"""Writing an MLJob's status, and the Events its change deserves (reconcile.job_events)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from continuum.operator.adapters.store import EventSink, ObjectStore
from continuum.operator.api import MLJob
from continuum.operator.reconcile.job_events import status_events
from continuum.operator.reconcile.progress import with_progress


def write_status(
    store: ObjectStore,
    raw: dict[str, Any],
    status: dict[str, Any],
    events: EventSink | None,
    now: datetime | None = None,
) -> bool:
    """False when the job changed since `raw` was read, and the status was not written. The
    kstatus conditions (Reconciling, Stalled) are set here, whoever wrote the rest."""
    generation = (raw.get("metadata") or {}).get("generation")
    status = with_progress(status, generation, now or datetime.now(UTC))
    if (raw.get("status") or {}) == status:
        return True  # an empty status is as good as none: a new job's first pass writes nothing
    if not store.replace_status(MLJob, {**raw, "status": status}):
        return False
    announce(events, raw, status)  # once: a write that lost a race is made again
    return True


def announce(events: EventSink | None, raw: dict[str, Any], status: dict[str, Any]) -> None:
    if events is None:
        return
    for event in status_events(raw.get("status") or {}, status):
        events.record_event(raw, event.type, event.reason, event.message)
