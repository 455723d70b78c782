"""One member's agent: its loops and how they are wired.

- the lease loop renews the member's Lease on the hub (`lease.py`);
- the work loop follows the member's MemberWorks on the hub (`works.py`) and the member's own
  shard resources (`local.py`), and a keyed work queue converges each work that changed, or
  whose resources changed (`convergence.py`), with every work again each `resync_s`;
- the report loop finds the cluster's facts, which each renewal carries (`report.py`);
- the fence loop suspends the shards that must not run twice once the lease has gone
  fenceAfterSeconds without a renewal (`fencing.py`); convergence lets them run again only
  under work of a later session.

Everything it keeps in memory it rebuilds from the hub and the member on start: the Lease is
read again, the works and the resources listed again, and a restarted agent converges to
what the hub says now, with resources named as before, so a kill at any point costs a retry.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from continuum.operator.adapters.kube import describe_connection_error
from continuum.operator.adapters.member_gate import CONNECTION_ERRORS
from continuum.operator.adapters.workqueue import WorkQueue
from continuum.operator.agent.convergence import WorkConverger
from continuum.operator.agent.fencing import Fence
from continuum.operator.agent.lease import LeaseKeeper
from continuum.operator.agent.local import LocalResources
from continuum.operator.agent.report import ClusterReporter
from continuum.operator.agent.works import WorkView
from continuum.operator.api.keys import JobKey
from continuum.operator.api.work import work_name

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentSettings:
    member: str
    workers: int = 4
    resync_s: float = 30.0
    """Every work is converged again at least this often."""
    report_interval_s: float = 30.0


def holder_identity(member: str) -> str:
    """Who holds the Lease: the member, and which process of which host."""
    return f"{member}/{socket.gethostname()}/{os.getpid()}"


class Agent:
    def __init__(
        self,
        settings: AgentSettings,
        hub: client.ApiClient,
        member: client.ApiClient,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        name = settings.member
        self.lease = LeaseKeeper(hub, name, holder_identity(name), clock, now)
        self.queue: WorkQueue[str] = WorkQueue(
            f"works-{name}", self._converge, settings.workers, clock
        )
        self.works = WorkView(hub, name, self.queue.add)
        self.local = LocalResources(member, self._resources_changed)
        self.fence = Fence(member, self.lease, self.works, self.local, clock)
        self.converger = WorkConverger(member, self.works, self.local, now, self.fence.is_due)
        self.reporter = ClusterReporter(
            name, hub, member, self.lease, clock, now, settings.report_interval_s
        )
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _converge(self, work: str) -> None:
        self.converger.converge(work)

    def _resources_changed(self, job: JobKey) -> None:
        if job.name:
            self.queue.add(work_name(job.namespace, job.name))

    def start(self) -> Agent:
        """Starts every loop. The agent's times are read from the MemberCluster first, when the
        hub answers, so that the first renewal writes the right lease duration."""
        try:
            # The facts before the first renewal, so that it carries them.
            self.reporter.report()
        except ApiException as error:
            LOG.warning(
                "the first report of member %s failed: HTTP %s: %s; taking the default agent "
                "times until the MemberCluster is read", self.settings.member, error.status,
                error.reason,
            )  # fmt: skip
        except CONNECTION_ERRORS as error:
            LOG.warning("the first report failed (%s); taking the default agent times until "
                        "the MemberCluster is read", describe_connection_error(error))  # fmt: skip
        self.local.start()
        self.works.start()
        self.queue.start()
        for target, label in (
            (self.lease.run, "lease"),
            (self.reporter.run, "report"),
            (self.fence.run, "fence"),
            (self._resync, "resync"),
        ):
            thread = threading.Thread(
                target=target, args=(self._stop,), name=f"agent-{label}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def _resync(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.resync_s):
            for name in self.works.names():
                self.queue.add(name)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self.works.stop()
        self.local.stop()
        self.queue.stop(timeout_s)
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
