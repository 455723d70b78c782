"""Python's cyclic garbage collector, set for a long-lived process with a large heap of
mirrored objects, and its pauses measured.

With the default thresholds (700, 10, 10) a fleet's scheduling cycles trigger a full
collection every few seconds: a cycle over thousands of jobs holds hundreds of thousands of
objects for its length, they outlive the young generations, and every object promoted counts
towards the next full collection even once reference counting has freed it. Each full
collection walks the whole heap (the mirrors' objects and their validated models) and stops
every thread: measured at 1,000 members and 2,500-5,000 jobs, 0.8-1.4 s every 5 s, finding
nothing to free. The operator's objects are acyclic dicts and models that reference counting
frees, so full collections are made rare, and young ones cheaper per object allocated.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import Histogram

# A young collection after this many more tracked objects allocated than freed (default 700):
# each walks at most this many.
YOUNG_THRESHOLD = 50_000
# The middle generation after this many young collections (default 10). It walks every object
# made since the last one that is still alive (a burst's new jobs, Placements and works among
# them), so it comes often enough to stay short: after 20, two pauses of 0.6 s in a burst of
# 5,000 jobs.
MIDDLE_THRESHOLD = 5
# A full collection at most after this many middle ones (default 10), and still only once the
# objects promoted since the last reach a quarter of the heap (CPython's own rule): at the rate
# of a 10 jobs/s burst on 1,000 members, about every three hours.
FULL_THRESHOLD = 200

PAUSE_SECONDS = Histogram(
    "continuum_gc_pause_seconds",
    "Pauses of Python's cyclic garbage collector, which stop every thread of the process, by "
    "generation collected (2: the whole heap)",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


class _PauseTimer:
    """A gc callback: the time from each collection's start to its stop, into PAUSE_SECONDS."""

    def __init__(self) -> None:
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            took = time.perf_counter() - self._started
            PAUSE_SECONDS.labels(str(info.get("generation", ""))).observe(took)


def settle_heap() -> None:
    """Once start-up has built what lives as long as the process (the modules, the kubernetes
    client's models, the mirrors' first lists: hundreds of thousands of objects): collects,
    freezes what is alive so no later collection walks it, sets the thresholds above and
    measures every pause from now on. Idempotent."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, FULL_THRESHOLD)
    if not any(isinstance(callback, _PauseTimer) for callback in gc.callbacks):
        gc.callbacks.append(_PauseTimer())
    for generation in range(len(gc.get_threshold())):
        PAUSE_SECONDS.labels(str(generation))  # exported from the start, at 0 until one
