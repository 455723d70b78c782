"""Fencing on a Pull member, pure: when the agent stops the shards that must not run twice, which
ones, and when one it stopped may run again.

An agent that has not renewed its lease for fenceAfterSeconds cannot know whether the hub has
given up on it; the hub moves its shards only after the lease, that time and a margin, so by
then the agent has stopped them (`spec.suspend` on the RayJob, which KubeRay honours by taking
its Ray cluster down) and the two copies never run at once. What it stopped is marked with the
session epoch of its work. It runs again only under work of a later session: the hub writes
one once it has seen the agent back and has written any move decided meanwhile, so a stopped
shard either resumes where it was or goes, never both.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from continuum.operator.api.membercluster import AgentTiming
from continuum.operator.api.mljob import DisconnectAction
from continuum.operator.api.plans import ClusterPlan
from continuum.operator.api.shard_resources import RAY_JOB, SHARD_LABELS
from continuum.operator.api.work import MemberWork

Manifest = dict[str, Any]
ResourceKey = tuple[str, str]
ENDED = frozenset({"Complete", "Failed"})


def _key(resource: Mapping[str, Any]) -> ResourceKey:
    return str(resource.get("kind")), str((resource.get("metadata") or {}).get("name"))


def fence_due(since_renewal_s: float | None, running_s: float, timing: AgentTiming) -> bool:
    """Whether the agent must fence now: its last renewal is fenceAfterSeconds old, or it has
    never renewed since it started and a renew interval has passed (a restarted agent cannot
    tell how long the hub has gone without hearing from it)."""
    if since_renewal_s is None:
        return running_s >= timing.renew_interval_seconds
    return since_renewal_s >= timing.fence_after_seconds


def fenced_session(resource: Mapping[str, Any]) -> int | None:
    """The session a fenced resource was fenced under; None when it is not fenced."""
    annotations = (resource.get("metadata") or {}).get("annotations") or {}
    text = annotations.get(SHARD_LABELS.fenced_session_annotation)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return 0  # marked, but not by a session: any later session lets it run


def to_fence(
    held: Sequence[Manifest], actions: Mapping[ResourceKey, DisconnectAction]
) -> list[Manifest]:
    """The resources to fence now: RayJobs not fenced yet and not ended whose work says Fence,
    or that no work the agent knows lists (a RayJob is a job that must not run twice unless
    its work says otherwise). RayServices serve through a disconnection."""
    return [
        resource
        for resource in held
        if resource.get("kind") == RAY_JOB.kind
        and fenced_session(resource) is None
        and (resource.get("status") or {}).get("jobDeploymentStatus") not in ENDED
        and actions.get(_key(resource), DisconnectAction.FENCE) == DisconnectAction.FENCE
    ]


def fenced(resource: Manifest, session: int) -> Manifest:
    """The resource as the agent writes it to fence it: suspended, marked with the session."""
    body = copy.deepcopy(resource)
    body.setdefault("spec", {})["suspend"] = True
    annotations = body.setdefault("metadata", {}).setdefault("annotations", {})
    annotations[SHARD_LABELS.fenced_session_annotation] = str(session)
    return body


def resumable(resource: Mapping[str, Any], work: MemberWork) -> bool:
    """Whether a fenced resource may run again: its work, of a later session than it was fenced
    under, still lists it."""
    session = fenced_session(resource)
    listed = {(entry.kind, entry.name) for entry in work.spec.resources}
    return (
        session is not None
        and not work.spec.job_deleted
        and work.spec.session_epoch > session
        and _key(resource) in listed
    )


def resumed(resource: Manifest) -> Manifest:
    """The fenced resource as the agent writes it to let it run again."""
    body = copy.deepcopy(resource)
    body.setdefault("spec", {})["suspend"] = False
    annotations = body.setdefault("metadata", {}).get("annotations") or {}
    annotations.pop(SHARD_LABELS.fenced_session_annotation, None)
    return body


def awaiting_session(held: Sequence[Manifest]) -> int | None:
    """The oldest session among the fenced resources; None when none is fenced."""
    sessions = [session for item in held if (session := fenced_session(item)) is not None]
    return min(sessions, default=None)


def hold_fenced(plan: ClusterPlan, work: MemberWork, fence_due_now: bool) -> ClusterPlan:
    """`plan` without what would make a fenced shard run: while the agent is fenced, no create
    or update of a resource the work says to fence; and no update of a fenced resource at all,
    which would drop its suspension and keep its mark (`resumed` lets it run, and the next
    pass updates it)."""
    fenced_keys = {
        (entry.kind, entry.name)
        for entry in work.spec.resources
        if entry.on_disconnect == DisconnectAction.FENCE
    }
    create = tuple(
        item for item in plan.create if not (fence_due_now and _key(item) in fenced_keys)
    )
    update = tuple(
        (item, current)
        for item, current in plan.update
        if not (fence_due_now and _key(item) in fenced_keys) and fenced_session(current) is None
    )
    return ClusterPlan(create, update, plan.delete)
