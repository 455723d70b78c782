"""The scheduling cycle: snapshot the store, decide, write Placements and job status.

The operator runs it over the hub's API server in one background thread, every
`cycle_interval_s` or as soon as a handler wakes it; the embedded demo runs it over its
in-process store. Each cycle reads everything afresh, so a crash or restart anywhere in it only
delays the next cycle's identical decision.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from continuum.operator import metrics
from continuum.operator.adapters.store import EventSink, ObjectStore
from continuum.operator.api import MemberCluster, MLJob, MLJobStatus, Placement, Tenant
from continuum.operator.reconcile.admission import (
    refusal_of_spec,
    refused_status,
    tenant_refusal,
)
from continuum.operator.reconcile.placement import placements_by_job, plan_job, scheduling_status
from continuum.operator.reconcile.snapshot import build_snapshot, is_schedulable, job_key
from continuum.schedulers.loaders import FormatError, parse_latency
from continuum.schedulers.model import CycleResult, Link
from continuum.schedulers.policy import schedule

LOG = logging.getLogger(__name__)
LATENCY_KEY = "latency.csv"
# Concurrent writes of Placements and statuses: enough to hide request latency, few enough not
# to crowd the API server's priority-and-fairness queues.
WRITERS = 8
NETWORK_CONFIG_MAP = "continuum-network"


def _links(store: ObjectStore, system_namespace: str) -> tuple[Link, ...]:
    """Site-to-site RTT and bandwidth from the `continuum-network` ConfigMap, in the latency
    CSV format of the benchmarks. A bad file is logged and ignored: defaults apply."""
    data = store.config_map_data(system_namespace, NETWORK_CONFIG_MAP)
    text = data.get(LATENCY_KEY)
    if not text:
        return ()
    try:
        return parse_latency(text, f"ConfigMap {NETWORK_CONFIG_MAP} key {LATENCY_KEY}")
    except FormatError as error:
        LOG.warning("ignoring the network ConfigMap: %s", error)
        return ()


def _write_status(store: ObjectStore, raw: dict[str, Any], status: dict[str, Any]) -> None:
    if raw.get("status") == status:
        return
    store.replace_status(MLJob, {**raw, "status": status})


def _announce(events: EventSink | None, raw: dict[str, Any], status: MLJobStatus) -> None:
    """An Event when the job's Scheduled condition changes, not on every cycle."""
    if events is None:
        return
    conditions = raw.get("status", {}).get("conditions", [])
    before: dict[str, Any] = next((c for c in conditions if c.get("type") == "Scheduled"), {})
    after = next((c for c in status.conditions if c.type == "Scheduled"), None)
    if after is None:
        return
    if (before.get("status"), before.get("message")) == (after.status.value, after.message):
        return
    if after.status.value == "True":
        events.record_event(raw, "Normal", "Placed", after.message)
    else:
        events.record_event(raw, "Warning", "Unschedulable", after.message)


def run_cycle(
    store: ObjectStore,
    now: datetime,
    policy: str = "continuum",
    system_namespace: str = "continuum-system",
    events: EventSink | None = None,
) -> CycleResult:
    """One cycle; returns the scheduler's result, for callers that report on it."""
    started = time.perf_counter()
    members = store.list(MemberCluster).valid
    tenants = store.list(Tenant).valid
    jobs = store.list(MLJob)
    stored_placements = placements_by_job(store.list(Placement).valid)

    for identity, errors in jobs.invalid.items():
        raw = jobs.raw[identity]
        refusal = refusal_of_spec(errors)
        generation = raw.get("metadata", {}).get("generation")
        status = refused_status(raw.get("status"), generation, refusal, now)
        _write_status(store, raw, status.to_dict())

    admitted: list[MLJob] = []
    for job in jobs.valid:
        if not is_schedulable(job):
            continue
        problem = tenant_refusal(job, tenants)
        raw = jobs.raw[(job.metadata.namespace or "", job.metadata.name or "")]
        if problem is not None:
            status = refused_status(raw.get("status"), job.metadata.generation, problem, now)
            _write_status(store, raw, status.to_dict())
        else:
            admitted.append(job)

    # A Placement left by an earlier job of the same name (deleted and re-created before the
    # garbage collector came by) is not this job's: it is replaced, and its shards do not count.
    uids = {job_key(job): job.metadata.uid for job in admitted}
    placements = {
        key: placement
        for key, placement in stored_placements.items()
        if placement.spec.job_ref.uid in (None, uids.get(key))
    }
    snapshot = build_snapshot(
        members, tenants, admitted, placements, _links(store, system_namespace), now.timestamp()
    )
    result = schedule(snapshot, policy)

    def write(job: MLJob) -> int:
        """Writes one job's Placement and status; returns how many of its shards are placed.
        Jobs are independent, so their writes go out concurrently."""
        previous = placements.get(job_key(job))
        plan = plan_job(job, previous, result, now)
        if plan.placement is not None:
            store.write_placement(job, plan.placement, stored_placements.get(job_key(job)))
        effective = plan.placement or (previous.spec if previous else None)
        epoch = effective.epoch if effective else None
        status = scheduling_status(job, plan, job.metadata.name or "", epoch, now)
        raw = jobs.raw[(job.metadata.namespace or "", job.metadata.name or "")]
        _announce(events, raw, status)
        _write_status(store, raw, status.to_dict())
        return len(effective.decisions) if effective else 0

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        placed_per_job = list(pool.map(write, admitted))
    placed = sum(placed_per_job)
    pending = sum(job.spec.shards.count for job in admitted) - placed
    metrics.PENDING_SHARDS.set(pending)
    metrics.PLACED_SHARDS.set(placed)
    metrics.CYCLE_SECONDS.observe(time.perf_counter() - started)
    return result
