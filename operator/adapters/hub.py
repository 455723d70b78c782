"""The hub's Continuum objects: listed as validated models, written back with optimistic
concurrency. The operator reads through `HubMirror`, which writes through these methods and
keeps what they return.

Writes carry the resourceVersion that was read: no writer loses another's update (a user's
edit, another lane's write); the loser gets 409, and its next pass writes again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from continuum.operator.adapters import metrics
from continuum.operator.adapters.store import Listed, identity, listed_from
from continuum.operator.api import (
    GROUP,
    VERSION,
    MemberCluster,
    MLJob,
    Placement,
    PlacementSpec,
    Resource,
    Tenant,
)
from continuum.operator.api.manifests import placement_manifest
from continuum.operator.api.validation import format_errors

LOG = logging.getLogger(__name__)
REQUEST_TIMEOUT_S = 10.0
# The field managers of MemberCluster status, each applying only its own fields with
# server-side apply (conditions is a list-map keyed by type, so each owns its conditions):
# the heartbeat owns Reachable and Ready and what the probe reads; the signals own Degraded,
# risk and latencyToSites.
HEARTBEAT_MANAGER = "continuum-heartbeat"
SIGNALS_MANAGER = "continuum-signals"
APPLY_PATCH = "application/apply-patch+yaml"
PLURALS: dict[type[Resource], str] = {
    MLJob: "mljobs",
    Placement: "placements",
    MemberCluster: "memberclusters",
    Tenant: "tenants",
}
R = TypeVar("R", bound=Resource)


class Hub:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.objects = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    def list(self, kind: type[R]) -> Listed[R]:
        response: Any = self.objects.list_cluster_custom_object(
            GROUP, VERSION, PLURALS[kind], _request_timeout=REQUEST_TIMEOUT_S
        )
        listed = listed_from(kind, response.get("items", []))
        for (namespace, name), errors in listed.invalid.items():
            LOG.debug(
                "%s %s/%s is invalid: %s", kind.__name__, namespace, name, format_errors(errors)
            )
        return listed

    def put_status(self, kind: type[Resource], body: dict[str, Any]) -> dict[str, Any] | None:
        """PUTs `body` (which carries the resourceVersion it was read at) to the status
        subresource; returns the object as written, or None when someone else wrote in between
        (409) or the object is gone."""
        namespace, name = identity(body)
        plural = PLURALS[kind]
        try:
            if namespace:
                written: Any = self.objects.replace_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, plural, name, body,
                    _request_timeout=REQUEST_TIMEOUT_S,
                )  # fmt: skip
            else:
                written = self.objects.replace_cluster_custom_object_status(
                    GROUP, VERSION, plural, name, body, _request_timeout=REQUEST_TIMEOUT_S
                )
        except ApiException as error:
            if error.status == 409:
                metrics.WRITE_CONFLICTS.labels(kind.__name__).inc()
            if error.status in (404, 409):
                return None
            raise
        result: dict[str, Any] = written
        return result

    def apply_member_status(
        self, name: str, status: dict[str, Any], manager: str
    ) -> dict[str, Any] | None:
        """Server-side applies `status` to the MemberCluster's status subresource as `manager`:
        the fields it holds become (or stay) that manager's, a field the manager applied before
        and leaves out now is removed, and every other manager's fields are untouched. Forced:
        these fields are the operator's alone, whoever (an older operator's merge patch) wrote
        them last. Returns the object as written, or None when it is gone."""
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "MemberCluster",
            "metadata": {"name": name},
            "status": status,
        }
        try:
            written: Any = self.objects.patch_cluster_custom_object_status(
                GROUP, VERSION, PLURALS[MemberCluster], name, body,
                field_manager=manager, force=True, _content_type=APPLY_PATCH,
                _request_timeout=REQUEST_TIMEOUT_S,
            )  # fmt: skip
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        result: dict[str, Any] = written
        return result

    def put_placement(
        self, job: MLJob, spec: PlacementSpec, existing: Placement | None
    ) -> dict[str, Any] | None:
        """Creates the job's Placement, owned by the job so that it goes when the job goes, or
        replaces its spec at the resourceVersion it was read at. Returns the object as written,
        or None when it was not (a conflict, or the job is gone)."""
        namespace = job.metadata.namespace or ""
        name = job.metadata.name or ""
        body = placement_manifest(job, spec)
        try:
            if existing is not None and existing.spec.job_ref.uid not in (None, job.metadata.uid):
                # jobRef is immutable: a Placement of an earlier job of this name goes first.
                self.objects.delete_namespaced_custom_object(
                    GROUP, VERSION, namespace, "placements", name,
                    body=client.V1DeleteOptions(
                        preconditions=client.V1Preconditions(uid=existing.metadata.uid)
                    ),
                    _request_timeout=REQUEST_TIMEOUT_S,
                )  # fmt: skip
                existing = None
            if existing is None:
                written: Any = self.objects.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, "placements", body,
                    _request_timeout=REQUEST_TIMEOUT_S,
                )  # fmt: skip
            else:
                body["metadata"]["resourceVersion"] = existing.metadata.resource_version
                body["status"] = (
                    existing.status.model_dump(mode="json", by_alias=True, exclude_none=True)
                    if existing.status
                    else None
                )
                written = self.objects.replace_namespaced_custom_object(
                    GROUP, VERSION, namespace, "placements", name, body,
                    _request_timeout=REQUEST_TIMEOUT_S,
                )  # fmt: skip
        except ApiException as error:
            # 409: a previous cycle wrote it meanwhile, or the old one is still being deleted
            # (its finalizer); the next cycle reads afresh and writes again.
            if error.status == 409:
                metrics.WRITE_CONFLICTS.labels("Placement").inc()
            if error.status not in (404, 409):
                raise
            return None
        result: dict[str, Any] = written
        return result

    def put_finalizers(
        self, kind: type[Resource], body: dict[str, Any], finalizers: Sequence[str]
    ) -> dict[str, Any] | None:
        """Sets the object's finalizers, at the resourceVersion it was read at. Returns the
        object as written, or None when someone wrote in between (409) or it is gone."""
        metadata = body.get("metadata", {})
        patch = {"metadata": {"finalizers": [*finalizers],
                              "resourceVersion": metadata.get("resourceVersion")}}  # fmt: skip
        namespace, name = identity(body)
        try:
            written: Any = self.objects.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURALS[kind], name, patch,
                _request_timeout=REQUEST_TIMEOUT_S,
            )  # fmt: skip
        except ApiException as error:
            if error.status == 409:
                metrics.WRITE_CONFLICTS.labels(kind.__name__).inc()
            if error.status in (404, 409):
                return None
            raise
        result: dict[str, Any] = written
        return result

    def record_event(
        self, involved: Mapping[str, Any], event_type: str, reason: str, message: str
    ) -> None:
        """A core/v1 Event on `involved`, as `kubectl describe` and `kubectl events` show them.
        Best effort: an Event that cannot be written is not worth failing a reconcile for."""
        metadata = involved.get("metadata", {})
        namespace = metadata.get("namespace") or "default"
        now = datetime.now(UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                generate_name=f"{metadata.get('name', 'object')}.", namespace=namespace
            ),
            involved_object=client.V1ObjectReference(
                api_version=involved.get("apiVersion"),
                kind=involved.get("kind"),
                name=metadata.get("name"),
                namespace=metadata.get("namespace"),
                uid=metadata.get("uid"),
                resource_version=metadata.get("resourceVersion"),
            ),
            type=event_type,
            reason=reason,
            message=message[:1024],
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component="continuum-operator"),
            reporting_component="continuum.dev/operator",
            reporting_instance="continuum-operator",
        )
        try:
            self.core.create_namespaced_event(namespace, event, _request_timeout=REQUEST_TIMEOUT_S)
        except ApiException as error:
            LOG.warning("could not record event %s: %s", reason, error.reason)

    def config_map_data(self, namespace: str, name: str) -> dict[str, str]:
        try:
            config_map = self.core.read_namespaced_config_map(
                name, namespace, _request_timeout=REQUEST_TIMEOUT_S
            )
        except ApiException as error:
            if error.status == 404:
                return {}
            raise
        return dict(config_map.data or {})
