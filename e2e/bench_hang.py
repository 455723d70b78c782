"""The burst benchmark with one member's API server hung: the hang, what is watched while it
lasts, and the figures split by where each job's shard went.

A server stopped with SIGSTOP still accepts TCP connections (the kernel completes the
handshake) but answers nothing, so every request to it waits for its client's timeout, as with
a control plane that froze. The benchmark stops the member's kube-apiserver once the operator
is ready and the preload is deployed, runs the burst, and continues the server in every case:
when the block ends, on an exception, on SIGINT or SIGTERM, and, should the benchmark itself be
killed, from a watchdog process after a bound.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Collection, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, Generic, TypeVar

from e2e.bench_stats import summary
from e2e.testbed import Testbed

Value = TypeVar("Value", bound=Hashable)
SLOWEST = 5


class ChangeLog(Generic[Value]):
    """Per key, each change of one value, with the time it was seen: what a watch showed
    over time, where the first event alone is not enough."""

    def __init__(self) -> None:
        self.changes: dict[str, list[tuple[float, Value]]] = {}

    def note(self, key: str, at: float, value: Value) -> None:
        history = self.changes.setdefault(key, [])
        if not history or history[-1][1] != value:
            history.append((at, value))

    def first(self, key: str) -> Value | None:
        history = self.changes.get(key)
        return history[0][1] if history else None

    def latest(self, key: str) -> Value | None:
        history = self.changes.get(key)
        return history[-1][1] if history else None

    def first_time(self, key: str, since: float, wanted: Any) -> float | None:
        """When the value first became one that `wanted(value)` accepts, at or after `since`."""
        for at, value in self.changes.get(key, []):
            if at >= since and wanted(value):
                return at
        return None

    def copy(self) -> ChangeLog[Value]:
        duplicate: ChangeLog[Value] = ChangeLog()
        duplicate.changes = {key: list(history) for key, history in self.changes.items()}
        return duplicate


def placed_clusters(placement: Mapping[str, Any]) -> frozenset[str]:
    """The member clusters a Placement's decisions name."""
    decisions = (placement.get("spec") or {}).get("decisions") or []
    return frozenset(decision["cluster"] for decision in decisions if decision.get("cluster"))


def condition_status(obj: Mapping[str, Any], kind: str) -> str | None:
    """The status ("True", "False", "Unknown") of an object's condition of type `kind`."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            status: str | None = condition.get("status")
            return status
    return None


def first_on(placements: ChangeLog[frozenset[str]], job: str, member: str | None) -> bool:
    """The job's first Placement sent a shard to `member`."""
    return member is not None and member in (placements.first(job) or frozenset())


def moved_off(placements: ChangeLog[frozenset[str]], job: str, member: str) -> float | None:
    """When the job's Placement stopped naming `member`, after first naming it."""
    history = placements.changes.get(job, [])
    if not history or member not in history[0][1]:
        return None
    return next((at for at, clusters in history[1:] if member not in clusters), None)


@dataclass(frozen=True)
class Progress:
    """What the benchmark's watches saw, per job: the first Placement, the first shard
    resource and in which member, the first status saying where, and each change of the
    clusters its Placement names."""

    placed: Mapping[str, float]
    deployed: Mapping[str, float]
    member_of: Mapping[str, str]
    reported: Mapping[str, float]
    placements: ChangeLog[frozenset[str]]


def healthy_done(jobs: Collection[str], seen: Progress, hung: str | None) -> bool:
    """Every job is placed, and each whose shard went elsewhere than the hung member (every
    job, without one) has its shard resources and a status saying where."""
    return all(
        job in seen.placed
        and (
            first_on(seen.placements, job, hung) or (job in seen.deployed and job in seen.reported)
        )
        for job in jobs
    )


def deployed_off(seen: Progress, job: str, hung: str) -> bool:
    return job in seen.deployed and seen.member_of.get(job) != hung


def hung_done(jobs: Collection[str], seen: Progress, hung: str) -> bool:
    """Each job first placed on the hung member was placed again and deployed elsewhere."""
    return all(
        deployed_off(seen, job, hung) for job in jobs if first_on(seen.placements, job, hung)
    )


def hang_report(
    hung: str,
    submitted: Mapping[str, float],
    preloaded: Collection[str],
    seen: Progress,
    reachable: ChangeLog[str | None],
    stopped_at: float,
) -> dict[str, Any]:
    """The burst's figures split by where each job's shard went first: a healthy member (the
    figure the hang must not spoil) or the hung one (whose shards cannot appear until the job
    is placed again elsewhere); when the hub first said the member was not Reachable; and what
    became of the preloaded jobs that were on it."""
    placed = [job for job in submitted if job in seen.placed]
    healthy = [job for job in placed if not first_on(seen.placements, job, hung)]
    on_hung = [job for job in placed if first_on(seen.placements, job, hung)]
    moved = {
        job: at for job in on_hung if (at := moved_off(seen.placements, job, hung)) is not None
    }
    redeployed = [job for job in moved if deployed_off(seen, job, hung)]
    healthy_deployed = [job for job in healthy if job in seen.deployed]
    detected = reachable.first_time(hung, stopped_at, lambda status: status == "False")
    preloaded_on_hung = [job for job in preloaded if first_on(seen.placements, job, hung)]

    def to_shards(job: str) -> float:
        return seen.deployed.get(job, math.inf) - submitted[job]

    slowest_healthy = [
        {"job": job, "submitted_after_s": round(submitted[job] - min(submitted.values()), 3),
         "to_shards_s": round(to_shards(job), 3) if job in seen.deployed else None,
         "member": ",".join(sorted(seen.placements.first(job) or ()))}
        for job in sorted(healthy, key=to_shards, reverse=True)[:SLOWEST]
    ]  # fmt: skip
    return {
        "member": hung,
        "detected_after_s": None if detected is None else round(detected - stopped_at, 2),
        "healthy": {
            "jobs": len(healthy),
            "deployed": len(healthy_deployed),
            "apply_to_placement_s": summary([seen.placed[job] - submitted[job] for job in healthy]),
            "apply_to_shards_s": summary(
                [seen.deployed[job] - submitted[job] for job in healthy_deployed]
            ),
            "slowest": slowest_healthy,
        },
        "on_hung_member": {
            "jobs": len(on_hung),
            "replaced": len(moved),
            "stop_to_replacement_s": summary([at - stopped_at for at in moved.values()]),
            "apply_to_replacement_s": summary([at - submitted[job] for job, at in moved.items()]),
            "deployed_elsewhere": len(redeployed),
            "apply_to_shards_s": summary(
                [seen.deployed[job] - submitted[job] for job in redeployed]
            ),
            "not_deployed": len(on_hung) - len(redeployed),
        },
        "unplaced": len(submitted) - len(placed),
        "preload": {
            "jobs": len(preloaded),
            "on_hung_member": len(preloaded_on_hung),
            "replaced": sum(
                1 for job in preloaded_on_hung if moved_off(seen.placements, job, hung) is not None
            ),
        },
    }


@dataclass(frozen=True)
class ProbeSample:
    at: float
    path: str
    code: int | None
    """The HTTP status; None when nothing answered within the timeout."""
    body: str


PROBE_PATHS = ("/readyz", "/healthz")


def ask(port: int, path: str, timeout_s: float) -> ProbeSample:
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            return ProbeSample(time.monotonic(), path, reply.status, reply.read().decode())
    except urllib.error.HTTPError as error:
        return ProbeSample(time.monotonic(), path, error.code, error.read().decode())
    except OSError as error:
        return ProbeSample(time.monotonic(), path, None, str(error))


class ProbePoller(threading.Thread):
    """Asks the operator's /readyz and /healthz every `interval_s` until stopped."""

    def __init__(self, port: int, interval_s: float = 1.0, timeout_s: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.port, self.interval_s, self.timeout_s = port, interval_s, timeout_s
        self.samples: list[ProbeSample] = []
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.is_set():
            for path in PROBE_PATHS:
                self.samples.append(ask(self.port, path, self.timeout_s))
            self._stopping.wait(self.interval_s)

    def stop(self) -> list[ProbeSample]:
        self._stopping.set()
        self.join(timeout=len(PROBE_PATHS) * self.timeout_s + self.interval_s + 1)
        return list(self.samples)


MAX_REASONS = 8


def probe_summary(samples: Sequence[ProbeSample], path: str, since: float) -> dict[str, Any]:
    """How `path` answered: polls, 200s, other answers, no answers, when it first did not say
    ok (after `since`), and the distinct lines it gave instead (at most MAX_REASONS)."""
    asked = [sample for sample in samples if sample.path == path]
    failing = [sample for sample in asked if sample.code != 200]
    reasons: list[str] = []
    for sample in failing:
        lines = (
            sample.body.strip().splitlines()
            if sample.code is not None
            else [f"no answer: {sample.body}"]
        )
        for line in lines:
            if line not in reasons and len(reasons) < MAX_REASONS:
                reasons.append(line)
    return {
        "polls": len(asked),
        "ok": len(asked) - len(failing),
        "not_ok": sum(1 for sample in failing if sample.code is not None),
        "no_answer": sum(1 for sample in failing if sample.code is None),
        "first_not_ok_after_s": round(failing[0].at - since, 2) if failing else None,
        "reasons": reasons,
    }


# Runs apart from the benchmark, so that a benchmark killed with SIGKILL (which no handler
# sees) still does not leave the server stopped: it continues the pid after a bound, if the
# pid still runs the same program.
WATCHDOG = """
import os, signal, sys, time
pid, bound = int(sys.argv[1]), float(sys.argv[2])
executable = os.readlink(f"/proc/{pid}/exe")
time.sleep(bound)
try:
    if os.readlink(f"/proc/{pid}/exe") == executable:
        os.kill(pid, signal.SIGCONT)
except OSError:
    pass
"""


@contextlib.contextmanager
def hung_apiserver(testbed: Testbed, member: str, bound_s: float) -> Iterator[float]:
    """Stops `member`'s kube-apiserver (SIGSTOP) for the block and yields when; continues it
    (SIGCONT) when the block ends in any way, at once on SIGINT or SIGTERM (then exits), and
    from a watchdog after `bound_s` should this process die without unwinding."""
    paused: list[int] = []

    def continue_and_exit(signum: int, frame: FrameType | None) -> None:
        for pid in paused:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        raise SystemExit(128 + signum)

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, continue_and_exit)
    watchdog: subprocess.Popen[bytes] | None = None
    try:
        paused.append(testbed.pause(member))
        stopped_at = time.monotonic()
        watchdog = subprocess.Popen(
            [sys.executable, "-c", WATCHDOG, str(paused[0]), str(bound_s)],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        yield stopped_at
    finally:
        with contextlib.suppress(RuntimeError):  # never stopped: it was not running
            testbed.resume(member)
        if watchdog is not None:
            watchdog.kill()
            watchdog.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _pair(figures: Mapping[str, float | None]) -> str:
    return f"{figures['p50_s']} / {figures['p99_s']}"


def _probe_line(path: str, answers: Mapping[str, Any]) -> str:
    line = (
        f"- `{path}` during the hang: ok {answers['ok']} of {answers['polls']} polls, "
        f"not ok {answers['not_ok']}, no answer {answers['no_answer']}"
    )
    if answers["first_not_ok_after_s"] is not None:
        line += f" (first not ok {answers['first_not_ok_after_s']} s after the stop)"
    if answers["reasons"]:
        line += ": " + "; ".join(answers["reasons"])
    return line


def hang_markdown(hang: Mapping[str, Any]) -> list[str]:
    """The hang's part of the benchmark's markdown report."""
    member, healthy, on_hung = hang["member"], hang["healthy"], hang["on_hung_member"]
    detected = hang["detected_after_s"]
    return [
        f"With {member}'s API server stopped (SIGSTOP) {hang['stopped_at_s']} s after the "
        f"operator's start, {hang['burst_after_stop_s']} s before the burst; the hub said it "
        "was not Reachable "
        + (f"{detected} s after the stop." if detected is not None else "at no time in the wait."),
        "",
        "| shards sent first to | jobs | deployed | apply to Placement p50 / p99 s "
        "| apply to shard resources p50 / p99 s | goal |",
        "|---|---|---|---|---|---|",
        f"| a healthy member | {healthy['jobs']} | {healthy['deployed']} | "
        f"{_pair(healthy['apply_to_placement_s'])} | {_pair(healthy['apply_to_shards_s'])} | "
        "shards p99 <= 2 s |",
        f"| {member} (hung) | {on_hung['jobs']} | {on_hung['deployed_elsewhere']} elsewhere | "
        f"placed again: {_pair(on_hung['apply_to_replacement_s'])} | "
        f"{_pair(on_hung['apply_to_shards_s'])} | |",
        "",
        f"- the jobs sent to {member}: {on_hung['replaced']} of {on_hung['jobs']} placed again "
        f"elsewhere (the stop to that, p50 / p99: {_pair(on_hung['stop_to_replacement_s'])} s), "
        f"{on_hung['not_deployed']} not deployed; the jobs sent to healthy members were "
        + ("done" if hang["healthy_done"] else "not all done by the end of the wait,")
        + f" {hang['healthy_done_after_s']} s after the first create, and the wait for those "
        f"sent to {member} went on at most {hang['wait_for_hung_s']} s more",
        "- the slowest jobs sent to a healthy member, create to shard resources: "
        + ", ".join(
            f"{row['job']} on {row['member']} "
            + (f"{row['to_shards_s']} s" if row["to_shards_s"] is not None else "not deployed")
            for row in healthy["slowest"]
        ),
        f"- never placed: {hang['unplaced']}",
        f"- preloaded jobs on {member}: {hang['preload']['on_hung_member']} of "
        f"{hang['preload']['jobs']}, placed again {hang['preload']['replaced']}",
        _probe_line("/readyz", hang["readyz"]),
        _probe_line("/healthz", hang["healthz"]),
        "",
    ]
