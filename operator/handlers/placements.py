"""The placement controller: make each member hold exactly the shard resources its Placement
decides, and report what the members say back into Placement and MLJob status.

It is a work queue of Placement keys, fed by the hub's mirror (a Placement or its job changed),
the members' mirrors (a shard resource changed, as KubeRay reports progress), the scheduling
cycle, and a periodic resync. Every pass reads the current state from the mirrors and
converges every member, so a pass can run twice, or stop halfway, and the next one still ends
in the right state; a pass that finds nothing to do sends no request.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from continuum.operator import metrics
from continuum.operator.adapters.kube import MEMBER_REQUEST_TIMEOUT_S, MemberUnavailableError
from continuum.operator.adapters.kuberay import (
    RESOURCE_KINDS,
    SHARD_LABELS,
    ResourceKind,
    job_selector,
)
from continuum.operator.adapters.member_mirror import MemberMirrors, job_of, list_managed
from continuum.operator.api import ApplyState, MLJob, MLJobStatus, Placement
from continuum.operator.handlers.context import FINALIZER, PLACEMENT_WORKERS, OperatorContext
from continuum.operator.reconcile.placement import merge_scheduling
from continuum.operator.reconcile.shards import (
    ClusterOutcome,
    Manifest,
    desired_resources,
    job_status,
    placement_status,
    plan_cluster,
)
from continuum.operator.scheduling import write_status
from continuum.operator.workqueue import RetryLater, WorkQueue

LOG = logging.getLogger(__name__)
KINDS_BY_NAME = {kind.kind: kind for kind in RESOURCE_KINDS}
UNREACHABLE_ERRORS = (urllib3.exceptions.HTTPError, OSError)
# After a 409 the mirror needs a moment to bring the newer version.
CONFLICT_RETRY_S = 0.1


def _kind(manifest: Manifest) -> ResourceKind:
    return KINDS_BY_NAME[manifest["kind"]]


def list_job_resources(api: client.ApiClient, namespace: str, job: MLJob) -> list[Manifest]:
    return list_managed(api, namespace, job_selector(job.metadata.name or "", job.metadata.uid))


def _ensure_namespace(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    try:
        core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)),
            _request_timeout=MEMBER_REQUEST_TIMEOUT_S,
        )
    except ApiException as error:
        if error.status != 409:  # it exists already
            raise


def _create(api: client.ApiClient, namespace: str, manifest: Manifest) -> Manifest:
    """Creates one shard resource, and the job's namespace first if the member lacks it (asked
    only when the create says so: it nearly always exists already)."""
    kind = _kind(manifest)
    objects = client.CustomObjectsApi(api)

    def post() -> Manifest:
        created: Any = objects.create_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, manifest,
            field_validation="Strict", _request_timeout=MEMBER_REQUEST_TIMEOUT_S,
        )  # fmt: skip
        return dict(created)

    try:
        try:
            return post()
        except ApiException as error:
            if error.status != 404:  # 404: the namespace does not exist
                raise
            _ensure_namespace(api, namespace)
            return post()
    except ApiException as error:
        if error.status != 409:
            raise
    # Created by a pass that crashed before recording it: it is there.
    existing: Any = objects.get_namespaced_custom_object(
        kind.group, kind.version, namespace, kind.plural, manifest["metadata"]["name"],
        _request_timeout=MEMBER_REQUEST_TIMEOUT_S,
    )  # fmt: skip
    return dict(existing)


def converge_member(
    api: client.ApiClient,
    namespace: str,
    job: MLJob,
    desired: list[Manifest],
    observed: list[Manifest] | None = None,
    mirrors: MemberMirrors | None = None,
    member: str = "",
) -> list[Manifest]:
    """Creates, replaces and deletes this job's shard resources in one member so that it holds
    exactly `desired`; returns what the member holds afterwards. `observed`, when given, is
    what the member's mirror holds; else it is listed now. Each write's result goes into
    `mirrors`, when given, so that the next pass sees it before the watch brings it."""
    objects = client.CustomObjectsApi(api)
    if observed is None:
        observed = list_job_resources(api, namespace, job)
    plan = plan_cluster(desired, observed)
    if plan.is_empty:
        return observed
    held = {(item["kind"], item["metadata"]["name"]): item for item in observed}

    def record(written: Manifest | None, removed: Manifest | None = None) -> None:
        if mirrors is not None:
            mirrors.record(member, written, removed)

    for manifest in plan.create:
        created = _create(api, namespace, manifest)
        held[(manifest["kind"], manifest["metadata"]["name"])] = created
        record(created)
    for manifest, current in plan.update:
        kind = _kind(manifest)
        version = current["metadata"]["resourceVersion"]
        replacement = {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": version}}
        replaced: Any = objects.replace_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, manifest["metadata"]["name"],
            replacement, field_validation="Strict", _request_timeout=MEMBER_REQUEST_TIMEOUT_S,
        )  # fmt: skip
        held[(manifest["kind"], manifest["metadata"]["name"])] = replaced
        record(replaced)
    for manifest in plan.delete:
        kind = _kind(manifest)
        try:
            objects.delete_namespaced_custom_object(
                kind.group, kind.version, namespace, kind.plural, manifest["metadata"]["name"],
                propagation_policy="Background", _request_timeout=MEMBER_REQUEST_TIMEOUT_S,
            )  # fmt: skip
        except ApiException as error:
            if error.status != 404:
                raise
        held.pop((manifest["kind"], manifest["metadata"]["name"]), None)
        record(None, manifest)
    return list(held.values())


def converge_all(
    context: OperatorContext, job: MLJob, desired: dict[str, list[Manifest]]
) -> dict[str, ClusterOutcome]:
    """Converges every member. Members not in `desired` are visited too, so that a shard that
    moved away, or a job that was suspended, leaves nothing behind."""
    namespace = job.metadata.namespace or ""
    outcomes: dict[str, ClusterOutcome] = {}
    for member in context.member_clusters():
        name = member.metadata.name or ""
        try:
            api = context.members.for_member(member)
            context.member_mirrors.follow(name, api)
            observed = context.member_mirrors.job_resources(name, namespace, job)
            held = converge_member(
                api, namespace, job, desired.get(name, []), observed, context.member_mirrors, name
            )
        except MemberUnavailableError as error:
            outcomes[name] = ClusterOutcome(name, ApplyState.UNREACHABLE, error.message)
        except ApiException as error:
            message = f"HTTP {error.status}: {error.reason}: {(error.body or '')[:500]}"
            outcomes[name] = ClusterOutcome(name, ApplyState.FAILED, message)
        except UNREACHABLE_ERRORS as error:
            outcomes[name] = ClusterOutcome(name, ApplyState.UNREACHABLE, str(error)[:1024])
        else:
            outcomes[name] = ClusterOutcome(name, ApplyState.APPLIED, "", tuple(held))
    for name in desired:
        if name not in outcomes:
            outcomes[name] = ClusterOutcome(
                name, ApplyState.FAILED, f"no MemberCluster {name!r} is registered"
            )
    return outcomes


def sync_placement(context: OperatorContext, key: tuple[str, str]) -> None:
    """One pass over the job `key` (namespace, name; its Placement has the same name): take off
    a stale finalizer, converge the members, then write Placement and MLJob status, the latter
    with the scheduling cycle's part (handed over) laid in."""
    _drop_stale_finalizer(context, key)
    handed = context.take_handed_status(key)
    try:
        _sync(context, key, handed)
    except Exception:
        if handed is not None:
            context.give_back_handed_status(key, handed)
        raise


def _drop_stale_finalizer(context: OperatorContext, key: tuple[str, str]) -> None:
    raw = context.mirror.get(Placement, key) or {}
    stale = FINALIZER in raw.get("metadata", {}).get("finalizers", [])
    if stale and not context.hub.remove_finalizer(Placement, raw, FINALIZER):
        raise RetryLater(CONFLICT_RETRY_S)


def _sync(
    context: OperatorContext,
    key: tuple[str, str],
    handed: tuple[dict[str, Any], dict[str, Any]] | None,
) -> None:
    raw_job = context.mirror.get(MLJob, key)
    if raw_job is None:
        return  # gone: the garbage collector removes the Placement next
    uid = raw_job.get("metadata", {}).get("uid")
    if handed is not None and handed[0].get("metadata", {}).get("uid") != uid:
        handed = None  # computed for an earlier job of this name
    found = context.mirror.model(MLJob, key)
    if found is None:
        # A spec the models refuse: the cycle's refusal is all its status says, written at the
        # version it was computed from; if that is stale the cycle computes it again.
        if handed is not None and not write_status(context.mirror, *handed, context.mirror):
            context.wake_scheduler.set()
        return
    job, raw_job = found  # the body this model was made from, to write at its version
    assert isinstance(job, MLJob)
    if job.metadata.deletion_timestamp is not None:
        return  # the deletion handler owns the members now
    status = job.status or MLJobStatus()
    if handed is not None:
        status = merge_scheduling(status, MLJobStatus.model_validate(handed[1]))
    job = job.model_copy(update={"status": status})
    found_placement = _placement_of(context, key, job)
    if found_placement is not None:
        placement, raw_placement = found_placement
        metrics.RECONCILES.labels("Placement").inc()
        outcomes = converge_all(context, job, desired_resources(job, placement))
        now = context.clock()
        new_placement_status = placement_status(placement, outcomes.values(), now).to_dict()
        if raw_placement.get("status") != new_placement_status:
            written = {**raw_placement, "status": new_placement_status}
            if not context.mirror.replace_status(Placement, written):
                raise RetryLater(CONFLICT_RETRY_S)
        status = job_status(job, placement, outcomes, now)
    if not write_status(context.mirror, raw_job, status.to_dict(), context.mirror):
        raise RetryLater(CONFLICT_RETRY_S)


def _placement_of(
    context: OperatorContext, key: tuple[str, str], job: MLJob
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
    members = {member.metadata.name or "": member for member in context.member_clusters()}
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
                api = context.members.for_member(member)
                kind = _kind(resource)
                client.CustomObjectsApi(api).delete_namespaced_custom_object(
                    kind.group, kind.version, metadata.get("namespace"), kind.plural,
                    metadata.get("name"), propagation_policy="Background",
                    _request_timeout=MEMBER_REQUEST_TIMEOUT_S,
                )  # fmt: skip
                context.member_mirrors.record(name, None, resource)
            except (MemberUnavailableError, ApiException, *UNREACHABLE_ERRORS) as error:
                LOG.warning("could not delete an orphan in %s: %s", name, error)


def resync(context: OperatorContext) -> None:
    """The level-triggered safety net, every `resync_interval_s`: every Placement once more
    (a watch event lost, a resource changed by hand in a member), the members' mirrors kept to
    the registered members, and orphans swept."""
    queue = context.placements
    while not context.stop.wait(context.config.resync_interval_s):
        try:
            registered = {member.metadata.name or "" for member in context.member_clusters()}
            context.member_mirrors.retain(registered)
            if queue is not None:
                for key in context.mirror.list(Placement).raw:
                    queue.add(key)
            sweep_orphans(context)
        except Exception:
            LOG.exception("placement resync failed; retrying at the next interval")


def start_controller(context: OperatorContext) -> threading.Thread:
    """Starts the workers and the resync; the mirror's first list enqueues every Placement."""

    def counted(key: tuple[str, str]) -> None:
        try:
            sync_placement(context, key)
        except RetryLater:
            raise
        except Exception:
            metrics.RECONCILE_ERRORS.labels("Placement").inc()
            raise

    context.placements = WorkQueue("placements", counted, PLACEMENT_WORKERS).start()
    thread = threading.Thread(target=resync, args=(context,), name="placement-resync", daemon=True)
    thread.start()
    return thread
