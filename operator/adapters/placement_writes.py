"""The scheduling cycle's Placement writes, sent while the next cycle runs.

A cycle that waited for its Placements to be written would spend most of its time waiting in
a burst (0.1-0.9 s for 10-20 creates on a busy hub), and every job applied meanwhile would
wait for the next cycle. So a cycle hands its decisions over and goes on. Until a decision is
written, `pending` shows it to the next cycle as if it were, so that the job is not decided
again and the capacity it takes is not counted as free. A write that loses a race (409) is
dropped and the scheduler woken: its next cycle decides again from what the hub holds.

A write the hub refuses for good (400, 403, 422: an admission policy, a name it will not take)
is not a race to retry at once: the job's next tries wait 1, 2, 4 ... up to 300 s, each logged
once, and until one is accepted `refusal` gives the hub's reason for the job's status.

Per job, only the newest decision is written; writes of different jobs go out concurrently.
Nothing here outlives the process: after a restart, the first cycle decides the same again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from kubernetes.client.exceptions import ApiException

from continuum.operator.adapters import metrics
from continuum.operator.adapters.hub_mirror import HubMirror
from continuum.operator.adapters.kube import api_status_message
from continuum.operator.adapters.workqueue import WorkQueue
from continuum.operator.api import MLJob, Placement, PlacementSpec
from continuum.operator.api.keys import JobKey
from continuum.operator.api.manifests import placement_manifest

LOG = logging.getLogger(__name__)
REFUSED_FOR_GOOD = (400, 403, 422)
REFUSAL_BACKOFF_INITIAL_S = 1.0
REFUSAL_BACKOFF_MAX_S = 300.0
# Refusals of jobs long gone are dropped, oldest first, beyond this many.
MAX_REFUSALS = 10_000


@dataclass(frozen=True)
class WriteRefusal:
    """The hub refused a write of the job's Placement for good (not a conflict): why, in the
    words of the job's Scheduled condition, and whether the writer's backoff allows one more
    try now."""

    reason: str
    message: str
    may_retry: bool


@dataclass(frozen=True)
class _Decision:
    job: MLJob
    spec: PlacementSpec
    # The Placement as it will be once written, for the cycles that run before it is.
    provisional: Placement


@dataclass(frozen=True)
class _Refusal:
    job_uid: str | None
    message: str
    attempts: int
    retry_at: float


class PlacementWrites:
    def __init__(
        self,
        mirror: HubMirror,
        on_lost: Callable[[], None],
        writers: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._mirror, self._on_lost, self._clock = mirror, on_lost, clock
        self._pending: dict[JobKey, _Decision] = {}
        self._refusals: dict[JobKey, _Refusal] = {}
        self._lock = threading.Lock()
        self._queue: WorkQueue[JobKey] = WorkQueue("placement-writes", self._write, writers)

    def start(self) -> PlacementWrites:
        self._queue.start()
        return self

    def stop(self) -> None:
        self._queue.stop()

    def submit(self, job: MLJob, spec: PlacementSpec, stored: Placement | None) -> None:
        """Writes the job's Placement soon; `stored` is the one the cycle saw, if any."""
        key = JobKey.of(job)
        if stored is not None and stored.spec.job_ref.uid in (None, job.metadata.uid):
            provisional = stored.model_copy(update={"spec": spec})
        else:
            provisional = Placement.model_validate(placement_manifest(job, spec))
        with self._lock:
            self._pending[key] = _Decision(job, spec, provisional)
        self._queue.add(key)

    def pending(self) -> dict[JobKey, Placement]:
        """The decisions not written yet, by job key, as the Placements they will be."""
        with self._lock:
            return {key: decision.provisional for key, decision in self._pending.items()}

    def is_pending(self, key: JobKey) -> bool:
        with self._lock:
            return key in self._pending

    def refusal(self, job: MLJob) -> WriteRefusal | None:
        """Why the hub refused this job's last Placement write, until a write is accepted."""
        key = JobKey.of(job)
        with self._lock:
            refused = self._refusals.get(key)
            if refused is not None and refused.job_uid != job.metadata.uid:
                del self._refusals[key]  # an earlier job of this name
                refused = None
        if refused is None:
            return None
        message = f"the hub refused the Placement: {refused.message}"
        return WriteRefusal("PlacementRefused", message, self._clock() >= refused.retry_at)

    def _write(self, key: JobKey) -> None:
        with self._lock:
            decision = self._pending.get(key)
        if decision is None:
            return
        found = self._mirror.model(Placement, key)
        existing = found[0] if found is not None else None
        assert existing is None or isinstance(existing, Placement)
        try:
            written = self._mirror.write_placement(decision.job, decision.spec, existing)
        except ApiException as error:
            if error.status not in REFUSED_FOR_GOOD:
                self._settle(key, decision)
                self._on_lost()
                raise
            self._refused(key, decision, error)
            self._settle(key, decision)
            self._on_lost()
            return
        except Exception:
            # Refused or unreachable: the decision is not kept pending for ever, and the next
            # cycle decides again (the queue logs the error and backs off).
            self._settle(key, decision)
            self._on_lost()
            raise
        self._settle(key, decision)
        if written:
            with self._lock:
                self._refusals.pop(key, None)
        else:
            self._on_lost()

    def _refused(self, key: JobKey, decision: _Decision, error: ApiException) -> None:
        metrics.WRITES_REFUSED.labels("Placement").inc()
        message = f"HTTP {error.status}: {api_status_message(error)}"
        with self._lock:
            earlier = self._refusals.pop(key, None)
            attempts = earlier.attempts + 1 if earlier is not None else 1
            delay_s = min(REFUSAL_BACKOFF_INITIAL_S * 2 ** (attempts - 1), REFUSAL_BACKOFF_MAX_S)
            self._refusals[key] = _Refusal(
                decision.job.metadata.uid, message, attempts, self._clock() + delay_s
            )
            while len(self._refusals) > MAX_REFUSALS:
                del self._refusals[next(iter(self._refusals))]
        LOG.warning("the hub refused the Placement of %s/%s (%s); trying again in %.0f s",
                    key[0], key[1], message, delay_s)  # fmt: skip

    def _settle(self, key: JobKey, decision: _Decision) -> None:
        with self._lock:
            if self._pending.get(key) is decision:  # else a newer decision waits its turn
                del self._pending[key]
