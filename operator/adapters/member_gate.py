"""Per member: how many requests may be in flight, and whether the member answers at all.

A member whose API server hangs (stopped, or behind a link that drops everything) accepts
connections and never answers, so each request to it costs a worker its whole timeout. Every
placement pass visits every member, so without a gate one hung member would hold every worker
in turn and stall the shards bound for the healthy ones. The gate bounds what a member can
cost: at most `max_in_flight` requests wait on it at once, and once a request to it times out or
cannot connect, every request fails at once (`MemberNotAnsweringError`) until a probe gets an
answer again. A request that finds every slot taken waits for one (a busy member is not a hung
one), unless the oldest request in flight is older than `suspect_after_s`: then it gives up at
once (`MemberBusyError`), and its pass comes back after the other members are done. Probes
pass the gate (`probing()`): they are how the operator learns that the member is back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

MAX_IN_FLIGHT = 4
# A request in flight this long is taken for one that will time out: a healthy member's take
# tens of milliseconds, and under a burst on a slow machine mostly under half a second (a pass
# taken for one that met a hung member only comes back a second later).
SUSPECT_AFTER_S = 0.5
# How long a request waits for a slot while the requests in flight are young.
SLOT_WAIT_S = 1.0
CONNECTION_ERRORS = (urllib3.exceptions.HTTPError, OSError)


class MemberUnavailableError(Exception):
    """The member cannot be worked on now; `reason` is a CamelCase condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class MemberNotAnsweringError(MemberUnavailableError):
    """A request to the member timed out or could not connect, and no probe has had an answer
    since."""


class MemberBusyError(MemberUnavailableError):
    """Every slot of the member is taken by requests that have not returned yet; `suspect`
    when they have been in flight so long that the member is likely hung (and its gate will
    close within the timeout), rather than only busy."""

    def __init__(self, reason: str, message: str, suspect: bool) -> None:
        super().__init__(reason, message)
        self.suspect = suspect


@dataclass(frozen=True)
class GateState:
    answering: bool
    # why it is not answering, and since when (the gate's clock), when it is not
    why: str = ""
    since: float = 0.0


class MemberGate:
    def __init__(
        self,
        member: str,
        max_in_flight: int = MAX_IN_FLIGHT,
        slot_wait_s: float = SLOT_WAIT_S,
        suspect_after_s: float = SUSPECT_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.member, self.slot_wait_s, self.clock = member, slot_wait_s, clock
        self.max_in_flight, self.suspect_after_s = max_in_flight, suspect_after_s
        self._state = GateState(answering=True)
        self._lock = threading.Lock()
        self._slot_freed = threading.Condition(self._lock)
        # when each request in flight started, by a token of its own
        self._in_flight: dict[object, float] = {}
        self._probing = threading.local()

    @property
    def state(self) -> GateState:
        with self._lock:
            return self._state

    def not_answering(self, why: str) -> None:
        with self._lock:
            if self._state.answering:
                self._state = GateState(answering=False, why=why, since=self.clock())

    def answering(self) -> None:
        with self._lock:
            self._state = GateState(answering=True)

    @contextmanager
    def probing(self) -> Iterator[None]:
        """Requests made in this block (in this thread) pass the gate, open or not."""
        self._probing.active = True
        try:
            yield
        finally:
            self._probing.active = False

    def check(self) -> None:
        """Raises MemberNotAnsweringError while the member is not answering."""
        state = self.state
        if not state.answering:
            raise MemberNotAnsweringError(
                "NotAnswering",
                f"member {self.member} is not answering ({state.why}); its work waits for a "
                "probe that gets an answer",
            )

    @contextmanager
    def admit(self) -> Iterator[None]:
        """One request's passage: refused at once while the member is not answering, or while
        every slot is held by a request older than `suspect_after_s`; else it waits up to
        `slot_wait_s` for a slot."""
        if getattr(self._probing, "active", False):
            yield
            return
        self.check()
        token = self._take_slot()
        try:
            yield
        finally:
            with self._lock:
                del self._in_flight[token]
                self._slot_freed.notify()

    def _take_slot(self) -> object:
        token = object()
        deadline = self.clock() + self.slot_wait_s
        with self._lock:
            while len(self._in_flight) >= self.max_in_flight:
                now = self.clock()
                oldest_s = now - min(self._in_flight.values())
                if oldest_s > self.suspect_after_s or now >= deadline:
                    raise MemberBusyError(
                        "Busy",
                        f"member {self.member} has {len(self._in_flight)} requests in flight, "
                        f"the oldest for {oldest_s:.1f} s",
                        suspect=oldest_s > self.suspect_after_s,
                    )
                self._slot_freed.wait(min(deadline - now, self.suspect_after_s))
            self._in_flight[token] = self.clock()
        return token


class GatedApiClient(client.ApiClient):
    """An ApiClient whose every request passes `gate`, with `timeout_s` unless the caller sets
    one; a request that times out or cannot connect closes the gate."""

    # The member's kube-system UID, once a probe has read it: it never changes.
    cluster_id: str | None = None

    def __init__(
        self,
        configuration: client.Configuration,
        gate: MemberGate,
        timeout_s: float,
        describe: Callable[[BaseException], str],
    ) -> None:
        super().__init__(configuration)
        self.gate, self.timeout_s, self._describe = gate, timeout_s, describe
        self._ungated: client.ApiClient | None = None

    @property
    def ungated(self) -> client.ApiClient:
        """A client of the same member that passes no gate, for the mirrors: their list and
        watch threads wait on a hung member in their own time, and must not take the slots
        the placement workers need."""
        if self._ungated is None:
            self._ungated = client.ApiClient(self.configuration)
        return self._ungated

    def close(self) -> None:
        if self._ungated is not None:
            self._ungated.close()
        super().close()

    def call_api(
        self,
        method: str,
        url: str,
        header_params: Any = None,
        body: Any = None,
        post_params: Any = None,
        _request_timeout: Any = None,
    ) -> Any:
        with self.gate.admit():
            try:
                return super().call_api(
                    method, url, header_params, body, post_params,
                    _request_timeout or self.timeout_s,
                )  # fmt: skip
            except CONNECTION_ERRORS as error:
                self.gate.not_answering(self._describe(error))
                raise
            except ApiException as error:
                if error.status != 0 or not str(error.reason).startswith("SSLError"):
                    raise  # the member answered
                # The client's word for an SSLError, with its text (which may name the host)
                # as the reason: one kind of connection failure like the others.
                failure = urllib3.exceptions.SSLError("the TLS setup failed")
                self.gate.not_answering(self._describe(failure))
                raise failure from None
