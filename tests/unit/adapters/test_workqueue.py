"""The placement controller's work queue: one pass for many asks, one thread per key, retries."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from continuum.operator.adapters.workqueue import RetryLater, WorkQueue

pytestmark = pytest.mark.unit


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_asks_for_a_key_being_worked_on_make_one_more_pass() -> None:
    started, release = threading.Event(), threading.Event()
    passes: list[str] = []

    def handler(key: str) -> None:
        passes.append(key)
        started.set()
        release.wait(5)

    queue = WorkQueue("test", handler, workers=2).start()
    try:
        queue.add("a")
        assert started.wait(5)
        for _ in range(10):
            queue.add("a")  # while the first pass runs: one more pass, not ten
        release.set()
        wait_for(lambda: len(queue) == 0 and len(passes) == 2)
        time.sleep(0.05)
        assert passes == ["a", "a"]
    finally:
        release.set()
        queue.stop()


def test_one_key_is_never_worked_on_by_two_threads_at_once() -> None:
    lock = threading.Lock()
    active: dict[int, int] = {}
    overlaps: list[int] = []
    done: list[int] = []

    def handler(key: int) -> None:
        with lock:
            active[key] = active.get(key, 0) + 1
            if active[key] > 1:
                overlaps.append(key)
        time.sleep(0.002)
        with lock:
            active[key] -= 1
            done.append(key)

    queue = WorkQueue("test", handler, workers=4).start()
    try:
        for round_ in range(50):
            queue.add(round_ % 3)
        wait_for(lambda: len(queue) == 0)
        assert overlaps == []
        assert set(done) == {0, 1, 2}
    finally:
        queue.stop()


def test_a_conflict_is_retried_after_its_delay_and_a_failure_with_backoff() -> None:
    attempts: dict[str, list[float]] = {"conflict": [], "failure": []}

    def handler(key: str) -> None:
        attempts[key].append(time.monotonic())
        if len(attempts[key]) < 3:
            if key == "conflict":
                raise RetryLater(0.05)
            raise RuntimeError("the member said no")

    queue = WorkQueue("test", handler, workers=2).start()
    try:
        queue.add("conflict")
        queue.add("failure")
        wait_for(lambda: all(len(times) == 3 for times in attempts.values()))
        conflict, failure = attempts["conflict"], attempts["failure"]
        assert conflict[1] - conflict[0] >= 0.05
        # backoff doubles from its first delay
        assert failure[2] - failure[1] >= 1.5 * (failure[1] - failure[0])
    finally:
        queue.stop()


def test_stop_ends_the_workers() -> None:
    queue = WorkQueue("test", lambda key: None, workers=3).start()
    queue.stop(timeout_s=5)
    assert not any(thread.is_alive() for thread in queue._threads)
