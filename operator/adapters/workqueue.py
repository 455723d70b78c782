"""A keyed work queue, as client-go's: many events for one key make one pass, one key is never
worked on by two threads at once, and a key that fails is retried later with backoff.

The placement controller's passes go through it: a Placement written, its job changed, and a
member's RayJob moving to Running all ask for the same key, and the pass reads the current state
of everything, so asking twice costs no more than asking once.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

LOG = logging.getLogger(__name__)
K = TypeVar("K", bound=Hashable)
RETRY_INITIAL_S = 0.2
RETRY_MAX_S = 30.0


class RetryLater(Exception):  # noqa: N818 - it is an outcome, not an error
    """Raised by a handler whose pass met a conflict: try again after `delay_s`."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(f"retry after {delay_s} s")
        self.delay_s = delay_s


class WorkQueue(Generic[K]):
    def __init__(
        self,
        name: str,
        handler: Callable[[K], None],
        workers: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self._handler, self._workers, self._clock = name, handler, workers, clock
        self._ready: dict[K, None] = {}  # insertion-ordered set
        self._active: set[K] = set()
        self._again: set[K] = set()  # asked for while being worked on
        self._delayed: list[tuple[float, int, K]] = []
        self._sequence = itertools.count()
        self._failures: dict[K, int] = {}
        self._condition = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []

    def add(self, key: K) -> None:
        with self._condition:
            if key in self._active:
                self._again.add(key)
            elif key not in self._ready:
                self._ready[key] = None
                self._condition.notify()

    def add_after(self, key: K, delay_s: float) -> None:
        with self._condition:
            heapq.heappush(self._delayed, (self._clock() + delay_s, next(self._sequence), key))
            self._condition.notify()

    def __len__(self) -> int:
        with self._condition:
            return len(self._ready) + len(self._active) + len(self._delayed)

    def start(self) -> WorkQueue[K]:
        for index in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"{self.name}-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _next(self) -> K | None:
        """The next key to work on, or None when stopping; waits for one otherwise."""
        with self._condition:
            while not self._stopping:
                now = self._clock()
                while self._delayed and self._delayed[0][0] <= now:
                    _, _, key = heapq.heappop(self._delayed)
                    if key in self._active:
                        self._again.add(key)
                    else:
                        self._ready[key] = None
                for key in self._ready:
                    del self._ready[key]
                    self._active.add(key)
                    return key
                wait_s = self._delayed[0][0] - now if self._delayed else None
                self._condition.wait(wait_s)
            return None

    def _work(self) -> None:
        while (key := self._next()) is not None:
            retry_s: float | None = None
            try:
                self._handler(key)
            except RetryLater as later:
                retry_s = later.delay_s
            except Exception:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                retry_s = min(RETRY_INITIAL_S * 2 ** (failures - 1), RETRY_MAX_S)
                LOG.exception("%s: pass for %s failed; retrying in %.1f s", self.name, key, retry_s)
            else:
                self._failures.pop(key, None)
            with self._condition:
                self._active.discard(key)
                if key in self._again:
                    self._again.discard(key)
                    self._ready[key] = None
                    self._condition.notify()
            if retry_s is not None:
                self.add_after(key, retry_s)
