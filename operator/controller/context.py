"""What every handler shares: clients, the clock, settings, and the mirrors of what the hub
and the members hold. Built once at startup, kept in Kopf's memo; it holds no state that is
not also in an API server (the mirrors are rebuilt from them on every start)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from continuum.operator.adapters.event_queue import EventQueue
from continuum.operator.adapters.health import Health
from continuum.operator.adapters.hub import Hub
from continuum.operator.adapters.hub_mirror import HubMirror
from continuum.operator.adapters.kube import MEMBER_REQUEST_TIMEOUT_S, MemberClients
from continuum.operator.adapters.member_mirror import MemberMirrors, job_of
from continuum.operator.adapters.placement_writes import PlacementWrites
from continuum.operator.adapters.pull import LeaseMirror, WorkMirror
from continuum.operator.adapters.workqueue import WorkQueue
from continuum.operator.api import MemberCluster, MLJob, Placement, Resource, Tenant
from continuum.operator.api.keys import JobKey
from continuum.operator.api.membercluster import MemberMode
from continuum.operator.api.mljob import is_finished_phase
from continuum.operator.controller.scheduling import WRITERS
from continuum.operator.reconcile.eviction import EvictionPolicy
from continuum.operator.reconcile.membership import scheduled_view
from continuum.operator.reconcile.shards import ClusterOutcome
from continuum.operator.recovery.signals import SignalsConfig

SYSTEM_NAMESPACE = "continuum-system"
# On MLJobs, until every member is clean of the job's shards. Placements need none; one left
# with it by an older operator, whose Kopf handled Placements too, would keep its namespace
# from being deleted, so the placement controller takes it off.
FINALIZER = "continuum.dev/cleanup"
# A member that stops answering holds up to MAX_IN_FLIGHT (4) of these for one timeout (see
# adapters/member_gate.py). Twelve would leave the healthy members more of the lane then, but
# made a burst on 1.5 CPUs slower (Placement p99 1.4-2.2 s against 1.0-1.7 s, interleaved).
PLACEMENT_WORKERS = 8
STATUS_WORKERS = 6
# After a 409 the mirror needs a moment to bring the newer version.
CONFLICT_RETRY_S = 0.1
# How soon a status pass looks again while its job's new decision is still being converged.
CONVERGENCE_WAIT_S = 0.5
# How soon the cycle and the controller look again while a hub mirror is not in step.
HUB_SYNC_RETRY_S = 0.5
# A scheduling loop that has not turned for this long (or this many cycle intervals, if more)
# is stuck, and the liveness probe says so: every request it makes times out well before.
LOOP_STALL_S = 60.0
LOOP_STALL_INTERVALS = 5
# A settled job whose inputs did not change is passed over by the resync at least once in this
# many intervals (the safety net for a change no watch brought), not at every one.
RESYNC_SKIPS_AT_MOST = 10


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class OperatorConfig:
    system_namespace: str = SYSTEM_NAMESPACE
    cycle_interval_s: float = 2.0
    # every Placement converged again, and orphans swept, at least this often
    resync_interval_s: float = 30.0
    policy: str = "continuum"
    # 0: no admission webhook; the reconcile still refuses what it would have refused.
    webhook_port: int = 0
    # Where member kubeconfig Secrets may be read (empty: the system namespace only).
    secret_namespaces: tuple[str, ...] = ()
    # exec plugin commands a member kubeconfig may run (none: every exec plugin is refused).
    allowed_exec_commands: tuple[str, ...] = ()
    member_timeout_s: float = MEMBER_REQUEST_TIMEOUT_S
    # How long a deleted MemberCluster that cannot be reached waits before its shard resources
    # are left in it.
    member_cleanup_timeout_s: float = 600.0
    # How long the old copy of a shard moved make-before-break (Proactive, Rebalance) waits for
    # its replacement to run before it is removed regardless (reconcile/handoff.py).
    handoff_timeout_s: float = 120.0
    # How long the old copy is given, once its replacement runs, to report a last checkpoint.
    drain_timeout_s: float = 30.0
    # The only namespaces whose jobs it handles, in the hub and in the members; empty: all.
    namespaces: tuple[str, ...] = ()
    # Where the link signals are read (docs/monitoring.md); empty: no signals loop, and the
    # scheduler's network is the continuum-network ConfigMap alone.
    prometheus_url: str = field(default="", repr=False)
    prometheus_timeout_s: float = 5.0
    signals_interval_s: float = 2.0
    signals: SignalsConfig = field(default_factory=SignalsConfig)
    # Reactive recovery (docs/operator.md): each probe's request timeout (below the probe
    # interval), the probes missed in a row that declare a member failed, and when a failed
    # member's shards are moved (reconcile/eviction.py).
    probe_timeout_s: float = 1.5
    failure_threshold: int = 3
    eviction: EvictionPolicy = field(default_factory=EvictionPolicy)


@dataclass(frozen=True)
class Convergence:
    """What one convergence of a job found in the members, for the status lane to report, and
    for which job and which version of its Placement's decisions."""

    job_uid: str | None
    placement_version: tuple[str | None, int | None]
    outcomes: Mapping[str, ClusterOutcome]

    @staticmethod
    def version_of(placement: Placement) -> tuple[str | None, int | None]:
        return (placement.metadata.uid, placement.metadata.generation)

    def matches(self, job: MLJob, placement: Placement) -> bool:
        return self.job_uid == job.metadata.uid and self.placement_version == self.version_of(
            placement
        )


@dataclass(frozen=True)
class MemberIndex:
    """The valid MemberClusters as of one change count of their mirror."""

    changes: Hashable
    by_name: Mapping[str, MemberCluster]
    pushed: Sequence[MemberCluster]


@dataclass
class OperatorContext:
    hub_api: client.ApiClient
    config: OperatorConfig = field(default_factory=OperatorConfig)
    clock: Callable[[], datetime] = utc_now
    # Set by any handler that saw a change the scheduler should act on now, not at the next tick.
    wake_scheduler: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.hub = Hub(self.hub_api)
        self.mirror = HubMirror(
            self.hub, on_change=self._hub_changed, namespaces=self.config.namespaces
        )
        self.events = EventQueue(self.hub.record_event)
        self.placement_writes = PlacementWrites(
            self.mirror, on_lost=self.wake_scheduler.set, writers=WRITERS
        )
        self.members = MemberClients(
            self.hub_api,
            secret_namespaces=self.config.secret_namespaces or (self.config.system_namespace,),
            allowed_exec_commands=self.config.allowed_exec_commands,
            timeout_s=self.config.member_timeout_s,
        )
        self.member_mirrors = MemberMirrors(
            on_change=self._member_changed, namespaces=self.config.namespaces
        )
        # Pull members: the work written for their agents and their reports, and their Leases.
        self.works = WorkMirror(
            self.hub_api, on_change=lambda namespace, name: self._ask_placement(
                JobKey(namespace, name)
            )
        )  # fmt: skip
        self.leases = LeaseMirror(self.hub_api)
        self.health = Health(max(LOOP_STALL_S, LOOP_STALL_INTERVALS * self.config.cycle_interval_s))
        # The placement controller's two lanes, by job key (namespace, name), set when it
        # starts: `placements` converges the members, which is what a new Placement's shards
        # wait for; `statuses` then writes Placement and MLJob status to the hub. Status writes
        # queue up in a burst, and so must not hold back the next job's shards.
        self.placements: WorkQueue[JobKey] | None = None
        self.statuses: WorkQueue[JobKey] | None = None
        # The last convergence of each job, from the first lane to the second. Derived, not a
        # record: after a start, every job is converged again before its status is written.
        self._converged: dict[JobKey, Convergence] = {}
        # The scheduling cycle's newest status for each job, until the placement controller,
        # the one writer of MLJob status, has written it with its own part. A hand-off, not a
        # record: a restarted operator's first cycle computes them all again.
        self._handed: dict[JobKey, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._member_index: MemberIndex | None = None
        # The inputs of each job's last pass that settled it, and when: a resync passes over
        # the job again only when they changed, or after RESYNC_SKIPS_AT_MOST intervals.
        # Derived, not a record: a restarted operator passes over every job.
        self._passed: dict[JobKey, tuple[Hashable, datetime]] = {}

    def hand_over_status(self, raw: dict[str, Any], status: dict[str, Any], ask: bool) -> None:
        key = JobKey.of_body(raw)
        with self._lock:
            self._handed[key] = (raw, status)
        if ask:
            self.ask_status(key)

    def take_handed_status(self, key: JobKey) -> tuple[dict[str, Any], dict[str, Any]] | None:
        with self._lock:
            return self._handed.pop(key, None)

    def give_back_handed_status(
        self, key: JobKey, handed: tuple[dict[str, Any], dict[str, Any]]
    ) -> None:
        """After a pass that could not write it: kept, unless the cycle has a newer one."""
        with self._lock:
            self._handed.setdefault(key, handed)

    def job_inputs(self, key: JobKey) -> Hashable:
        """What a convergence pass over the job reads from the hub, by version: the job, its
        Placement and its MemberWorks (the Pull members' side). Push members' objects are not in
        it: a change there comes through their mirrors as a pass of its own."""
        versions = []
        for kind in (MLJob, Placement):
            metadata = (self.mirror.get(kind, key) or {}).get("metadata") or {}
            versions.append((metadata.get("uid"), metadata.get("resourceVersion")))
        by_name = self.member_index().by_name
        # Each work's version, and its member's session: a new session is written into the
        # works by the job's next pass (its agent resumes what it fenced only then).
        works = sorted(
            (member, work.get("metadata", {}).get("resourceVersion"), _session_of(by_name, member))
            for member in self.works.members_with_work(key.namespace, key.name)
            if (work := self.works.work(member, key.namespace, key.name)) is not None
        )
        return (tuple(versions), tuple(works))

    def record_pass(self, key: JobKey, inputs: Hashable, settled: bool) -> None:
        """The inputs a pass over the job read (before it read them), once it converged every
        member it concerns (`settled`); forgotten otherwise, so the next resync passes it."""
        with self._lock:
            if settled:
                self._passed[key] = (inputs, self.clock())
            else:
                self._passed.pop(key, None)

    def needs_resync(self, key: JobKey) -> bool:
        """Whether the resync should pass over the job: unless its last pass settled it on the
        inputs it still has, within the last RESYNC_SKIPS_AT_MOST resync intervals. A fleet's
        thousands of settled jobs are then passed over in full only that often."""
        with self._lock:
            passed = self._passed.get(key)
        if passed is None:
            return True
        inputs, at = passed
        every_s = RESYNC_SKIPS_AT_MOST * self.config.resync_interval_s
        return inputs != self.job_inputs(key) or (self.clock() - at).total_seconds() >= every_s

    def record_convergence(self, key: JobKey, convergence: Convergence) -> None:
        with self._lock:
            self._converged[key] = convergence

    def convergence_of(self, key: JobKey) -> Convergence | None:
        with self._lock:
            return self._converged.get(key)

    def forget_job(self, key: JobKey) -> None:
        """What the controller held for a job that is gone."""
        with self._lock:
            self._converged.pop(key, None)
            self._handed.pop(key, None)
            self._passed.pop(key, None)

    def ask_status(self, key: JobKey) -> None:
        if self.statuses is not None and key.name:
            self.statuses.add(key)

    def ask_jobs_on(self, member: str) -> None:
        """A pass for every job whose Placement names `member`: it stopped or started
        answering, and what their status says of their shards there changes with it."""
        for key, body in self.mirror.list(Placement).raw.items():
            decisions = (body.get("spec") or {}).get("decisions") or []
            if any(decision.get("cluster") == member for decision in decisions):
                self._ask_placement(JobKey(*key))

    def member_states(self) -> list[str]:
        """One line per member, for /readyz?verbose: whether it answers, and if not, why and
        for how long its work has been skipped."""
        lines = []
        for member in self.member_clusters():
            name = member.metadata.name or ""
            state = self.members.gate(name).state
            if state.answering:
                lines.append(f"[+]member {name} answering")
            else:
                stuck_s = self.members.gate(name).clock() - state.since
                lines.append(f"[-]member {name} not answering for {stuck_s:.0f} s ({state.why}); "
                             "its work is skipped until a probe gets an answer")  # fmt: skip
        return lines

    def readiness_problems(self) -> list[str]:
        """Why the operator does not act on a full view yet (see `health`); none once it does."""
        if not self.mirror.wait_synced(0):
            return ["the hub's objects are not all listed"]
        if not self.health.has_turned():
            return ["the scheduling loop has not started"]
        problems = []
        for member in self.member_clusters():
            name = member.metadata.name or ""
            reachable = self.health.last_probe(name)
            if reachable is None:
                problems.append(f"member {name} has not been probed yet")
            elif reachable and not self.member_mirrors.is_synced(name):
                problems.append(f"member {name}'s shard resources are not all listed")
        return problems

    def member_clusters(self) -> list[MemberCluster]:
        members: list[MemberCluster] = self.mirror.list(MemberCluster).valid
        return members

    def member_index(self) -> MemberIndex:
        """The valid members by name, and the Push ones, made again only when the mirror of
        MemberClusters changed: a job's pass over a fleet of Pull members looks up the few it
        concerns rather than scanning them all."""
        changes = self.mirror.caches[MemberCluster].changes()
        with self._lock:
            index = self._member_index
        if index is None or index.changes != changes:
            members = self.member_clusters()
            index = MemberIndex(
                changes,
                {member.metadata.name or "": member for member in members},
                [member for member in members if member.spec.mode != MemberMode.PULL],
            )
            with self._lock:
                self._member_index = index
        return index

    def _ask_placement(self, key: JobKey) -> None:
        if self.placements is not None and key.name:
            self.placements.add(key)

    def _hub_changed(
        self, kind: type[Resource], event: str, body: dict[str, Any], before: dict[str, Any] | None
    ) -> None:
        """Turns the hub's changes into work: the scheduler for what it decides on, the
        placement controller for what it converges, and a job's deletion once it starts. A
        Placement has its job's name. A change of status alone (most of them, and mostly the
        operator's own) asks for neither, unless it finishes a job, whose capacity is then
        free. Nor does a Placement written, since the scheduler wrote it; one deleted does
        (its shards' capacity). Anything else waits for the next tick."""
        metadata = body.get("metadata", {})
        spec_changed = event != "MODIFIED" or _generation(before) != _generation(body)
        deletion_started = kind is MLJob and _deleting(body) and not _deleting(before)
        if (
            (kind is Placement and FINALIZER in (metadata.get("finalizers") or []))
            or (kind in (Placement, MLJob) and spec_changed)
            or deletion_started
        ):
            self._ask_placement(JobKey.of_body(body))
        if kind is MemberCluster and _session(body) != _session(before):
            # A Pull member's new session goes into its works by their jobs' passes: asked
            # here, once the mirror holds it, so that no pass reads the session before it.
            self.ask_jobs_on(metadata.get("name") or "")
        if (
            kind is Tenant
            or (kind is MemberCluster and scheduled_view(body) != scheduled_view(before))
            or (kind is Placement and event == "DELETED")
            or (
                kind is MLJob
                and (spec_changed or deletion_started or _finished(body) != _finished(before))
            )
        ):
            self.wake_scheduler.set()

    def _member_changed(self, member: str, event: str, body: dict[str, Any]) -> None:
        self._ask_placement(job_of(body))


def _session(body: dict[str, Any] | None) -> Any:
    return ((body or {}).get("status") or {}).get("sessionEpoch")


def _session_of(members: Mapping[str, MemberCluster], name: str) -> int | None:
    member = members.get(name)
    return member.status.session_epoch if member is not None and member.status else None


def _generation(body: dict[str, Any] | None) -> Any:
    return (body or {}).get("metadata", {}).get("generation")


def _deleting(body: dict[str, Any] | None) -> bool:
    return "deletionTimestamp" in (body or {}).get("metadata", {})


def _finished(body: dict[str, Any] | None) -> bool:
    return is_finished_phase(((body or {}).get("status") or {}).get("phase"))
