"""The scheduling cycle: snapshot the store, decide, write Placements and job status.

The operator runs it over the hub's API server in one background thread, every
`cycle_interval_s` or as soon as a handler wakes it; the embedded demo runs it over its
in-process store. Each cycle reads everything afresh, so a crash or restart anywhere in it only
delays the next cycle's identical decision.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from continuum.operator.adapters import metrics
from continuum.operator.adapters.placement_writes import WriteRefusal
from continuum.operator.adapters.store import EventSink, Listed, ObjectStore, identity
from continuum.operator.api import MemberCluster, MLJob, Placement, PlacementSpec, Tenant
from continuum.operator.api.keys import JobKey
from continuum.operator.controller.status import write_status
from continuum.operator.reconcile.admission import (
    Refusal,
    refusal_of_spec,
    refused_status,
    tenant_refusal,
    tenant_status,
)
from continuum.operator.reconcile.memo import Memo
from continuum.operator.reconcile.network import (
    LATENCY_KEY,
    OVERRIDE_KEY,
    measured_rtts,
    merge_links,
)
from continuum.operator.reconcile.placement import (
    JobPlan,
    placements_by_job,
    plan_job,
    results_by_job,
    scheduling_status,
    suspended_status,
)
from continuum.operator.reconcile.snapshot import build_snapshot
from continuum.schedulers.loaders import FormatError, parse_latency
from continuum.schedulers.model import CycleResult, Link
from continuum.schedulers.policy import schedule

LOG = logging.getLogger(__name__)
# Concurrent writes of Placements and statuses: enough to hide request latency, few enough not
# to crowd the API server's priority-and-fairness queues.
WRITERS = 8
NETWORK_CONFIG_MAP = "continuum-network"
# Takes a job's new status (the job as read, and the status: the cycle's own part of it), and
# whether to ask for a pass now (else the Placement write asks).
StatusHandOver = Callable[[dict[str, Any], dict[str, Any], bool], None]


class PlacementWriteQueue(Protocol):
    """Writes Placements after the cycle returns (the operator's PlacementWrites)."""

    def submit(self, job: MLJob, spec: PlacementSpec, stored: Placement | None) -> None: ...

    def pending(self) -> Mapping[JobKey, Placement]:
        """Decisions not written yet, as the Placements they will be."""
        ...

    def refusal(self, job: MLJob) -> WriteRefusal | None:
        """Why the hub refused the job's last Placement write, until one is accepted."""
        ...


def _parse_links(data: Mapping[str, str], key: str) -> tuple[Link, ...]:
    text = data.get(key)
    if not text:
        return ()
    try:
        return parse_latency(text, f"ConfigMap {NETWORK_CONFIG_MAP} key {key}")
    except FormatError as error:
        LOG.warning("ignoring %s of the network ConfigMap: %s", key, error)
        return ()


def _links(
    store: ObjectStore, system_namespace: str, members: Sequence[MemberCluster]
) -> tuple[Link, ...]:
    """Site-to-site RTT and bandwidth: measured (the members' status.latencyToSites), the
    `continuum-network` ConfigMap's `latency.csv` for pairs not measured, its `override.csv`
    over both (`reconcile/network.py`), in the latency CSV format of the benchmarks. A bad
    file is logged and ignored."""
    data = store.config_map_data(system_namespace, NETWORK_CONFIG_MAP)
    return merge_links(
        _parse_links(data, LATENCY_KEY), measured_rtts(members), _parse_links(data, OVERRIDE_KEY)
    )


class NewStatus(NamedTuple):
    """A job's status after a cycle."""

    raw: dict[str, Any]
    """The job as read."""
    status: dict[str, Any]
    """The cycle's part of its status."""
    changed: bool
    """Whether it differs from the status read."""


def _new_status(raw: dict[str, Any], status: dict[str, Any]) -> NewStatus:
    return NewStatus(raw, status, raw.get("status") != status)


# A job's status after a cycle, and whether it differs from the status read, per job version
# and what the cycle meant for it: making and comparing the statuses of unchanged jobs again
# would cost a fifth of a cycle. The first `now` of an unchanged outcome stands.
_scheduled_statuses: Memo[tuple[dict[str, Any], bool]] = Memo()


def _remembered_status(
    job: MLJob, raw: dict[str, Any], outcome: Hashable, make: Callable[[], dict[str, Any]]
) -> NewStatus:
    """The status `make()` makes, once per version of the job (which fixes the status read)
    and `outcome` of the cycle."""
    version = raw.get("metadata", {}).get("resourceVersion")
    key = (job.metadata.uid, version, outcome) if job.metadata.uid and version else None
    status, changed = _scheduled_statuses.get(key, lambda: _new_status(raw, make())[1:])
    return NewStatus(raw, status, changed)


def _scheduled_status(
    job: MLJob, raw: dict[str, Any], plan: JobPlan, epoch: int | None, now: datetime
) -> NewStatus:
    return _remembered_status(
        job,
        raw,
        (plan.scheduled, plan.message, epoch),
        lambda: scheduling_status(job, plan, job.metadata.name or "", epoch, now).to_dict(),
    )


def _suspended_status(job: MLJob, raw: dict[str, Any], now: datetime) -> NewStatus:
    return _remembered_status(job, raw, "suspended", lambda: suspended_status(job, now).to_dict())


# A job's plan when the scheduler said nothing of it this cycle (most jobs, most cycles), per
# version of the job and of its Placement: without moves, a plan does not depend on `now`.
_unchanged_plans: Memo[JobPlan] = Memo()


def _plan(
    job: MLJob, previous: Placement | None, result: CycleResult, now: datetime, as_stored: bool
) -> JobPlan:
    """plan_job, made once per version for a job the result does not name. `as_stored`: the
    Placement is the stored version its metadata names (a decision not written yet keeps the
    metadata of the version it replaces)."""
    named = result.decisions or result.unschedulable or result.preemptions or result.migrations
    uid, generation = job.metadata.uid, job.metadata.generation
    placement = (previous.metadata.uid, previous.metadata.resource_version) if previous else None
    known = as_stored and uid and generation is not None and (placement is None or all(placement))
    key = None if named or not known else (uid, generation, placement)
    return _unchanged_plans.get(key, lambda: plan_job(job, previous, result, now))


def _write_tenant_statuses(store: ObjectStore, tenants: Listed[Tenant], now: datetime) -> None:
    """Each Tenant's Active condition, written when it changes (rarely: a spec edit)."""
    valid = {(tenant.metadata.namespace or "", tenant.metadata.name or ""): tenant
             for tenant in tenants.valid}  # fmt: skip
    for key, raw in tenants.raw.items():
        generation = raw.get("metadata", {}).get("generation")
        if (raw.get("status") or {}).get("observedGeneration") == generation and generation:
            continue  # written for this spec already; conditions change only with the spec
        status = tenant_status(raw.get("status"), generation, valid.get(key),
                               tenants.invalid.get(key, []), now).to_dict()  # fmt: skip
        if raw.get("status") == status:
            continue
        try:
            store.replace_status(Tenant, {**raw, "status": status})
        except Exception as error:  # a Tenant's status must not stop the jobs' cycle
            metrics.RECONCILE_ERRORS.labels("Tenant").inc()
            LOG.debug("could not write the status of Tenant %s: %s", key[1], error)


class _TenantRefusals:
    """tenant_refusal for one cycle's Tenants, once per (tenant, namespace) it is asked for:
    thousands of jobs name a few tenants from a few namespaces."""

    def __init__(self, tenants: Sequence[Tenant]) -> None:
        self._tenants = tenants
        self._known: dict[tuple[str, str | None], Refusal | None] = {}

    def of(self, job: MLJob) -> Refusal | None:
        asked = (job.spec.tenant, job.metadata.namespace)
        if asked not in self._known:
            self._known[asked] = tenant_refusal(job, self._tenants)
        return self._known[asked]


def _is_suspended(job: MLJob) -> bool:
    """spec.suspend, and neither being deleted nor finished: its status says Suspended."""
    return job.spec.suspend and job.metadata.deletion_timestamp is None and not job.is_finished


def _announce_moves(raw: dict[str, Any], plan: JobPlan, events: EventSink | None) -> None:
    """An Event on the job and the metric for each move the cycle decided."""
    for move in plan.moves:
        metrics.MIGRATIONS.labels(move.migration.reason.value).inc()
        if events is not None:
            events.record_event(raw, move.event_type, "ShardMigrating", move.message)


def run_cycle(
    store: ObjectStore,
    now: datetime,
    policy: str = "continuum",
    system_namespace: str = "continuum-system",
    events: EventSink | None = None,
    hand_over: StatusHandOver | None = None,
    placement_writes: PlacementWriteQueue | None = None,
) -> CycleResult:
    """One cycle; returns the scheduler's result, for callers that report on it. With
    `hand_over`, each job's new status goes to it (the operator's placement controller, which
    writes it together with its own part); with `placement_writes`, so do the new Placements;
    else each is written before the cycle returns."""
    started = time.perf_counter()
    members = store.list(MemberCluster).valid
    listed_tenants = store.list(Tenant)
    _write_tenant_statuses(store, listed_tenants, now)
    tenants = listed_tenants.valid
    jobs = store.list(MLJob)
    stored_placements = placements_by_job(store.list(Placement).valid)
    in_flight: Mapping[JobKey, Placement] = {}
    if placement_writes is not None:
        # Decided by an earlier cycle and not written yet: as good as written.
        in_flight = placements_by_job(list(placement_writes.pending().values()))
        stored_placements = {**stored_placements, **in_flight}

    # (the job as stored, its new status): written after the Placements, so that a decision
    # reaches the placement controller without waiting for the statuses of a whole cycle.
    statuses: list[NewStatus] = []
    for key, errors in jobs.invalid.items():
        raw = jobs.raw[key]
        refusal = refusal_of_spec(errors)
        generation = raw.get("metadata", {}).get("generation")
        status = refused_status(raw.get("status"), generation, refusal, now)
        statuses.append(_new_status(raw, status.to_dict()))

    # Each admitted job with its key, taken once: a cycle looks jobs up by key several times.
    admitted: list[tuple[JobKey, MLJob]] = []
    refusals = _TenantRefusals(tenants)
    for job in jobs.valid:
        wants_no_shards = job.wants_no_shards
        suspended = wants_no_shards and _is_suspended(job)
        if wants_no_shards and not suspended:
            continue
        problem = refusals.of(job)
        key = JobKey.of(job)
        raw = jobs.raw[key]
        if problem is not None:
            status = refused_status(raw.get("status"), job.metadata.generation, problem, now)
            statuses.append(_new_status(raw, status.to_dict()))
        elif suspended:
            statuses.append(_suspended_status(job, raw, now))
        else:
            admitted.append((key, job))

    # The admitted jobs' Placements. One left by an earlier job of the same name (deleted and
    # re-created before the garbage collector came by) is not this job's: it is replaced, and
    # its shards do not count.
    placements: dict[JobKey, Placement] = {}
    for key, job in admitted:
        placement = stored_placements.get(key)
        if placement is not None and placement.spec.job_ref.uid in (None, job.metadata.uid):
            placements[key] = placement
    snapshot = build_snapshot(
        members,
        tenants,
        [job for _, job in admitted],
        placements,
        _links(store, system_namespace, members),
        now.timestamp(),
        unwritten=in_flight.keys(),
    )
    result = schedule(snapshot, policy)

    placed = wanted = 0
    by_tenant: dict[str, list[int]] = {}
    new_placements: list[tuple[MLJob, PlacementSpec]] = []
    by_job = results_by_job(result)
    nothing = CycleResult(result.policy)
    for key, job in admitted:
        wanted += job.spec.shards.count
        previous = placements.get(key)
        plan = _plan(job, previous, by_job.get(key, nothing), now, key not in in_flight)
        refused = placement_writes.refusal(job) if placement_writes is not None else None
        if refused is not None:
            # Said until a write of its Placement is accepted: the writer retries after a
            # backoff, and a status that flipped on every try would be an Event every time.
            if plan.placement is not None and refused.may_retry:
                new_placements.append((job, plan.placement))
            plan = JobPlan(None, scheduled=False, message=refused.message, reason=refused.reason)
        elif plan.placement is not None:
            new_placements.append((job, plan.placement))
            _announce_moves(jobs.raw[key], plan, events)
        effective = plan.placement or (previous.spec if previous else None)
        epoch = effective.epoch if effective else None
        decided = len(effective.decisions) if effective else 0
        placed += decided
        tenant_shards = by_tenant.setdefault(job.spec.tenant, [0, 0])
        tenant_shards[0] += max(0, job.spec.shards.count - decided)
        tenant_shards[1] += decided
        raw = jobs.raw[key]
        statuses.append(_scheduled_status(job, raw, plan, epoch, now))

    def write_placement(item: tuple[MLJob, PlacementSpec]) -> None:
        job, spec = item
        store.write_placement(job, spec, stored_placements.get(JobKey.of(job)))

    def write_job_status(item: NewStatus) -> None:
        write_status(store, item.raw, item.status, events)

    if hand_over is not None:
        # Before the Placements are written: the pass a new Placement asks for then finds the
        # job's status waiting, and one pass does both.
        changed = [(item.raw, item.status) for item in statuses if item.changed]
        for raw, new_status in changed:
            hand_over(raw, new_status, False)
    if placement_writes is not None:
        for job, spec in new_placements:
            placement_writes.submit(job, spec, stored_placements.get(JobKey.of(job)))
    if placement_writes is None or hand_over is None:
        # Jobs are independent, so their writes go out concurrently.
        with ThreadPoolExecutor(max_workers=WRITERS) as pool:
            if placement_writes is None:
                list(pool.map(write_placement, new_placements))
            if hand_over is None:
                list(pool.map(write_job_status, statuses))
    if hand_over is not None:
        placed_now = {JobKey.of(job) for job, _ in new_placements}
        for raw, new_status in changed:
            if identity(raw) not in placed_now:
                hand_over(raw, new_status, True)
    pending = wanted - placed
    metrics.PENDING_SHARDS.set(pending)
    metrics.PLACED_SHARDS.set(placed)
    tenant_counts = {tenant: (counts[0], counts[1]) for tenant, counts in by_tenant.items()}
    metrics.show_tenant_shards(tenant_counts)
    metrics.CYCLE_SECONDS.observe(time.perf_counter() - started)
    return result
