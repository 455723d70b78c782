"""The fence loop: once the agent has gone fenceAfterSeconds without renewing its lease (or has
never renewed since it started), it suspends the member's RayJobs whose work says Fence, each
marked with its work's session (`reconcile/fencing.py` decides which, and when one may run
again). It looks every `CHECK_INTERVAL_S`; the member's API server is at the agent's own site,
so fencing needs nothing from the hub. What it fenced, and the session it waits for, ride on
the next renewal's report.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from continuum.operator.adapters.kube import describe_connection_error
from continuum.operator.adapters.member_gate import CONNECTION_ERRORS
from continuum.operator.adapters.member_mirror import job_of
from continuum.operator.adapters.member_writes import put_resource
from continuum.operator.agent.lease import LeaseKeeper
from continuum.operator.agent.local import LocalResources
from continuum.operator.agent.works import WorkView
from continuum.operator.api.mljob import DisconnectAction
from continuum.operator.api.work import work_name
from continuum.operator.reconcile.fencing import (
    ResourceKey,
    awaiting_session,
    fence_due,
    fenced,
    fenced_session,
    to_fence,
)

LOG = logging.getLogger(__name__)
CHECK_INTERVAL_S = 1.0


class Fence:
    def __init__(
        self,
        member: client.ApiClient,
        lease: LeaseKeeper,
        works: WorkView,
        local: LocalResources,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.member, self.lease, self.works, self.local = member, lease, works, local
        self.clock = clock
        self.started = clock()

    def is_due(self) -> bool:
        return fence_due(
            self.lease.seconds_since_renewal(), self.clock() - self.started, self.lease.timing
        )

    def _actions(self) -> dict[ResourceKey, DisconnectAction]:
        actions: dict[ResourceKey, DisconnectAction] = {}
        for name in self.works.names():
            body = self.works.get(name) or {}
            for entry in (body.get("spec") or {}).get("resources") or []:
                try:
                    actions[(entry["kind"], entry["name"])] = DisconnectAction(
                        entry["onDisconnect"]
                    )
                except (KeyError, ValueError):
                    continue  # a work this agent cannot read fences by default
        return actions

    def _session_of(self, resource: dict[str, Any]) -> int:
        job = job_of(resource)
        body = self.works.get(work_name(job.namespace, job.name)) or {}
        session = (body.get("spec") or {}).get("sessionEpoch", 0)
        return session if isinstance(session, int) else 0

    def check(self) -> int:
        """Fences what is due to be fenced; returns how many resources it fenced now."""
        held = self.local.items()
        self.lease.set_fenced(
            sum(1 for item in held if fenced_session(item) is not None), awaiting_session(held)
        )
        if not self.is_due():
            return 0
        done = 0
        for resource in to_fence(held, self._actions()):
            metadata = resource["metadata"]
            body = fenced(resource, self._session_of(resource))
            try:
                self.local.record(put_resource(self.member, metadata["namespace"], body), None)
            except ApiException as error:
                if error.status not in (404, 409):  # gone, or changed: looked at again soon
                    raise
                continue
            done += 1
            LOG.warning("fenced %s %s/%s: no lease renewal for %s s", resource["kind"],
                        metadata["namespace"], metadata["name"],
                        self.lease.timing.fence_after_seconds)  # fmt: skip
        return done

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(CHECK_INTERVAL_S):
            try:
                self.check()
            except ApiException as error:
                LOG.warning("fencing failed: HTTP %s: %s", error.status, error.reason)
            except CONNECTION_ERRORS as error:
                LOG.warning("fencing failed: %s", describe_connection_error(error))
