"""MemberCluster: probe the member through its kubeconfig Secret, write Reachable and Ready; on
deletion, take Continuum's shard resources out of it."""

from __future__ import annotations

import os
import threading
from datetime import datetime
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from continuum.operator.adapters import metrics
from continuum.operator.adapters.kube import describe_connection_error
from continuum.operator.adapters.member_gate import (
    CONNECTION_ERRORS,
    MemberUnavailableError,
)
from continuum.operator.adapters.member_writes import remove_all_shards
from continuum.operator.api import (
    GROUP,
    VERSION,
    MemberCluster,
    validate_resource,
)
from continuum.operator.api.membercluster import MemberMode
from continuum.operator.api.work import MemberWorkSpec
from continuum.operator.controller.context import OperatorContext
from continuum.operator.controller.heartbeat import PullHeartbeats, beat, is_pulled, write_invalid
from continuum.operator.reconcile.membership import (
    also_registered_as,
)
from continuum.operator.reconcile.work import is_emptied

PROBE_INTERVAL_ENV = "CONTINUUM_PROBE_INTERVAL_SECONDS"
PROBE_INTERVAL_S = float(os.environ.get(PROBE_INTERVAL_ENV) or 2.0)
"""Kopf fixes a timer's interval when the handler is registered, at import; `continuum
operator run --probe-interval` reaches it through the environment."""
# Annotation on a MemberCluster: "Orphan" leaves its shard resources in the member when it is
# deleted, rather than waiting until they are removed.
ON_DELETE_ANNOTATION = "continuum.dev/on-delete"
ORPHAN = "Orphan"
CLEANUP_RETRY_S = 10.0


# Sharp: every PROBE_INTERVAL_S from the start, not that long after each probe ends, so that a
# member that stops answering is declared failed after its failure threshold times the
# interval, however long each unanswered probe waits (its timeout is below the interval).
# A heartbeat that fails (the hub did not take its status) is tried again at the next interval,
# not after Kopf's default minute: a hub outage must not leave every member unjudged for a
# minute after it ends. Pull members have no timer each: one loop judges them all
# (controller/heartbeat.PullHeartbeats, started with the operator).
@kopf.timer(GROUP, VERSION, "memberclusters", interval=PROBE_INTERVAL_S, idle=0, sharp=True,
            backoff=PROBE_INTERVAL_S, when=lambda body, **_: not is_pulled(body))  # fmt: skip
def heartbeat(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    context: OperatorContext = memo.context
    member = validate_resource(body)
    if not isinstance(member, MemberCluster):
        metrics.RECONCILES.labels("MemberCluster").inc()
        write_invalid(context, body, member if isinstance(member, list) else "not a MemberCluster")
        return
    beat(context, body, member, context.member_clusters())


def start_pull_heartbeats(context: OperatorContext) -> threading.Thread:
    """The loop that judges every Pull member from its Lease, in a thread of its own."""
    loop = PullHeartbeats(context, PROBE_INTERVAL_S)
    thread = threading.Thread(target=loop.run, name="pull-heartbeats", daemon=True)
    thread.start()
    return thread


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
