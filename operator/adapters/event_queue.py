"""Events written one at a time, behind the writes that place and deploy jobs.

An Event is for people (`kubectl describe`, `kubectl events`); nothing in the operator reads
one back. Written inline, each new job's "Placed" Event would take a status worker for one
more request, in the same seconds as the burst's Placements and on an API server already
saturated. So Events queue, and one sender writes them in order: at most one Event request is
in flight. As client-go's event broadcaster does, a full queue drops what comes next (counted in
`continuum_events_dropped_total`) rather than hold up a reconcile. On stop, what is queued is
sent for a moment longer and the rest is lost: Events are best effort in Kubernetes too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from continuum.operator.adapters import metrics

LOG = logging.getLogger(__name__)
# A burst of a few hundred applies fits; a hub that takes no Events for minutes does not fill
# the operator's memory.
CAPACITY = 2000
FLUSH_ON_STOP_S = 2.0

Send = Callable[[Mapping[str, Any], str, str, str], None]


class EventQueue:
    """An EventSink whose `record_event` returns at once; `send` writes one Event."""

    def __init__(self, send: Send, capacity: int = CAPACITY) -> None:
        self._send, self._capacity = send, capacity
        self._queue: deque[tuple[Mapping[str, Any], str, str, str]] = deque()
        self._condition = threading.Condition()
        self._stopping = False
        self._idle = True
        self._thread: threading.Thread | None = None

    def record_event(
        self, involved: Mapping[str, Any], event_type: str, reason: str, message: str
    ) -> None:
        with self._condition:
            if len(self._queue) >= self._capacity:
                metrics.EVENTS_DROPPED.inc()
                LOG.warning("the Event queue is full; dropping %s on %s", reason,
                            involved.get("metadata", {}).get("name"))  # fmt: skip
                return
            self._queue.append((involved, event_type, reason, message))
            self._condition.notify_all()

    def start(self) -> EventQueue:
        self._thread = threading.Thread(target=self._run, name="event-sender", daemon=True)
        self._thread.start()
        return self

    def stop(self, flush_s: float = FLUSH_ON_STOP_S) -> None:
        """Sends what is queued for up to `flush_s`, then stops."""
        self.wait_sent(flush_s)
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join(flush_s)

    def wait_sent(self, timeout_s: float) -> bool:
        """True once every Event recorded so far has been sent (or failed to be)."""
        deadline = time.monotonic() + timeout_s
        with self._condition:
            while self._queue or not self._idle:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(remaining)
            return True

    def _run(self) -> None:
        while True:
            with self._condition:
                self._idle = True
                self._condition.notify_all()
                while not self._queue and not self._stopping:
                    self._condition.wait()
                if self._stopping:
                    return
                event = self._queue.popleft()
                self._idle = False
            try:
                self._send(*event)
            except Exception:
                # `Hub.record_event` logs the API's refusals; this is anything else.
                LOG.exception("could not send the Event %s", event[2])
