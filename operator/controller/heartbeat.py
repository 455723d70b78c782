"""A member's heartbeat: what its probe (Push) or its agent's Lease (Pull) says of it, written
into its status, and what follows from a change (the scheduler woken, its jobs' passes asked).

Push members are probed by a Kopf timer each (handlers/members.py): a probe is a request that
may wait for its timeout, so each member has its own. A Pull member's heartbeat reads only
what the operator holds in memory (the Lease mirror), so one loop judges every Pull member
(`PullHeartbeats`): a fleet of a thousand costs one thread, not a thousand timers, and a member
whose Lease and MemberCluster did not change since the last look costs a dictionary lookup.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from continuum.operator.adapters import metrics
from continuum.operator.adapters.hub import HEARTBEAT_MANAGER
from continuum.operator.adapters.member_probe import probe_member
from continuum.operator.api import MemberCluster, MemberClusterStatus, Placement
from continuum.operator.api.keys import JobKey
from continuum.operator.api.membercluster import MemberMode
from continuum.operator.api.validation import FieldError, format_errors
from continuum.operator.controller.context import OperatorContext
from continuum.operator.controller.convergence import members_of
from continuum.operator.reconcile.eviction import eviction_held, eviction_status
from continuum.operator.reconcile.membership import (
    UNREACHABLE,
    by_cluster_id,
    duplicate_of,
    heartbeat_fields,
    invalid_status,
    probed_status,
)
from continuum.operator.reconcile.work import lease_probe, next_session, pull_status

LOG = logging.getLogger(__name__)
Body = Mapping[str, Any]


def is_pulled(body: Body) -> bool:
    """Whether a MemberCluster, valid or not, asks for Pull mode (the field is immutable)."""
    return (body.get("spec") or {}).get("mode") == MemberMode.PULL.value


def write_invalid(context: OperatorContext, body: Body, errors: Sequence[FieldError] | str) -> None:
    """The CRD took a spec the models refuse: said where the probe's answer would be."""
    message = errors if isinstance(errors, str) else format_errors(errors)
    metadata = body.get("metadata") or {}
    invalid = invalid_status(body.get("status"), metadata.get("generation"), message,
                             context.clock())  # fmt: skip
    context.hub.apply_member_status(metadata.get("name") or "", heartbeat_fields(invalid),
                                    HEARTBEAT_MANAGER)  # fmt: skip


def beat(
    context: OperatorContext,
    body: Body,
    member: MemberCluster,
    members: Sequence[MemberCluster],
    same_cluster: Mapping[str, Sequence[MemberCluster]] | None = None,
) -> None:
    """One heartbeat of `member` (`body` as read): probed if Push, judged from its Lease if
    Pull; its status written (a Pull member's only when it changed), and the scheduler and its
    jobs told when its readiness changes. `members`: every valid MemberCluster, as read;
    `same_cluster`, if given, the same by the cluster ID each reports (`by_cluster_id`)."""
    metrics.RECONCILES.labels("MemberCluster").inc()
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
        candidates = members if same_cluster is None else same_cluster.get(probe.cluster_id, ())
        probe = replace(probe, duplicate_of=duplicate_of(member, probe.cluster_id, candidates))
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
    status = eviction_status(member, status, members, context.config.eviction, now)
    # Its own fields only, by server-side apply: the signals loop writes Degraded, risk and
    # latencyToSites of the same status, which this body may hold older versions of. A Pull
    # member's status is written only when it changed (its heartbeat time does not, at every
    # renewal).
    fields = heartbeat_fields(status.to_dict())
    if not (pulled and before is not None and fields == heartbeat_fields(before.to_dict())):
        context.hub.apply_member_status(name, fields, HEARTBEAT_MANAGER)
    # A new session (which lets the agent resume what it fenced) reaches the member's works by
    # their jobs' passes, asked by the hub mirror once it holds the session (context.py).
    _report_failover(context, body, member, status)
    if _ready(before) != _ready(status):
        context.wake_scheduler.set()
        context.ask_jobs_on(name)
        # Back: its stale copies go. Evicted: a handoff from it ends, and its replacement
        # starts working.
        _ask_jobs_that_held_shards_on(context, name)


def _ready(status: MemberClusterStatus | None) -> tuple[str, str]:
    """Ready's status and reason: what the scheduler and the convergence act on."""
    conditions = status.conditions if status else []
    ready = next((c for c in conditions if c.type == "Ready"), None)
    return (ready.status.value, ready.reason) if ready else ("", "")


def _report_failover(
    context: OperatorContext, body: Body, member: MemberCluster, status: MemberClusterStatus
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


@dataclass(frozen=True)
class _Look:
    """What a Pull member's heartbeat was computed from: the same again gives the same status,
    so the member is not judged again. Only a member whose agent renews within its lease is
    skipped so; one that does not is judged at every tick, since its eviction's timing moves
    with the clock alone."""

    resource_version: str
    renew_time: str
    seen_at: float


class PullHeartbeats:
    """Judges every Pull member every `interval_s`, from the Lease mirror, in one thread."""

    def __init__(self, context: OperatorContext, interval_s: float) -> None:
        self._context = context
        self._interval_s = interval_s
        self._looked: dict[str, _Look] = {}

    def run(self) -> None:
        context = self._context
        while not context.stop.wait(self._interval_s):
            if not context.mirror.wait_synced(0):
                continue
            try:
                self.tick()
            except Exception:  # a failed tick is retried at the next: the loop must go on
                metrics.RECONCILE_ERRORS.labels("MemberCluster").inc()
                LOG.exception("the Pull members' heartbeat failed; retrying at the next tick")

    def tick(self) -> None:
        """One look at every Pull member; a member whose look fails is looked at again at the
        next tick, and does not stop the others."""
        context = self._context
        listed = context.mirror.list(MemberCluster)
        members: list[MemberCluster] = listed.valid
        valid = {member.metadata.name or "": member for member in members}
        same_cluster = by_cluster_id(members)
        seen: set[str] = set()
        for key, body in listed.raw.items():
            name = key[1]
            if not is_pulled(body):
                continue
            seen.add(name)
            member = valid.get(name)
            try:
                if member is None:
                    self._looked.pop(name, None)
                    write_invalid(context, body, listed.invalid.get(key, "not a MemberCluster"))
                    continue
                look = self._look(body, member)
                if look is not None and self._looked.get(name) == look:
                    continue
                beat(context, body, member, members, same_cluster)
                if look is not None:
                    self._looked[name] = look
                else:
                    self._looked.pop(name, None)
            except Exception:
                self._looked.pop(name, None)
                metrics.RECONCILE_ERRORS.labels("MemberCluster").inc()
                LOG.exception("the heartbeat of Pull member %s failed", name)
        for gone in set(self._looked) - seen:
            del self._looked[gone]

    def _look(self, body: Body, member: MemberCluster) -> _Look | None:
        """What this look at a Pull member rests on, if that is enough to skip the next look
        when it stays the same; None: judge it at every tick."""
        name = member.metadata.name or ""
        sighting = self._context.leases.sighting(name)
        age_s = self._context.leases.age_s(name)
        if sighting is None or age_s is None:
            return None
        if age_s > member.spec.timing.lease_duration_seconds:
            return None
        version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        return _Look(version, sighting.renew_time, sighting.seen_at)
