"""Simulated Pull members for the fleet benchmark (e2e/bench_fleet.py): many agents in one
process, each keeping its member's Lease and reporting on its MemberWorks as `continuum agent`
does, with a member cluster kept in memory.

What each simulated agent sends the hub is what the real agent sends:
- its Lease renewed by the agent's own `LeaseKeeper` (operator/agent/lease.py): a PUT at the
  resourceVersion it last wrote, built by `renewed`, with its report of the cluster in the
  annotation continuum.dev/agent-report, every `renew_s`; a process spreads its members'
  renewals evenly over the interval;
- each work planned with `plan_work` and its status built by `work_status`
  (reconcile/agent_work.py, which condenses each resource), server-side applied to the status
  subresource as field manager continuum-agent, when it says something new.

What differs, so that a thousand agents fit in a few processes on two cores:
- the member cluster is a dict per member: a RayJob is Running as soon as it is made, with the
  status e2e/kuberay_sim.py builds for Running;
- one list-and-watch of MemberWorks per process, across the cluster with the label selector
  `continuum.dev/member in (its members)`, instead of one per agent. The hub sends each work's
  events once either way; what a watch per agent would add is N - P idle watches (held
  connections and goroutines in the API server, bookmarks every minute or so) and, here, N
  threads and TLS connections in the simulator, whose CPU the operator under test would share;
- the admin's credential for every agent, not a token per member: a cross-namespace watch
  needs it, and the hub then authorizes each request at once, where a member's token goes
  through RBAC (its Role and ClusterRoleBinding; the ClusterRoleBindings are walked per
  request, so a thousand members add a thousand to walk).

The process reports to the benchmark over a multiprocessing queue: `Ready` once its watch is
synced and every one of its members has renewed once, `ShardRan` for each shard resource its
members made (when, on the machine's monotonic clock, which every process shares), `Stats` at
the end, `Failed` if it could not run. It stops when told, when its deadline passes, or when
the benchmark is gone.
"""

from __future__ import annotations

import heapq
import logging
import multiprocessing.queues
import multiprocessing.synchronize
import os
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

import continuum
from continuum.operator.adapters.member_gate import CONNECTION_ERRORS
from continuum.operator.adapters.store import identity
from continuum.operator.adapters.watchcache import WatchCache
from continuum.operator.adapters.workqueue import RetryLater, WorkQueue
from continuum.operator.agent.lease import LeaseKeeper
from continuum.operator.agent.runner import holder_identity
from continuum.operator.agent.works import APPLY_PATCH, FIELD_MANAGER, WORK_PLURAL
from continuum.operator.api import GROUP, VERSION, ResourceAmounts
from continuum.operator.api.join import MEMBER_LABEL
from continuum.operator.api.membercluster import AgentReport, AgentTiming
from continuum.operator.api.plans import ClusterPlan
from continuum.operator.api.validation import validate_as
from continuum.operator.api.work import MemberWork
from continuum.operator.reconcile.agent_work import (
    Outcome,
    as_created,
    key_of,
    needs_report,
    plan_work,
    work_status,
)
from continuum.operator.reconcile.handoff import shard_of
from e2e.kuberay_sim import Target, _ray_job_status, _ray_service_status

LOG = logging.getLogger("fleet-agents")
ALLOCATABLE = {"cpu": "8", "memory": "32Gi"}
"""What each simulated member reports it has: one Ready node of this size."""
REQUEST_TIMEOUT_S = 10.0
HUB_RETRY_S = 1.0
WAITING_RETRY_S = 1.0
POLL_S = 0.2
Manifest = dict[str, Any]
JobKey = tuple[str, str]
ResourceKey = tuple[str, str]


class Ready(NamedTuple):
    process: int
    members: int


class ShardRan(NamedTuple):
    """A shard resource made in a member: `ran_at` when it was made (and Running), `reported_at`
    when the hub took the work's status that says so (monotonic seconds)."""

    namespace: str
    job: str
    shard: int
    member: str
    ran_at: float
    reported_at: float


class Stats(NamedTuple):
    process: int
    renewals: int
    renewal_failures: int
    renewals_skipped: int
    """Renewals not started because the member's previous one was still in flight."""
    status_writes: int
    status_write_failures: int
    works_unreadable: int
    cpu_s: float
    seconds: float
    """How long the agents ran, from their start to their stop."""


class Failed(NamedTuple):
    process: int
    message: str


Message = Ready | ShardRan | Stats | Failed


@dataclass(frozen=True)
class FleetProcess:
    """What one process of simulated agents is told: `deadline` is on the monotonic clock."""

    index: int
    kubeconfig: str
    members: tuple[str, ...]
    renew_s: int
    lease_duration_s: int
    deadline: float
    processes: int = 1
    workers: int = 4


def member_cluster_id(member: str) -> str:
    """A cluster ID of its own for each simulated member: the hub refuses two members that
    report the same one."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{member}.fleet.continuum.dev"))


def made_running(manifest: Manifest) -> Manifest:
    """A shard resource as the member makes it, already Running as KubeRay would report it."""
    metadata = {**manifest["metadata"], "uid": str(uuid.uuid4()), "resourceVersion": "1",
                "generation": 1}  # fmt: skip
    resource = {**manifest, "metadata": metadata}
    build = _ray_job_status if resource["kind"] == "RayJob" else _ray_service_status
    status = build(resource, Target.RUNNING)
    if status is not None:
        resource["status"] = status
    return resource


def updated(desired: Manifest, observed: Manifest) -> Manifest:
    """A shard resource replaced by `desired`, keeping what the member gave it."""
    before = observed["metadata"]
    metadata = {**desired["metadata"], "uid": before.get("uid"),
                "resourceVersion": str(int(before.get("resourceVersion", "0")) + 1),
                "generation": int(before.get("generation", 1)) + 1}  # fmt: skip
    resource = {**desired, "metadata": metadata}
    if "status" in observed:
        resource["status"] = observed["status"]
    return resource


class MemberStore:
    """One simulated member cluster: its shard resources by job, then by (kind, name)."""

    def __init__(self) -> None:
        self._jobs: dict[JobKey, dict[ResourceKey, Manifest]] = {}

    def of_job(self, job: JobKey) -> list[Manifest]:
        return list(self._jobs.get(job, {}).values())

    def carry_out(self, job: JobKey, work: MemberWork, plan: ClusterPlan) -> list[int]:
        """Carries out the plan; returns the shards made."""
        held = self._jobs.setdefault(job, {})
        made = []
        for manifest in plan.create:
            resource = made_running(as_created(work, manifest))
            held[key_of(resource)] = resource
            made.append(shard_of(resource) or 0)
        for desired, observed in plan.update:
            held[key_of(desired)] = updated(desired, observed)
        for resource in plan.delete:
            held.pop(key_of(resource), None)
        if not held:
            self._jobs.pop(job, None)
        return made


class _Counter:
    def __init__(self) -> None:
        self._value = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self._value += 1

    @property
    def value(self) -> int:
        return self._value


def _client(kubeconfig: str, connections: int) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = connections
    return client.ApiClient(configuration)


class Fleet:
    """The agents of one process: their Leases, their works, their member stores."""

    def __init__(self, spec: FleetProcess, messages: multiprocessing.queues.Queue[Any]) -> None:
        self.spec, self.messages = spec, messages
        # Two small clients shared by every agent: the writes (a connection for each renewal
        # and each convergence thread), and the one long watch.
        self.hub = _client(spec.kubeconfig, 2 * spec.workers + 2)
        self.watch_hub = _client(spec.kubeconfig, 2)
        self.objects = client.CustomObjectsApi(self.hub)
        kubernetes_version = client.VersionApi(self.hub).get_code().git_version
        timing = AgentTiming(
            renew_interval_seconds=spec.renew_s, lease_duration_seconds=spec.lease_duration_s
        )
        self.keepers: dict[str, LeaseKeeper] = {}
        for member in spec.members:
            keeper = LeaseKeeper(self.hub, member, holder_identity(member))
            keeper.set_timing(timing)
            keeper.set_report(
                AgentReport(
                    version=continuum.__version__,
                    kubernetes_version=kubernetes_version,
                    cluster_id=member_cluster_id(member),
                    nodes=1,
                    nodes_ready=1,
                    allocatable=ResourceAmounts.model_validate(ALLOCATABLE),
                )
            )
            self.keepers[member] = keeper
        self.stores = {member: MemberStore() for member in spec.members}
        self.queue: WorkQueue[tuple[str, str]] = WorkQueue(
            f"fleet-{spec.index}", self._converge, spec.workers
        )
        selector = f"{MEMBER_LABEL} in ({','.join(spec.members)})"
        self.works = WatchCache(
            f"fleet-works-{spec.index}",
            client.CustomObjectsApi(self.watch_hub).list_cluster_custom_object,
            {"group": GROUP, "version": VERSION, "plural": WORK_PLURAL,
             "label_selector": selector},
            on_change=lambda event, body, before: (
                self.queue.add(identity(body)) if event != "DELETED" else None
            ),
        )  # fmt: skip
        self.renewer = ThreadPoolExecutor(spec.workers, thread_name_prefix="renew")
        self._renewing: set[str] = set()
        self._renewing_lock = threading.Lock()
        self._unreported: dict[tuple[str, JobKey], list[tuple[int, float]]] = {}
        self.renewals, self.renewal_failures = _Counter(), _Counter()
        self.renewals_skipped = _Counter()
        self.status_writes, self.status_write_failures = _Counter(), _Counter()
        self.works_unreadable = _Counter()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started_at = self._stopped_at = time.monotonic()

    # --- leases ---------------------------------------------------------------------------

    def _renew(self, member: str) -> None:
        try:
            if self.keepers[member].renew():
                self.renewals.add()
            else:
                self.renewal_failures.add()
        finally:
            with self._renewing_lock:
                self._renewing.discard(member)

    def _renew_all(self) -> None:
        """Renews each member every renew_s, the fleet's renewals spread evenly over the
        interval: this process's members are every `processes`-th of the fleet's, from its
        `index`-th (`split`)."""
        spec = self.spec
        slots, start = len(spec.members) * spec.processes, time.monotonic()
        due = [(start + (position * spec.processes + spec.index) * spec.renew_s / slots, member)
               for position, member in enumerate(spec.members)]  # fmt: skip
        heapq.heapify(due)
        while due:
            at, member = due[0]
            if self._stop.wait(max(0.0, at - time.monotonic())):
                return
            heapq.heapreplace(due, (at + self.spec.renew_s, member))
            with self._renewing_lock:
                if member in self._renewing:
                    self.renewals_skipped.add()
                    continue
                self._renewing.add(member)
            self.renewer.submit(self._renew, member)

    # --- works ----------------------------------------------------------------------------

    def _converge(self, key: tuple[str, str]) -> None:
        """One pass over one work, as the real agent's (`agent/convergence.py`), against the
        member's store."""
        synced = self.works.is_synced()
        body = self.works.get(key)
        if body is None:
            return
        work = validate_as(MemberWork, body)
        if isinstance(work, list):
            self.works_unreadable.add()
            return
        member = work.spec.member
        store = self.stores.get(member)
        if store is None:
            return
        job = (work.spec.job_ref.namespace, work.spec.job_ref.name)
        planned = plan_work(work, store.of_job(job), synced)
        made_at = time.monotonic()
        made = store.carry_out(job, work, planned.plan)
        if made:
            self._unreported.setdefault((member, job), []).extend((s, made_at) for s in made)
        status = work_status(work, store.of_job(job), Outcome(planned), datetime.now(UTC))
        if needs_report(work, status):
            try:
                written = self._apply_status(key, status.model_dump(mode="json",
                                                                    exclude_none=True))  # fmt: skip
            except (ApiException, *CONNECTION_ERRORS) as error:
                self.status_write_failures.add()
                LOG.info("reporting MemberWork %s/%s: %s", *key, error)
                raise RetryLater(HUB_RETRY_S) from None
            self.status_writes.add()
            if written is not None:
                self.works.store(written)
        reported_at = time.monotonic()
        for shard, ran_at in self._unreported.pop((member, job), []):
            self.messages.put(ShardRan(job[0], job[1], shard, member, ran_at, reported_at))
        if planned.deferred or (planned.kept and not synced):
            raise RetryLater(WAITING_RETRY_S)

    def _apply_status(self, key: tuple[str, str], status: Manifest) -> Manifest | None:
        namespace, name = key
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MemberWork",
                "metadata": {"name": name, "namespace": namespace}, "status": status}  # fmt: skip
        try:
            written: Any = self.objects.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, WORK_PLURAL, name, body,
                field_manager=FIELD_MANAGER, force=True, _content_type=APPLY_PATCH,
                _request_timeout=REQUEST_TIMEOUT_S,
            )  # fmt: skip
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return dict(written)

    # --- the process ----------------------------------------------------------------------

    def is_ready(self) -> bool:
        return self.works.is_synced() and all(
            keeper.last_renewed is not None for keeper in self.keepers.values()
        )

    def start(self) -> None:
        self._started_at = time.monotonic()
        self.queue.start()
        self.works.start()
        thread = threading.Thread(target=self._renew_all, name="renewals", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stopped_at = time.monotonic()
        self._stop.set()
        self.works.stop()
        self.queue.stop(5.0)
        self.renewer.shutdown(wait=True, cancel_futures=True)
        for thread in self._threads:
            thread.join(5.0)

    def stats(self) -> Stats:
        return Stats(
            self.spec.index, self.renewals.value, self.renewal_failures.value,
            self.renewals_skipped.value, self.status_writes.value,
            self.status_write_failures.value, self.works_unreadable.value, time.process_time(),
            self._stopped_at - self._started_at,
        )  # fmt: skip


def _parent_gone(parent: int) -> bool:
    return os.getppid() != parent


def run(
    spec: FleetProcess,
    messages: multiprocessing.queues.Queue[Any],
    stop: multiprocessing.synchronize.Event,
    parent: int,
) -> None:
    """The process: runs the agents until `stop` is set, the deadline passes or the benchmark
    (`parent`) is gone. Ctrl-C is the benchmark's to handle: it sets `stop`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING)
    try:
        fleet = Fleet(spec, messages)
    except Exception:
        messages.put(Failed(spec.index, traceback.format_exc(limit=5)))
        return
    fleet.start()
    try:
        announced = False
        while not stop.wait(POLL_S):
            if time.monotonic() > spec.deadline or _parent_gone(parent):
                break
            if not announced and fleet.is_ready():
                messages.put(Ready(spec.index, len(spec.members)))
                announced = True
    finally:
        fleet.stop()
        messages.put(fleet.stats())


def split(members: list[str], processes: int) -> list[tuple[str, ...]]:
    """The members dealt over `processes` processes, as evenly as they go."""
    return [tuple(members[index::processes]) for index in range(processes)]


def counts(messages: Mapping[int, Stats]) -> dict[str, float]:
    """The processes' stats added up, and the renewals per second they made while running."""
    fields = [name for name in Stats._fields if name not in ("process", "seconds")]
    totals = {name: round(sum(getattr(stats, name) for stats in messages.values()), 2)
              for name in fields}  # fmt: skip
    seconds = max((stats.seconds for stats in messages.values()), default=0.0)
    totals["seconds"] = round(seconds, 1)
    totals["renewals_per_s"] = round(totals["renewals"] / seconds, 2) if seconds else 0.0
    return totals
