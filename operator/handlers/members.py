"""MemberCluster: probe the member through its kubeconfig Secret, write Reachable and Ready; on
deletion, take Continuum's shard resources out of it."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from continuum.operator.adapters import metrics
from continuum.operator.adapters.hub import HEARTBEAT_MANAGER
from continuum.operator.adapters.kube import describe_connection_error
from continuum.operator.adapters.member_gate import (
    CONNECTION_ERRORS,
    MemberUnavailableError,
)
from continuum.operator.adapters.member_probe import probe_member
from continuum.operator.adapters.member_writes import remove_all_shards
from continuum.operator.api import (
    GROUP,
    VERSION,
    MemberCluster,
    MemberClusterStatus,
    Placement,
    validate_resource,
)
from continuum.operator.api.keys import JobKey
from continuum.operator.api.membercluster import MemberMode
from continuum.operator.api.validation import format_errors
from continuum.operator.api.work import MemberWorkSpec
from continuum.operator.controller.context import OperatorContext
from continuum.operator.controller.convergence import members_of
from continuum.operator.reconcile.eviction import eviction_held, eviction_status
from continuum.operator.reconcile.membership import (
    UNREACHABLE,
    also_registered_as,
    duplicate_of,
    heartbeat_fields,
    invalid_status,
    probed_status,
)
from continuum.operator.reconcile.work import is_emptied, lease_probe, next_session, pull_status

PROBE_INTERVAL_ENV = "CONTINUUM_PROBE_INTERVAL_SECONDS"
PROBE_INTERVAL_S = float(os.environ.get(PROBE_INTERVAL_ENV) or 2.0)
"""Kopf fixes a timer's interval when the handler is registered, at import; `continuum
operator run --probe-interval` reaches it through the environment."""
# Annotation on a MemberCluster: "Orphan" leaves its shard resources in the member when it is
# deleted, rather than waiting until they are removed.
ON_DELETE_ANNOTATION = "continuum.dev/on-delete"
ORPHAN = "Orphan"
CLEANUP_RETRY_S = 10.0


def _ready(status: MemberClusterStatus | None) -> tuple[str, str]:
    """Ready's status and reason: what the scheduler and the convergence act on."""
    conditions = status.conditions if status else []
    ready = next((c for c in conditions if c.type == "Ready"), None)
    return (ready.status.value, ready.reason) if ready else ("", "")


# Sharp: every PROBE_INTERVAL_S from the start, not that long after each probe ends, so that a
# member that stops answering is declared failed after its failure threshold times the
# interval, however long each unanswered probe waits (its timeout is below the interval).
# A heartbeat that fails (the hub did not take its status) is tried again at the next interval,
# not after Kopf's default minute: a hub outage must not leave every member unjudged for a
# minute after it ends.
@kopf.timer(GROUP, VERSION, "memberclusters", interval=PROBE_INTERVAL_S, idle=0, sharp=True,
            backoff=PROBE_INTERVAL_S)  # fmt: skip
def heartbeat(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    context: OperatorContext = memo.context
    metrics.RECONCILES.labels("MemberCluster").inc()
    member = validate_resource(body)
    if not isinstance(member, MemberCluster):
        # The CRD took a spec the models refuse: say so where the probe's answer would be.
        errors = format_errors(member) if isinstance(member, list) else "not a MemberCluster"
        invalid = invalid_status(body.get("status"), body.metadata.get("generation"), errors,
                                context.clock())  # fmt: skip
        context.hub.apply_member_status(body.metadata.name or "", heartbeat_fields(invalid),
                                        HEARTBEAT_MANAGER)  # fmt: skip
        return
    name = member.metadata.name or ""
    before = member.status
    pulled = member.spec.mode == MemberMode.PULL
    heartbeat_at, report = None, None
    if pulled:
        context.member_mirrors.follow_pulled(name, context.works)
        sighting = context.leases.sighting(name)
        report = sighting.report if sighting is not None else None
        probe, heartbeat_at = lease_probe(
            member, context.leases.age_s(name), report, context.clock()
        )
    else:
        probe = probe_member(context.members, member, context.config.probe_timeout_s)
    if probe.cluster_id is not None:
        others = context.member_clusters()
        probe = replace(probe, duplicate_of=duplicate_of(member, probe.cluster_id, others))
    usable = probe.answered and probe.duplicate_of is None
    if usable and not pulled:
        # Mirrored from the first answer on, so that the first shards sent there find it listed.
        context.member_mirrors.follow(name, context.members.for_member(member).ungated)
    context.health.probed(name, usable)
    metrics.MEMBER_ANSWERING.labels(name).set(1 if probe.answered else 0)
    now = context.clock()
    # A Pull member's lease has its own grace: it fails when the lease expires.
    threshold = 1 if pulled else context.config.failure_threshold
    status = probed_status(member, probe, now, threshold)
    session = None
    if pulled:
        # The renewal the hub saw, not this tick: the eviction's grace counts from it.
        status = pull_status(before, status, member, heartbeat_at, probe.answered, report)
        awaiting = report.awaiting_session if report is not None else None
        session = next_session(member, probe.answered, awaiting)
        if session is not None:
            status = status.model_copy(update={"session_epoch": session})
    status = eviction_status(member, status, context.member_clusters(), context.config.eviction,
                             now)  # fmt: skip
    # Its own fields only, by server-side apply: the signals loop writes Degraded, risk and
    # latencyToSites of the same status, which this body may hold older versions of. A Pull
    # member's status is written only when it changed (its heartbeat time does not, at every
    # renewal).
    fields = heartbeat_fields(status.to_dict())
    if not (pulled and before is not None and fields == heartbeat_fields(before.to_dict())):
        context.hub.apply_member_status(name, fields, HEARTBEAT_MANAGER)
    _report_failover(context, body, member, status)
    if session is not None:
        # A new session lets the agent resume what it fenced: the member's works carry it once
        # their jobs' next passes write it.
        context.ask_jobs_on(name)
    if _ready(before) != _ready(status):
        context.wake_scheduler.set()
        context.ask_jobs_on(name)
        # Back: its stale copies go. Evicted: a handoff from it ends, and its replacement
        # starts working.
        _ask_jobs_that_held_shards_on(context, name)


def _report_failover(
    context: OperatorContext, body: kopf.Body, member: MemberCluster, status: MemberClusterStatus
) -> None:
    """Metrics always; an Event when the member is declared failed, or what is decided about
    its shards changes (evicted, or held and why)."""
    name = member.metadata.name or ""
    after = member.model_copy(update={"status": status})
    held = eviction_held(after)
    metrics.MEMBER_MISSED_PROBES.labels(name).set(status.missed_probes or 0)
    metrics.MEMBER_EVICTION_HELD.labels(name).set(1 if held else 0)
    state, reason = _ready(status)
    if _ready(member.status) == (state, reason):
        return
    ready = next(c for c in status.conditions if c.type == "Ready")
    if held is not None:
        metrics.MEMBER_FAILOVERS.labels(held.value).inc()
        context.events.record_event(body, "Warning", held.value,
                                    f"{name} does not answer; {ready.message}")  # fmt: skip
    elif state == "False" and reason == UNREACHABLE and _answered_once(member):
        metrics.MEMBER_FAILOVERS.labels("Evicted").inc()
        context.events.record_event(body, "Warning", "MemberFailed",
                                    f"{name} does not answer ({ready.message}); its shards are "
                                    "placed elsewhere")  # fmt: skip


def _answered_once(member: MemberCluster) -> bool:
    return member.status is not None and member.status.last_heartbeat_time is not None


def _ask_jobs_that_held_shards_on(context: OperatorContext, name: str) -> None:
    """A member that answers again may still run shards that were moved off it while it did
    not (the hub cannot fence it): a pass for every job whose Placement ever sent a shard
    there deletes them now rather than at the next resync."""
    if context.placements is None:
        return
    for placement in context.mirror.list(Placement).valid:
        if name in members_of(placement):
            context.placements.add(JobKey.of_placement(placement))


@kopf.on.delete(GROUP, VERSION, "memberclusters")
def release_member(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Takes every shard resource Continuum made out of the member before the MemberCluster
    goes, so that nothing keeps running there unseen; the scheduler has moved its shards away
    since the deletion began. A member that cannot be reached holds the deletion for
    `member_cleanup_timeout_s`, after which (or at once, with the annotation
    continuum.dev/on-delete: Orphan) its shard resources are left there, with a Warning Event."""
    context: OperatorContext = memo.context
    member = validate_resource(body)
    if not isinstance(member, MemberCluster):
        return  # never valid, so never probed nor given shards
    name = member.metadata.name or ""
    annotations = member.metadata.annotations or {}
    if member.status is None or member.status.last_heartbeat_time is None:
        # It never answered a probe, so it was never offered to the scheduler: nothing of
        # Continuum's can be in it.
        context.member_mirrors.retain(_others(context, name))
        return
    if annotations.get(ON_DELETE_ANNOTATION) == ORPHAN:
        context.events.record_event(body, "Warning", "ShardsOrphaned",
                                    f"{ON_DELETE_ANNOTATION}: {ORPHAN}: the shard resources in "
                                    f"{name} are left there")  # fmt: skip
        context.member_mirrors.retain(_others(context, name))
        return
    kept_by = also_registered_as(member, context.member_clusters())
    if kept_by is not None:
        context.events.record_event(body, "Normal", "ClusterStillRegistered",
                                    f"MemberCluster {kept_by} registers the same cluster; the "
                                    "shard resources in it stay")  # fmt: skip
        context.member_mirrors.retain(_others(context, name))
        return
    removed, why = _remove_shards(context, member)
    if why is None:
        context.events.record_event(body, "Normal", "CleanedUp",
                                    f"removed {removed} shard resources from {name}")  # fmt: skip
    else:
        waited_s = _seconds_since(member.metadata.deletion_timestamp, context.clock())
        if waited_s < context.config.member_cleanup_timeout_s:
            raise kopf.TemporaryError(
                f"cannot remove the shard resources from {name} yet: {why}", delay=CLEANUP_RETRY_S
            )
        context.events.record_event(body, "Warning", "ShardsOrphaned",
                                    f"{name} could not be reached for {waited_s:.0f} s ({why}); "
                                    "its shard resources are left there")  # fmt: skip
    context.member_mirrors.retain(_others(context, name))


def _remove_shards(context: OperatorContext, member: MemberCluster) -> tuple[int, str | None]:
    """How many shard resources were removed, or why they could not be."""
    name = member.metadata.name or ""
    if member.spec.mode == MemberMode.PULL:
        return _empty_works(context, name)
    try:
        return remove_all_shards(context.members.for_member(member)), None
    except MemberUnavailableError as error:
        return 0, error.message
    except ApiException as error:
        return 0, context.members.redact(name, f"HTTP {error.status}: {error.reason}")
    except CONNECTION_ERRORS as error:
        return 0, describe_connection_error(error)


def _empty_works(context: OperatorContext, name: str) -> tuple[int, str | None]:
    """A Pull member's works emptied, for its agent to remove their resources, and deleted
    once it says the member holds none; until then, why not yet."""
    waiting = 0
    removed = 0
    for work in context.works.of_member(name):
        spec = MemberWorkSpec.model_validate(work["spec"])
        if spec.resources:
            context.works.write({**work, "spec": spec.model_copy(update={"resources": []})
                                 .to_dict()}, work)  # fmt: skip
            waiting += 1
        elif is_emptied(work):
            removed += 1
            context.works.delete(work)
        else:
            waiting += 1
    if waiting:
        return removed, f"its agent has not yet removed the shard resources of {waiting} jobs"
    return removed, None


def _others(context: OperatorContext, name: str) -> set[str]:
    return {other.metadata.name or "" for other in context.member_clusters()} - {name}


def _seconds_since(timestamp: str | None, now: datetime) -> float:
    if not timestamp:
        return 0.0
    return (now - datetime.fromisoformat(timestamp.replace("Z", "+00:00"))).total_seconds()
