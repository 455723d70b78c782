"""The operator's HTTP endpoint beside its metrics: `/healthz` for a liveness probe, `/readyz`
for a readiness probe, and the Prometheus metrics on every other path.

Liveness says the scheduling loop still turns and its cycles still succeed: a loop stuck, or
failing every cycle, for longer than `stall_after_s` is a process to restart. Readiness says
the operator acts on a full view: the hub's objects are listed, every registered member has
been probed since the start, and each member that answered its last probe has its shard
resources mirrored. A member that is down does not make
the operator unready (it reports the member Unreachable, which is its job); `/readyz?verbose`
lists every check and every member, so that a member that is stuck is named.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from http.server import ThreadingHTTPServer
from typing import ClassVar

from prometheus_client import MetricsHandler

# The reasons the operator is not healthy (none: it is), asked afresh on every request
Check = Callable[[], list[str]]


class Health:
    """What the probes ask about: the loop's last turn and each member's last probe."""

    def __init__(self, stall_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_after_s, self.clock = stall_after_s, clock
        self._created = clock()
        self._last_turn: float | None = None
        self._last_success: float | None = None
        self._failing_since: float | None = None
        self._last_failure = ""
        self._reachable: dict[str, bool] = {}
        self._lock = threading.Lock()

    def began(self) -> None:
        """The operator begins to act (a standby replica, once it leads): a stall is counted
        from now."""
        with self._lock:
            self._created = self.clock()

    def turned(self) -> None:
        """The scheduling loop began one more turn."""
        with self._lock:
            self._last_turn = self.clock()

    def cycle_succeeded(self) -> None:
        with self._lock:
            self._last_success, self._failing_since = self.clock(), None

    def cycle_failed(self, error: BaseException) -> None:
        with self._lock:
            if self._failing_since is None:
                self._failing_since = self.clock()
            self._last_failure = type(error).__name__

    def probed(self, member: str, reachable: bool) -> None:
        with self._lock:
            self._reachable[member] = reachable

    def last_probe(self, member: str) -> bool | None:
        """Whether the member answered its last probe; None before its first since the start."""
        with self._lock:
            return self._reachable.get(member)

    def has_turned(self) -> bool:
        with self._lock:
            return self._last_turn is not None

    def liveness_problems(self) -> list[str]:
        """A start-up that never reaches the loop counts as a stall too."""
        with self._lock:
            last, failing_since, failure = self._last_turn, self._failing_since, self._last_failure
        now = self.clock()
        problems = []
        stalled_s = now - (self._created if last is None else last)
        if stalled_s > self.stall_after_s:
            if last is None:
                problems.append(f"the scheduling loop has not started after {stalled_s:.0f} s")
            else:
                problems.append(f"the scheduling loop has not turned for {stalled_s:.0f} s")
        if failing_since is not None and now - failing_since > self.stall_after_s:
            problems.append(
                f"every scheduling cycle has failed for {now - failing_since:.0f} s "
                f"(the last with {failure})"
            )
        return problems


class _Handler(MetricsHandler):
    checks: ClassVar[Mapping[str, Check]] = {}
    # More lines for `?verbose`, by path: what is worth knowing that does not fail the check.
    details: ClassVar[Mapping[str, Check]] = {}

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        path, _, query = self.path.partition("?")
        check = self.checks.get(path)
        if check is None:
            super().do_GET()
            return
        try:
            problems = check()
            details = self.details[path]() if "verbose" in query and path in self.details else []
        except Exception as error:  # a probe that cannot tell says so, and says not healthy
            problems, details = [f"the check failed: {type(error).__name__}"], []
        if details:
            verdict = "[-]" + "\n[-]".join(problems) if problems else "[+]ok"
            text = f"{verdict}\n" + "".join(f"{line}\n" for line in details)
        else:
            text = "ok\n" if not problems else "".join(f"{p}\n" for p in problems)
        body = text.encode()
        self.send_response(200 if not problems else 503)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # a probe every few seconds is not worth a log line


def serve(
    address: str,
    port: int,
    liveness: Check,
    readiness: Check,
    readiness_details: Check | None = None,
) -> ThreadingHTTPServer:
    """Serves the endpoints from a daemon thread; returns the server (`shutdown()` stops it)."""
    attributes = {
        "checks": {"/healthz": liveness, "/readyz": readiness},
        "details": {"/readyz": readiness_details} if readiness_details else {},
    }
    handler = type("HealthHandler", (_Handler,), attributes)
    server = ThreadingHTTPServer((address, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
