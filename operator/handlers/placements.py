"""The placement controller: make each member hold exactly the shard resources its Placement
decides, and report what the members say back into Placement and MLJob status.

Every pass lists the job's resources in every member by label and converges them, so a pass
can run twice, or stop halfway, and the next one still ends in the right state.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from continuum.operator import metrics
from continuum.operator.adapters.inventory import list_managed
from continuum.operator.adapters.kube import MEMBER_REQUEST_TIMEOUT_S, MemberUnavailableError
from continuum.operator.adapters.kuberay import RESOURCE_KINDS, ResourceKind, job_selector
from continuum.operator.api import (
    GROUP,
    VERSION,
    ApplyState,
    MLJob,
    Placement,
    validate_resource,
)
from continuum.operator.handlers.context import OperatorContext
from continuum.operator.reconcile.shards import (
    ClusterOutcome,
    Manifest,
    desired_resources,
    job_status,
    placement_status,
    plan_cluster,
)

LOG = logging.getLogger(__name__)
KINDS_BY_NAME = {kind.kind: kind for kind in RESOURCE_KINDS}
UNREACHABLE_ERRORS = (urllib3.exceptions.HTTPError, OSError)
STATUS_INTERVAL_S = 5.0


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


def converge_member(
    api: client.ApiClient,
    namespace: str,
    job: MLJob,
    desired: list[Manifest],
    observed: list[Manifest] | None = None,
) -> list[Manifest]:
    """Creates, replaces and deletes this job's shard resources in one member so that it holds
    exactly `desired`; returns what the member holds afterwards. `observed`, when given, is
    what the member held a moment ago (from the shared inventory); else it is listed now."""
    objects = client.CustomObjectsApi(api)
    if observed is None:
        observed = list_job_resources(api, namespace, job)
    plan = plan_cluster(desired, observed)
    if plan.is_empty:
        return observed
    if plan.create:
        _ensure_namespace(api, namespace)
    for manifest in plan.create:
        kind = _kind(manifest)
        try:
            objects.create_namespaced_custom_object(
                kind.group, kind.version, namespace, kind.plural, manifest,
                field_validation="Strict", _request_timeout=MEMBER_REQUEST_TIMEOUT_S,
            )  # fmt: skip
        except ApiException as error:
            if error.status != 409:  # created by a pass that crashed before recording it
                raise
    for manifest, current in plan.update:
        kind = _kind(manifest)
        version = current["metadata"]["resourceVersion"]
        replacement = {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": version}}
        objects.replace_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, manifest["metadata"]["name"],
            replacement, field_validation="Strict", _request_timeout=MEMBER_REQUEST_TIMEOUT_S,
        )  # fmt: skip
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
    return list_job_resources(api, namespace, job)


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
            observed = context.inventory.job_resources(name, api, namespace, job)
            held = converge_member(api, namespace, job, desired.get(name, []), observed)
            if held is not observed:
                context.inventory.invalidate(name, namespace)
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


def _job_of(context: OperatorContext, placement: Placement) -> tuple[MLJob, dict[str, Any]] | None:
    namespace = placement.metadata.namespace or ""
    try:
        raw: dict[str, Any] = context.hub.objects.get_namespaced_custom_object(  # type: ignore[assignment]
            GROUP, VERSION, namespace, "mljobs", placement.spec.job_ref.name
        )
    except ApiException as error:
        if error.status == 404:
            return None  # the garbage collector removes the Placement next
        raise
    job = validate_resource(raw)
    return (job, raw) if isinstance(job, MLJob) else None


def sync_placement(context: OperatorContext, body: kopf.Body) -> None:
    placement = validate_resource(body)
    if not isinstance(placement, Placement):
        raise kopf.PermanentError(f"invalid Placement: {placement}")
    found = _job_of(context, placement)
    if found is None:
        return
    job, raw_job = found
    if placement.spec.job_ref.uid and placement.spec.job_ref.uid != job.metadata.uid:
        return  # a Placement left from an earlier job of the same name
    outcomes = converge_all(context, job, desired_resources(job, placement))
    now = context.clock()
    new_placement_status = placement_status(placement, outcomes.values(), now).to_dict()
    if body.get("status") != new_placement_status:
        context.hub.replace_status(Placement, {**dict(body), "status": new_placement_status})
    new_job_status = job_status(job, placement, outcomes, now).to_dict()
    if raw_job.get("status") != new_job_status:
        context.hub.replace_status(MLJob, {**raw_job, "status": new_job_status})


@kopf.on.create(GROUP, VERSION, "placements")
@kopf.on.update(GROUP, VERSION, "placements", field="spec")
@kopf.on.resume(GROUP, VERSION, "placements")
def placement_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _counted_sync(memo.context, body)


@kopf.timer(GROUP, VERSION, "placements", interval=STATUS_INTERVAL_S, idle=0)
def placement_status_tick(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Level-triggered: re-converges and re-reads the members' states even when nothing in the
    hub changed, since KubeRay's status changes in the members raise no event here."""
    _counted_sync(memo.context, body)


def _counted_sync(context: OperatorContext, body: kopf.Body) -> None:
    metrics.RECONCILES.labels("Placement").inc()
    try:
        sync_placement(context, body)
    except Exception:
        metrics.RECONCILE_ERRORS.labels("Placement").inc()
        raise
