"""Converging the members: each holds exactly the shard resources decided for a job.

Used by the placement controller's passes (the resources a Placement decides) and by a job's
deletion (none). Each write's result goes into the members' mirrors at once, so the next pass
sees it before the watch brings it.
"""

from __future__ import annotations

from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from continuum.operator.adapters.kube import MEMBER_REQUEST_TIMEOUT_S, MemberUnavailableError
from continuum.operator.adapters.kuberay import RESOURCE_KINDS, ResourceKind, job_selector
from continuum.operator.adapters.member_mirror import MemberMirrors, list_managed
from continuum.operator.api import ApplyState, MLJob
from continuum.operator.handlers.context import OperatorContext
from continuum.operator.reconcile.shards import ClusterOutcome, Manifest, plan_cluster

KINDS_BY_NAME = {kind.kind: kind for kind in RESOURCE_KINDS}
UNREACHABLE_ERRORS = (urllib3.exceptions.HTTPError, OSError)


def kind_of(manifest: Manifest) -> ResourceKind:
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
    kind = kind_of(manifest)
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
        kind = kind_of(manifest)
        version = current["metadata"]["resourceVersion"]
        replacement = {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": version}}
        replaced: Any = objects.replace_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, manifest["metadata"]["name"],
            replacement, field_validation="Strict", _request_timeout=MEMBER_REQUEST_TIMEOUT_S,
        )  # fmt: skip
        held[(manifest["kind"], manifest["metadata"]["name"])] = replaced
        record(replaced)
    for manifest in plan.delete:
        delete_resource(api, namespace, manifest)
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


def delete_resource(api: client.ApiClient, namespace: str, resource: Manifest) -> None:
    """Deletes one shard resource; one already gone is fine."""
    kind = kind_of(resource)
    try:
        client.CustomObjectsApi(api).delete_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, resource["metadata"]["name"],
            propagation_policy="Background",
            _request_timeout=MEMBER_REQUEST_TIMEOUT_S,
        )  # fmt: skip
    except ApiException as error:
        if error.status != 404:
            raise
