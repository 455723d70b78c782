"""The placement controller: make each member hold exactly the shard resources its Placement
decides, and report what the members say back into Placement and MLJob status. It also keeps
the job's cleanup finalizer, and carries out the job's deletion.

It is a work queue of job keys (a Placement has its job's name), fed by the hub's mirror (a
Placement or its job changed), the members' mirrors (a shard resource changed, as KubeRay
reports progress), the scheduling cycle, and a periodic resync. Every pass reads the current
state from the mirrors and converges every member, so a pass can run twice, or stop halfway,
and the next one still ends in the right state; a pass that finds nothing to do sends no
request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from continuum.operator.adapters import metrics
from continuum.operator.adapters.kube import describe_connection_error
from continuum.operator.adapters.member_gate import CONNECTION_ERRORS, MemberUnavailableError
from continuum.operator.adapters.member_mirror import job_of
from continuum.operator.adapters.member_writes import delete_resource
from continuum.operator.adapters.workqueue import RetryLater, WorkQueue
from continuum.operator.api import ApplyState, MemberCluster, MLJob, MLJobStatus, Placement
from continuum.operator.api.keys import JobKey
from continuum.operator.api.membercluster import MemberMode
from continuum.operator.api.shard_resources import SHARD_LABELS
from continuum.operator.api.work import MemberWorkSpec
from continuum.operator.controller.context import (
    CONFLICT_RETRY_S,
    CONVERGENCE_WAIT_S,
    HUB_SYNC_RETRY_S,
    PLACEMENT_WORKERS,
    STATUS_WORKERS,
    Convergence,
    OperatorContext,
)
from continuum.operator.controller.convergence import converge_all, members_of
from continuum.operator.controller.deletion import (
    ensure_finalizer,
    finish_deletion,
    take_off_finalizer,
)
from continuum.operator.controller.status import write_status
from continuum.operator.reconcile.eviction import is_evicted
from continuum.operator.reconcile.federation import aggregator_endpoint
from continuum.operator.reconcile.handoff import completed_moves, pending_handoffs, with_handoffs
from continuum.operator.reconcile.membership import is_duplicate, is_usable
from continuum.operator.reconcile.placement import merge_scheduling
from continuum.operator.reconcile.shards import (
    ClusterOutcome,
    desired_resources,
    job_status,
    placement_status,
    resources_by_member,
)
from continuum.operator.reconcile.work import is_emptied

LOG = logging.getLogger(__name__)
# A pass a little after a handoff's timeout, not at it: the clocks of two passes differ.
HANDOFF_TIMEOUT_SLACK_S = 0.5
# How soon a pass that waits for a member's first list comes back, and for how long after
# the member's mirror started it waits.
FIRST_LIST_WAIT_S = 0.3
FIRST_LIST_PATIENCE_S = 10.0


def converge_job(context: OperatorContext, key: JobKey) -> None:
    """The first lane's pass over the job `key` (namespace, name; its Placement has the same
    name): take a stale finalizer off its Placement, carry out its deletion, or put its
    finalizer on and make every member hold what its Placement decides. What the members hold
    then goes to the status lane."""
    _wait_for_the_hub(context)
    inputs = context.job_inputs(key)
    # Whatever this pass meets (a failure, a retry), the resync passes the job again unless
    # the pass ends having settled it.
    context.record_pass(key, inputs, settled=False)
    # Placements need none; an older operator's Kopf may have left it on one (see FINALIZER).
    take_off_finalizer(context, Placement, context.mirror.get(Placement, key) or {})
    raw_job = context.mirror.get(MLJob, key)
    if raw_job is None:
        context.forget_job(key)
        return  # gone: the garbage collector removes the Placement next
    if "deletionTimestamp" in raw_job.get("metadata", {}):
        finish_deletion(context, raw_job)
        return
    found = context.mirror.model(MLJob, key)
    if found is not None:
        job, raw_job = found
        assert isinstance(job, MLJob)
        # As soon as the job is seen, while the cycle decides it: put on just before the first
        # shard resources, it would hold them back by a hub write (Placement to shards at the
        # tail of a burst of 200 applies: 1.2-2 s, against about 0).
        ensure_finalizer(context, raw_job)
        found_placement = _placement_of(context, key, job)
        if found_placement is not None:
            placement = found_placement[0]
            metrics.RECONCILES.labels("Placement").inc()
            now = context.clock()
            named = members_of(placement)
            members = _concerned(context, job, named)
            _wait_for_first_lists(context, members)
            held = _held(context, job, members)
            lost = {member.metadata.name or "" for member in members if is_evicted(member)}
            handoffs = pending_handoffs(job, placement, held, now, context.config.handoff_timeout_s,
                                    context.config.drain_timeout_s, lost)  # fmt: skip
            desired = with_handoffs(desired_resources(job, placement, held), handoffs, held, now)
            outcomes = converge_all(
                context, job, desired, named, placement.spec.epoch, members=members
            )
            context.record_convergence(
                key, Convergence(job.metadata.uid, Convergence.version_of(placement), outcomes)
            )
            settled = not handoffs and all(
                outcome.state == ApplyState.APPLIED for outcome in outcomes.values()
            )
            context.record_pass(key, inputs, settled)
            _report_completed_moves(context, raw_job, placement, held, outcomes, now)
            if handoffs and context.placements is not None:
                # The replacement's start wakes a pass through the member's mirror; the
                # timeout must wake one too.
                wait_s = min(handoff.remaining_s for handoff in handoffs)
                context.placements.add_after(key, wait_s + HANDOFF_TIMEOUT_SLACK_S)
    context.ask_status(key)


def _concerned(context: OperatorContext, job: MLJob, named: Collection[str]) -> list[MemberCluster]:
    """The members a pass over the job must visit: every Push member (its mirror may show
    what the Placement no longer names), and the Pull members the Placement names or that have
    a work of the job. The other Pull members, most of a fleet, hold nothing of it: their
    agents make only what a work lists. Until the works are listed, every member."""
    if not context.works.is_synced():
        return context.member_clusters()
    index = context.member_index()
    with_work = context.works.members_with_work(job.metadata.namespace or "",
                                                job.metadata.name or "")  # fmt: skip
    pulled = {
        name: member
        for name in sorted({*named, *with_work})
        if (member := index.by_name.get(name)) is not None and member.spec.mode == MemberMode.PULL
    }
    return [*index.pushed, *pulled.values()]


def _wait_for_first_lists(context: OperatorContext, members: Sequence[MemberCluster]) -> None:
    """RetryLater while a Push member that answers has not had its shard resources listed
    once (a new leader, a restarted operator): its mirror shows none of them yet, and what a
    pass keeps depends on what the members hold (a Federated participant is kept with the
    aggregator address it was made with; one not seen would not be kept, and so removed)."""
    waiting = False
    for member in members:
        name = member.metadata.name or ""
        if member.spec.mode != MemberMode.PUSH or context.member_mirrors.has_listed(name):
            continue  # the usual case, met by every pass: nothing more to look at
        try:
            api = context.members.for_member(member)
            api.gate.check()
        except MemberUnavailableError:
            continue  # nothing is written there now; the pass says why
        context.member_mirrors.follow(name, api.ungated)
        waiting = waiting or context.member_mirrors.awaits_first_list(name, FIRST_LIST_PATIENCE_S)
    if waiting:
        raise RetryLater(FIRST_LIST_WAIT_S)


def _held(
    context: OperatorContext, job: MLJob, members: Sequence[MemberCluster]
) -> dict[str, list[dict[str, Any]]]:
    """What each of `members` holds of the job, as its mirror last saw it."""
    namespace = job.metadata.namespace or ""
    return {
        name: context.member_mirrors.last_known(name, namespace, job)
        for name in (member.metadata.name or "" for member in members)
    }


def _report_completed_moves(
    context: OperatorContext,
    raw_job: dict[str, Any],
    placement: Placement,
    held: Mapping[str, list[dict[str, Any]]],
    outcomes: Mapping[str, ClusterOutcome],
    now: datetime,
) -> None:
    """An Event and the metrics for each make-before-break move whose old copy this pass
    removed."""
    removed: dict[str, list[dict[str, Any]]] = {}
    for member, outcome in outcomes.items():
        if outcome.state != ApplyState.APPLIED:
            continue
        kept = {(item["kind"], item["metadata"]["name"]) for item in outcome.resources}
        gone = [r for r in held.get(member, []) if (r["kind"], r["metadata"]["name"]) not in kept]
        if gone:
            removed[member] = gone
    after = {member: list(outcome.resources) for member, outcome in outcomes.items()}
    for move in completed_moves(placement, removed, after, now):
        metrics.HANDOFFS.labels(move.reason.value, move.outcome).inc()
        metrics.HANDOFF_SECONDS.observe(move.after_s)
        if move.replacement_running:
            handed = (
                "the old copy handed its last checkpoint over and was removed"
                if move.handed_over
                else "the old copy was removed"
            )
            context.events.record_event(raw_job, "Normal", "ShardMoved",
                                        f"shard {move.shard} moved from {move.source} to "
                                        f"{move.target} ({move.reason.value}): its replacement "
                                        f"runs, and {handed} {move.after_s:.0f} s after the "
                                        "decision")  # fmt: skip
        else:
            context.events.record_event(raw_job, "Warning", "HandoffTimedOut",
                                        f"shard {move.shard} moving from {move.source} to "
                                        f"{move.target} ({move.reason.value}): its replacement "
                                        f"did not run within {move.after_s:.0f} s; the old copy "
                                        "was removed")  # fmt: skip


def write_job_status(context: OperatorContext, key: JobKey) -> None:
    """The second lane's pass: Placement and MLJob status from what the last convergence found,
    with the scheduling cycle's part (handed over) laid in."""
    _wait_for_the_hub(context)
    handed = context.take_handed_status(key)
    try:
        _write_status(context, key, handed)
    except Exception:
        if handed is not None:
            context.give_back_handed_status(key, handed)
        raise


def _wait_for_the_hub(context: OperatorContext) -> None:
    """No pass acts on a partial view of the hub: a deletion that saw no MemberClusters yet
    would find every member clean and release the finalizer over shards still running."""
    if not context.mirror.wait_synced(0):
        raise RetryLater(HUB_SYNC_RETRY_S)


def _write_status(
    context: OperatorContext,
    key: JobKey,
    handed: tuple[dict[str, Any], dict[str, Any]] | None,
) -> None:
    raw_job = context.mirror.get(MLJob, key)
    if raw_job is None or "deletionTimestamp" in raw_job.get("metadata", {}):
        return  # gone, or its deletion writes what status it needs
    uid = raw_job.get("metadata", {}).get("uid")
    if handed is not None and handed[0].get("metadata", {}).get("uid") != uid:
        handed = None  # computed for an earlier job of this name
    found = context.mirror.model(MLJob, key)
    if found is None:
        # A spec the models refuse: the cycle's refusal is all its status says, written at the
        # version it was computed from; if that is stale the cycle computes it again.
        if handed is not None and not write_status(context.mirror, *handed, context.events):
            context.wake_scheduler.set()
        return
    job, raw_job = found  # the body this model was made from, to write at its version
    assert isinstance(job, MLJob)
    found_placement = _placement_of(context, key, job)
    convergence = context.convergence_of(key)
    if context.placement_writes.is_pending(key) or (
        found_placement is not None
        and (convergence is None or not convergence.matches(job, found_placement[0]))
    ):
        # A decision is on its way to the members: the first lane's pass of it asks for this
        # one again, and one status write then says both what was decided and what the members
        # hold. The retry is for a pass that asked while this one ran, or a write that is lost.
        # Checked first, so that a pass that waits (many, in a burst) builds no status.
        raise RetryLater(CONVERGENCE_WAIT_S)
    status = job.status or MLJobStatus()
    if handed is not None:
        status = merge_scheduling(status, MLJobStatus.model_validate(handed[1]))
    job = job.model_copy(update={"status": status})
    if found_placement is not None:
        assert convergence is not None
        placement, raw_placement = found_placement
        now = context.clock()
        outcomes = convergence.outcomes
        held = resources_by_member(outcomes)
        aggregator = aggregator_endpoint(job, placement, held)
        new_placement_status = placement_status(
            placement, outcomes.values(), now, aggregator
        ).to_dict()
        if raw_placement.get("status") != new_placement_status:
            written = {**raw_placement, "status": new_placement_status}
            if not context.mirror.replace_status(Placement, written):
                raise RetryLater(CONFLICT_RETRY_S)
        handoffs = pending_handoffs(job, placement, held, now, context.config.handoff_timeout_s,
                                    context.config.drain_timeout_s)  # fmt: skip
        status = job_status(job, placement, outcomes, now, handoffs)
    if not write_status(context.mirror, raw_job, status.to_dict(), context.events):
        raise RetryLater(CONFLICT_RETRY_S)


def _placement_of(
    context: OperatorContext, key: JobKey, job: MLJob
) -> tuple[Placement, dict[str, Any]] | None:
    """The job's Placement and its stored body, if there is one and it is this job's (not an
    earlier one's of the same name)."""
    found = context.mirror.model(Placement, key)
    if found is None:
        return None
    placement, raw = found
    assert isinstance(placement, Placement)
    if placement.spec.job_ref.uid and placement.spec.job_ref.uid != job.metadata.uid:
        return None
    return placement, raw


def sweep_orphans(context: OperatorContext) -> None:
    """Deletes shard resources whose MLJob is gone from the hub, or is another incarnation of
    its name: what a job deleted before its finalizer was set would leave behind. Only members
    whose mirrors are in step are swept, and only once the hub's mirror is."""
    if not context.mirror.wait_synced(0):
        return
    jobs = {
        key: body.get("metadata", {}).get("uid")
        for key, body in context.mirror.list(MLJob).raw.items()
    }
    members = {
        member.metadata.name or "": member
        for member in context.member_clusters()
        if is_usable(member) and member.spec.mode != MemberMode.PULL
    }
    _sweep_works(context, jobs)
    for name, resources in context.member_mirrors.all_resources().items():
        member = members.get(name)
        if member is None:
            continue
        for resource in resources:
            metadata = resource.get("metadata", {})
            owner = job_of(resource)
            uid = (metadata.get("labels") or {}).get(SHARD_LABELS.job_uid)
            if owner in jobs and (uid is None or uid == jobs[owner]):
                continue
            LOG.info("deleting the orphan %s %s/%s in %s", resource.get("kind"), owner[0],
                     metadata.get("name"), name)  # fmt: skip
            try:
                delete_resource(context.members.for_member(member), owner[0], resource)
                context.member_mirrors.record(name, None, resource)
            except MemberUnavailableError as error:
                LOG.warning("could not delete an orphan in %s: %s", name, error.message)
            except ApiException as error:
                LOG.warning("could not delete an orphan in %s: HTTP %s", name, error.status)
            except CONNECTION_ERRORS as error:
                LOG.warning("could not delete an orphan in %s: %s", name,
                            describe_connection_error(error))  # fmt: skip


def _sweep_works(context: OperatorContext, jobs: dict[tuple[str, str], Any]) -> None:
    """The Pull members' works of jobs gone from the hub (or of an earlier incarnation):
    marked deleted, for their agents to remove what they hold of them, and deleted once
    they say they hold nothing."""
    if not context.works.is_synced():
        return
    for work in context.works.cache.items():
        spec = MemberWorkSpec.model_validate(work["spec"])
        job = spec.job_ref
        if jobs.get((job.namespace, job.name), object()) == job.uid:
            continue
        if is_emptied(work) and not spec.resources:
            context.works.delete(work)
        elif not spec.job_deleted or spec.resources:
            tombstone = spec.model_copy(update={"resources": [], "job_deleted": True})
            context.works.write({**work, "spec": tombstone.to_dict()}, work)


def resync(context: OperatorContext) -> None:
    """The level-triggered safety net, every `resync_interval_s`: every job and Placement once
    more (a watch event lost, a resource changed by hand in a member), the members' mirrors
    kept to the registered members, and orphans swept."""
    queue = context.placements
    while not context.stop.wait(context.config.resync_interval_s):
        try:
            # An unreachable member's mirror stays: what it last saw tells which jobs may still
            # have shards there.
            kept = {
                member.metadata.name or ""
                for member in context.member_clusters()
                if not is_duplicate(member)
            }
            context.member_mirrors.retain(kept)
            if queue is not None:
                for kind in (MLJob, Placement):
                    for key in context.mirror.list(kind).raw:
                        if context.needs_resync(JobKey(*key)):
                            queue.add(JobKey(*key))
            sweep_orphans(context)
        except Exception:
            LOG.exception("placement resync failed; retrying at the next interval")


def start_controller(context: OperatorContext) -> threading.Thread:
    """Starts both lanes' workers and the resync; the mirror's first list enqueues every job."""

    def counted(kind: str, handler: Callable[[OperatorContext, JobKey], None]) -> Any:
        def run(key: JobKey) -> None:
            try:
                handler(context, key)
            except RetryLater:
                raise
            except Exception:
                metrics.RECONCILE_ERRORS.labels(kind).inc()
                raise

        return run

    context.statuses = WorkQueue(
        "statuses", counted("JobStatus", write_job_status), STATUS_WORKERS
    ).start()
    context.placements = WorkQueue(
        "placements", counted("Placement", converge_job), PLACEMENT_WORKERS
    ).start()
    thread = threading.Thread(target=resync, args=(context,), name="placement-resync", daemon=True)
    thread.start()
    return thread
