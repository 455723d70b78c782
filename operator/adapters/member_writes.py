"""Writes to the members: shard resources created, replaced and deleted, each as one request
through the member's client. The controller decides what to write (reconcile.shards plans it);
these carry it out, and tolerate what a crashed earlier pass left behind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from continuum.operator.adapters.member_mirror import list_managed
from continuum.operator.api import MLJob
from continuum.operator.api.plans import ClusterPlan
from continuum.operator.api.shard_resources import (
    MANAGED_SELECTOR,
    RESOURCE_KINDS,
    ResourceKind,
    job_selector,
)

Manifest = dict[str, Any]
KINDS_BY_NAME = {kind.kind: kind for kind in RESOURCE_KINDS}


def kind_of(manifest: Manifest) -> ResourceKind:
    return KINDS_BY_NAME[manifest["kind"]]


# Each write's result as it happens: (written, removed), one of them None.
WriteRecorder = Callable[[Manifest | None, Manifest | None], None]


def apply_plan(
    api: client.ApiClient,
    namespace: str,
    plan: ClusterPlan,
    observed: list[Manifest],
    as_created: Callable[[Manifest], Manifest] = dict,
    record: WriteRecorder | None = None,
) -> list[Manifest]:
    """Carries out `plan` in one member, whose resources of the job were `observed`; returns
    what it holds afterwards. `as_created` gives a manifest as it is created (the resume
    checkpoint, which only a create carries); `record` hears of each write as it is made."""
    held = {(item["kind"], item["metadata"]["name"]): item for item in observed}
    for manifest in plan.create:
        created = create_shard(api, namespace, as_created(manifest))
        held[(manifest["kind"], manifest["metadata"]["name"])] = created
        if record is not None:
            record(created, None)
    for manifest, current in plan.update:
        replaced = replace_shard(api, namespace, manifest, current)
        held[(manifest["kind"], manifest["metadata"]["name"])] = replaced
        if record is not None:
            record(replaced, None)
    for manifest in plan.delete:
        delete_resource(api, namespace, manifest)
        held.pop((manifest["kind"], manifest["metadata"]["name"]), None)
        if record is not None:
            record(None, manifest)
    return list(held.values())


def list_job_resources(api: client.ApiClient, namespace: str, job: MLJob) -> list[Manifest]:
    return list_managed(api, namespace, job_selector(job.metadata.name or "", job.metadata.uid))


def _ensure_namespace(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    except ApiException as error:
        if error.status != 409:  # it exists already
            raise


def create_shard(api: client.ApiClient, namespace: str, manifest: Manifest) -> Manifest:
    """Creates one shard resource, and the job's namespace first if the member lacks it (asked
    only when the create says so: it nearly always exists already)."""
    kind = kind_of(manifest)
    objects = client.CustomObjectsApi(api)

    def post() -> Manifest:
        created: Any = objects.create_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, manifest, field_validation="Strict"
        )
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
        kind.group, kind.version, namespace, kind.plural, manifest["metadata"]["name"]
    )
    return dict(existing)


def replacement(manifest: Manifest, current: Manifest) -> Manifest:
    """What a PUT sends: the spec and our labels and annotations, over everything else the
    object's metadata holds (other writers' labels and annotations, the workload's checkpoint
    annotation, KubeRay's finalizers), at the version read."""
    metadata: dict[str, Any] = {**current.get("metadata", {}), **manifest["metadata"]}
    for section in ("labels", "annotations"):
        theirs = current.get("metadata", {}).get(section) or {}
        metadata[section] = {**theirs, **(manifest["metadata"].get(section) or {})}
    metadata["resourceVersion"] = current["metadata"]["resourceVersion"]
    return {**manifest, "metadata": metadata}


def put_resource(api: client.ApiClient, namespace: str, body: Manifest) -> Manifest:
    """Replaces one shard resource with `body` as it is, at the resourceVersion it holds (a
    409 when the resource changed since it was read)."""
    kind = kind_of(body)
    replaced: Any = client.CustomObjectsApi(api).replace_namespaced_custom_object(
        kind.group, kind.version, namespace, kind.plural, body["metadata"]["name"], body,
        field_validation="Strict",
    )  # fmt: skip
    return dict(replaced)


def replace_shard(
    api: client.ApiClient, namespace: str, manifest: Manifest, current: Manifest
) -> Manifest:
    """Replaces one shard resource with `manifest`, at the version of `current`."""
    kind = kind_of(manifest)
    replaced: Any = client.CustomObjectsApi(api).replace_namespaced_custom_object(
        kind.group, kind.version, namespace, kind.plural, manifest["metadata"]["name"],
        replacement(manifest, current), field_validation="Strict",
    )  # fmt: skip
    return dict(replaced)


def delete_resource(api: client.ApiClient, namespace: str, resource: Manifest) -> None:
    """Deletes one shard resource; one already gone is fine."""
    kind = kind_of(resource)
    try:
        client.CustomObjectsApi(api).delete_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, resource["metadata"]["name"],
            propagation_policy="Background",
        )  # fmt: skip
    except ApiException as error:
        if error.status != 404:
            raise


def remove_all_shards(api: client.ApiClient) -> int:
    """Deletes every shard resource Continuum made in a member; returns how many there were."""
    objects = client.CustomObjectsApi(api)
    removed = 0
    for kind in RESOURCE_KINDS:
        listed: Any = objects.list_cluster_custom_object(
            kind.group, kind.version, kind.plural, label_selector=MANAGED_SELECTOR
        )
        for item in listed.get("items", []):
            delete_resource(api, item["metadata"]["namespace"], item)
            removed += 1
    return removed
