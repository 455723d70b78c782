"""The probes' endpoint and the loop stall that fails liveness, over a real HTTP socket."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from continuum.operator.adapters import metrics
from continuum.operator.adapters.health import Health, serve

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_loop_that_stops_turning_fails_liveness_after_the_stall_time() -> None:
    clock = Clock()
    health = Health(stall_after_s=60, clock=clock)
    clock.now += 59
    assert health.liveness_problems() == []  # still starting
    clock.now += 2
    assert health.liveness_problems() == ["the scheduling loop has not started after 61 s"]
    health.turned()
    assert health.liveness_problems() == []
    assert health.has_turned()
    clock.now += 61
    assert health.liveness_problems() == ["the scheduling loop has not turned for 61 s"]


def test_the_last_probe_of_each_member_is_kept() -> None:
    health = Health(stall_after_s=60)
    assert health.last_probe("member-1") is None
    health.probed("member-1", True)
    health.probed("member-1", False)
    assert health.last_probe("member-1") is False


@pytest.fixture
def endpoint() -> Iterator[tuple[str, list[str]]]:
    problems: list[str] = []
    server = serve("127.0.0.1", 0, lambda: [], lambda: list(problems))
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", problems
    finally:
        server.shutdown()
        server.server_close()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_readyz_says_why_not_until_there_is_nothing_to_say(
    endpoint: tuple[str, list[str]],
) -> None:
    url, problems = endpoint
    problems.extend(["the hub's objects are not all listed", "member member-2 has not been probed"])
    assert get(f"{url}/readyz") == (
        503,
        "the hub's objects are not all listed\nmember member-2 has not been probed\n",
    )
    problems.clear()
    assert get(f"{url}/readyz?verbose") == (200, "ok\n")
    assert get(f"{url}/healthz") == (200, "ok\n")


def test_every_other_path_serves_the_metrics(endpoint: tuple[str, list[str]]) -> None:
    metrics.RECONCILES.labels("Probe").inc()
    status, body = get(f"{endpoint[0]}/metrics")
    assert status == 200
    assert 'continuum_reconciles_total{kind="Probe"}' in body


def test_cycles_that_keep_failing_fail_liveness_after_the_stall_time() -> None:
    clock = Clock()
    health = Health(stall_after_s=60, clock=clock)
    health.turned()
    health.cycle_succeeded()
    clock.now += 5
    health.cycle_failed(KeyError("x"))
    for _ in range(6):  # the loop keeps turning, and every cycle throws
        clock.now += 10
        health.turned()
        health.cycle_failed(KeyError("x"))
    assert health.liveness_problems() == []  # failing for 60 s: not yet longer than that
    clock.now += 1
    health.turned()
    assert health.liveness_problems() == [
        "every scheduling cycle has failed for 61 s (the last with KeyError)"
    ]
    health.cycle_succeeded()
    assert health.liveness_problems() == []


def test_readyz_verbose_names_each_member_without_failing_for_a_stuck_one() -> None:
    lines = ["[+]member member-1 answering", "[-]member member-3 not answering for 12 s"]
    server = serve("127.0.0.1", 0, lambda: [], lambda: [], lambda: lines)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert get(f"{url}/readyz") == (200, "ok\n")
        assert get(f"{url}/readyz?verbose") == (200, "[+]ok\n" + "".join(f"{x}\n" for x in lines))
    finally:
        server.shutdown()
        server.server_close()
