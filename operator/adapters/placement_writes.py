"""The scheduling cycle's Placement writes, sent while the next cycle runs.

A cycle that waited for its Placements to be written spent most of its time waiting in a
burst (0.1-0.9 s for 10-20 creates on a busy hub), and every job applied meanwhile waited for
the next cycle. Now a cycle hands its decisions over and goes on. Until a decision is written,
`pending` shows it to the next cycle as if it were, so that the job is not decided again and
the capacity it takes is not counted as free. A write that loses a race (409) is dropped and
the scheduler woken: its next cycle decides again from what the hub holds.

Per job, only the newest decision is written; writes of different jobs go out concurrently.
Nothing here outlives the process: after a restart, the first cycle decides the same again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from continuum.operator.adapters.hub_mirror import HubMirror
from continuum.operator.api import MLJob, Placement, PlacementSpec
from continuum.operator.reconcile.placement import placement_manifest
from continuum.operator.workqueue import WorkQueue

Key = tuple[str, str]


@dataclass(frozen=True)
class _Decision:
    job: MLJob
    spec: PlacementSpec
    # The Placement as it will be once written, for the cycles that run before it is.
    provisional: Placement


class PlacementWrites:
    def __init__(self, mirror: HubMirror, on_lost: Callable[[], None], writers: int) -> None:
        self._mirror, self._on_lost = mirror, on_lost
        self._pending: dict[Key, _Decision] = {}
        self._lock = threading.Lock()
        self._queue: WorkQueue[Key] = WorkQueue("placement-writes", self._write, writers)

    def start(self) -> PlacementWrites:
        self._queue.start()
        return self

    def stop(self) -> None:
        self._queue.stop()

    def submit(self, job: MLJob, spec: PlacementSpec, stored: Placement | None) -> None:
        """Writes the job's Placement soon; `stored` is the one the cycle saw, if any."""
        key = (job.metadata.namespace or "", job.metadata.name or "")
        if stored is not None and stored.spec.job_ref.uid in (None, job.metadata.uid):
            provisional = stored.model_copy(update={"spec": spec})
        else:
            provisional = Placement.model_validate(placement_manifest(job, spec))
        with self._lock:
            self._pending[key] = _Decision(job, spec, provisional)
        self._queue.add(key)

    def pending(self) -> dict[Key, Placement]:
        """The decisions not written yet, by job key, as the Placements they will be."""
        with self._lock:
            return {key: decision.provisional for key, decision in self._pending.items()}

    def is_pending(self, key: Key) -> bool:
        with self._lock:
            return key in self._pending

    def _write(self, key: Key) -> None:
        with self._lock:
            decision = self._pending.get(key)
        if decision is None:
            return
        found = self._mirror.model(Placement, key)
        existing = found[0] if found is not None else None
        assert existing is None or isinstance(existing, Placement)
        try:
            written = self._mirror.write_placement(decision.job, decision.spec, existing)
        except Exception:
            # Refused or unreachable: the decision is not kept pending for ever, and the next
            # cycle decides again (the queue logs the error and backs off).
            self._settle(key, decision)
            self._on_lost()
            raise
        self._settle(key, decision)
        if not written:
            self._on_lost()

    def _settle(self, key: Key, decision: _Decision) -> None:
        with self._lock:
            if self._pending.get(key) is decision:  # else a newer decision waits its turn
                del self._pending[key]
