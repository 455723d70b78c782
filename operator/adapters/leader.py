"""Leader election with a `coordination.k8s.io` Lease: of the replicas of the operator, one acts.

The rules are client-go's (k8s.io/client-go/tools/leaderelection): a candidate takes the Lease
when it has no holder, or when its record (holder and renew time) has not changed for the
holder's `leaseDurationSeconds`, as measured on the candidate's own clock from when it saw the
record change, so that no two clocks are compared. The holder renews it every `retry_s`; one
that cannot renew it within `renew_deadline_s` has lost it and must stop acting at once (the
operator exits, as controller-runtime's managers do: a restarted pod stands by). Every write
carries the resourceVersion read, so two candidates never both win one round.

On a clean stop the holder releases the Lease (no holder, a one-second duration), so that a
rolling update hands over within a retry rather than a whole lease duration.

The Kubernetes Python client ships a leader elector too (kubernetes.leaderelection); it is not
used because it cannot release the Lease on a clean stop (its renew loop cannot be stopped from
outside and would take the Lease back), it talks through the client's global configuration
rather than the operator's hub client, and it exits the interpreter on a bad setting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from continuum.operator.adapters.member_gate import CONNECTION_ERRORS

LOG = logging.getLogger(__name__)
NOT_FOUND = 404
# A round that meets one of these has failed, as one the API server refused: a request that
# hangs or a connection that breaks must not keep the holder from noticing it lost the Lease.
ROUND_ERRORS = (ApiException, *CONNECTION_ERRORS)


@dataclass(frozen=True)
class LeaseTiming:
    """Takeover after a crash takes at most duration_s + retry_s (then the start-up)."""

    duration_s: int = 8
    renew_deadline_s: float = 6.0
    retry_s: float = 1.0

    def __post_init__(self) -> None:
        if self.retry_s <= 0:
            raise ValueError("the retry period must be above 0")
        if not self.retry_s < self.renew_deadline_s < self.duration_s:
            raise ValueError(
                "the lease timing needs retry < renew deadline < lease duration, not "
                f"{self.retry_s} < {self.renew_deadline_s} < {self.duration_s}"
            )


def may_take(
    holder: str | None, me: str, unchanged_since: float, duration_s: float, now: float
) -> bool:
    """Whether `me` may write the Lease: it holds it, nobody does, or its holder has not
    renewed it for `duration_s` (`unchanged_since`: when this candidate last saw it change)."""
    return not holder or holder == me or now - unchanged_since >= duration_s


class LeaseElector:
    """One candidate: `wait_until_leading`, then `keep_leading` in a thread, `release` at the
    end."""

    def __init__(
        self,
        api: client.CoordinationV1Api,
        namespace: str,
        name: str,
        identity: str,
        timing: LeaseTiming = LeaseTiming(),
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity
        self.timing, self.clock, self.wall_clock = timing, clock, wall_clock
        self.stopped = threading.Event()
        self._seen: tuple[str | None, object] | None = None
        self._seen_at = 0.0
        self._holder: str | None = None

    @property
    def request_timeout_s(self) -> float:
        """Each request's timeout: a few fit in the renew deadline."""
        return max(0.5, self.timing.renew_deadline_s / 3)

    @property
    def where(self) -> str:
        return f"Lease {self.namespace}/{self.name}"

    @property
    def holder(self) -> str | None:
        """The holder this candidate last saw (itself, once it leads)."""
        return self._holder

    def try_acquire_or_renew(self) -> bool:
        """One round: True if this candidate holds the Lease after it. Never raises: a round
        that fails for any reason is one it does not hold the Lease after."""
        try:
            return self._round()
        except ROUND_ERRORS as error:
            LOG.warning("%s: a round failed (%s)", self.where, type(error).__name__)
            return False

    def _round(self) -> bool:
        try:
            lease = self.api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=self.request_timeout_s
            )
        except ApiException as error:
            if error.status != NOT_FOUND:
                LOG.warning("cannot read %s: %s %s", self.where, error.status, error.reason)
                return False
            return self._create()
        spec = lease.spec or client.V1LeaseSpec()
        now = self.clock()
        record = (spec.holder_identity, spec.renew_time)
        if record != self._seen:
            self._seen, self._seen_at = record, now
        self._holder = spec.holder_identity
        duration = spec.lease_duration_seconds or self.timing.duration_s
        if not may_take(spec.holder_identity, self.identity, self._seen_at, duration, now):
            return False
        renewing = spec.holder_identity == self.identity
        stamp = self.wall_clock()
        lease.spec = client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=self.timing.duration_s,
            acquire_time=spec.acquire_time if renewing else stamp,
            renew_time=stamp,
            lease_transitions=(spec.lease_transitions or 0) + (0 if renewing else 1),
        )
        try:
            self.api.replace_namespaced_lease(
                self.name, self.namespace, lease, _request_timeout=self.request_timeout_s
            )
        except ApiException as error:
            # 409: another candidate wrote it first; it is read again next round.
            LOG.info("did not write %s: %s %s", self.where, error.status, error.reason)
            return False
        self._taken(stamp)
        if not renewing:
            LOG.info("%s now leads (%s)", self.identity, self.where)
        return True

    def _create(self) -> bool:
        stamp = self.wall_clock()
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
            spec=client.V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=self.timing.duration_s,
                acquire_time=stamp,
                renew_time=stamp,
                lease_transitions=0,
            ),
        )
        try:
            self.api.create_namespaced_lease(
                self.namespace, body, _request_timeout=self.request_timeout_s
            )
        except ApiException as error:
            LOG.info("did not create %s: %s %s", self.where, error.status, error.reason)
            return False
        self._taken(stamp)
        LOG.info("%s now leads (%s, made)", self.identity, self.where)
        return True

    def _taken(self, stamp: datetime) -> None:
        self._holder = self.identity
        self._seen, self._seen_at = (self.identity, stamp), self.clock()

    def wait_until_leading(self) -> bool:
        """Blocks until this candidate leads (True) or `stopped` is set (False)."""
        while not self.stopped.is_set():
            if self.try_acquire_or_renew():
                return True
            self.stopped.wait(self.timing.retry_s)
        return False

    def keep_leading(self, lost: Callable[[], None]) -> None:
        """Renews the Lease until `stopped`; calls `lost` and returns if a renewal does not
        succeed within the renew deadline."""
        while not self.stopped.wait(self.timing.retry_s):
            deadline = self.clock() + self.timing.renew_deadline_s
            while not self.try_acquire_or_renew():
                if self.stopped.is_set():
                    return
                if self.clock() >= deadline:
                    LOG.error("%s could not renew %s for %.0f s: it no longer leads",
                              self.identity, self.where, self.timing.renew_deadline_s)  # fmt: skip
                    lost()
                    return
                self.stopped.wait(self.timing.retry_s)

    def release(self) -> None:
        """Stops renewing and, if this candidate still holds the Lease, gives it up."""
        self.stopped.set()
        if self._holder != self.identity:
            return
        timeout = self.request_timeout_s
        try:
            lease = self.api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=timeout
            )
            spec = lease.spec or client.V1LeaseSpec()
            if spec.holder_identity != self.identity:
                return
            spec.holder_identity, spec.lease_duration_seconds = None, 1
            spec.renew_time = self.wall_clock()
            self.api.replace_namespaced_lease(
                self.name, self.namespace, lease, _request_timeout=timeout
            )
            self._holder = None
            LOG.info("%s released %s", self.identity, self.where)
        except ROUND_ERRORS as error:
            # Not released: the others take it over once it expires.
            LOG.warning("could not release %s (%s)", self.where, type(error).__name__)
