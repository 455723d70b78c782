"""An in-process object store with the API server's semantics, for the embedded demo.

It holds MemberClusters, Tenants, MLJobs, Placements and ConfigMaps as the API server would:
every write bumps a resourceVersion, status writes are optimistic on it, a Placement is owned by
its MLJob (and goes with it), and a spec change bumps metadata.generation. The scheduling cycle
and the reconcile functions run over it unchanged, through the `ObjectStore` protocol.
"""

from __future__ import annotations

import copy
import itertools
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from continuum.operator.adapters.store import Listed, identity, listed_from
from continuum.operator.api import (
    API_VERSION,
    MemberCluster,
    MLJob,
    Placement,
    PlacementSpec,
    Resource,
    Tenant,
    validate_resource,
)

R = TypeVar("R", bound=Resource)
Body = dict[str, Any]
Key = tuple[str, str, str]  # (kind, namespace, name)
NAMESPACED_KINDS = frozenset({"MLJob", "Placement"})
KINDS: Mapping[str, type[Resource]] = {
    model.__name__: model for model in (MemberCluster, Tenant, MLJob, Placement)
}


class ConflictError(Exception):
    """A write at a resourceVersion that is no longer current, or of an object that exists
    (create) or does not (update): what the API server answers with 409 or 404."""


class LocalStore:
    """Thread-safe: the demo's scheduling loop and its executor write from different threads."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._objects: dict[Key, Body] = {}
        self._config_maps: dict[tuple[str, str], dict[str, str]] = {}
        self._versions = itertools.count(1)
        self._lock = threading.RLock()
        self._clock = clock

    # -- what the API server does on create, update and delete ------------------------------

    def _key(self, kind: str, body: Mapping[str, Any]) -> Key:
        namespace, name = identity(body)
        if not name:
            raise ValueError(f"a {kind} needs metadata.name")
        if kind in NAMESPACED_KINDS and not namespace:
            raise ValueError(f"{kind} {name} needs metadata.namespace")
        return (kind, namespace if kind in NAMESPACED_KINDS else "", name)

    def create(self, body: Mapping[str, Any]) -> Body:
        """Adds an object as `kubectl create` would; returns it as stored."""
        kind = str(body.get("kind"))
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
        with self._lock:
            key = self._key(kind, body)
            if key in self._objects:
                raise ConflictError(f"{kind} {key[1]}/{key[2]} exists already")
            stored = copy.deepcopy(dict(body))
            stored.setdefault("apiVersion", API_VERSION)
            metadata = stored.setdefault("metadata", {})
            if kind not in NAMESPACED_KINDS:
                metadata.pop("namespace", None)
            metadata["uid"] = str(uuid.uuid4())
            metadata["generation"] = 1
            metadata["creationTimestamp"] = self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")
            metadata["resourceVersion"] = str(next(self._versions))
            self._objects[key] = stored
            return copy.deepcopy(stored)

    def create_all(self, bodies: Iterable[Mapping[str, Any]]) -> list[Body]:
        return [self.create(body) for body in bodies]

    def get(self, kind: type[Resource], namespace: str, name: str) -> Body | None:
        with self._lock:
            found = self._objects.get(self._key(kind.__name__, _meta(namespace, name)))
            return copy.deepcopy(found) if found is not None else None

    def replace(self, body: Mapping[str, Any]) -> Body:
        """Replaces spec and metadata at the resourceVersion `body` carries; status is kept,
        as the main resource of a CRD with a status subresource keeps it."""
        kind = str(body.get("kind"))
        with self._lock:
            key = self._key(kind, body)
            current = self._current(key, body)
            stored = copy.deepcopy(dict(body))
            stored["metadata"] = {
                **current["metadata"],
                **stored.get("metadata", {}),
                "uid": current["metadata"]["uid"],
                "creationTimestamp": current["metadata"]["creationTimestamp"],
            }
            if current.get("status") is not None:
                stored["status"] = current["status"]
            else:
                stored.pop("status", None)
            generation = current["metadata"]["generation"]
            if stored.get("spec") != current.get("spec"):
                generation += 1
            stored["metadata"]["generation"] = generation
            stored["metadata"]["resourceVersion"] = str(next(self._versions))
            self._objects[key] = stored
            return copy.deepcopy(stored)

    def delete(self, kind: type[Resource], namespace: str, name: str) -> bool:
        """Deletes an object and, as the garbage collector would, what it owns."""
        with self._lock:
            removed = self._objects.pop(self._key(kind.__name__, _meta(namespace, name)), None)
            if removed is None:
                return False
            uid = removed["metadata"]["uid"]
            owned = [
                key
                for key, body in self._objects.items()
                if any(
                    owner.get("uid") == uid
                    for owner in body["metadata"].get("ownerReferences") or []
                )
            ]
            for key in owned:
                self.delete(KINDS[key[0]], key[1], key[2])
            return True

    def _current(self, key: Key, body: Mapping[str, Any]) -> Body:
        current = self._objects.get(key)
        if current is None:
            raise ConflictError(f"{key[0]} {key[1]}/{key[2]} does not exist")
        version = body.get("metadata", {}).get("resourceVersion")
        if version is not None and version != current["metadata"]["resourceVersion"]:
            raise ConflictError(
                f"{key[0]} {key[1]}/{key[2]} is at resourceVersion "
                f"{current['metadata']['resourceVersion']}, not {version}"
            )
        return current

    def put_config_map(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        with self._lock:
            self._config_maps[(namespace, name)] = dict(data)

    # -- ObjectStore ------------------------------------------------------------------------

    def list(self, kind: type[R]) -> Listed[R]:
        with self._lock:
            bodies = [
                copy.deepcopy(body)
                for key, body in sorted(self._objects.items())
                if key[0] == kind.__name__
            ]
        return listed_from(kind, bodies)

    def replace_status(self, kind: type[Resource], body: dict[str, Any]) -> bool:
        """Writes `body["status"]` if the object is still at `body`'s resourceVersion."""
        with self._lock:
            key = self._key(kind.__name__, body)
            try:
                current = self._current(key, body)
            except ConflictError:
                return False
            stored = copy.deepcopy(current)
            stored["status"] = copy.deepcopy(body.get("status"))
            stored["metadata"]["resourceVersion"] = str(next(self._versions))
            self._objects[key] = stored
            return True

    def write_placement(self, job: MLJob, spec: PlacementSpec, existing: Placement | None) -> bool:
        """Creates the job's Placement (the same manifest as Hub writes), or replaces its spec at
        the resourceVersion it was read at; a conflict (False) is left to the next cycle, as in
        Hub."""
        # Imported here: reconcile.placement pulls in the scheduler and numpy, which a store
        # that only holds objects (and `continuum --help`) does not need.
        from continuum.operator.api.manifests import placement_manifest

        body = placement_manifest(job, spec)
        try:
            if existing is not None and existing.spec.job_ref.uid not in (None, job.metadata.uid):
                # jobRef is immutable: a Placement of an earlier job of this name goes first.
                self.delete(
                    Placement, existing.metadata.namespace or "", existing.metadata.name or ""
                )
                existing = None
            if existing is None:
                self.create(body)
            else:
                body["metadata"]["resourceVersion"] = existing.metadata.resource_version
                self.replace(body)
        except ConflictError:
            return False
        return True

    def config_map_data(self, namespace: str, name: str) -> dict[str, str]:
        with self._lock:
            return dict(self._config_maps.get((namespace, name), {}))

    # -- read-modify-write, as a controller does it -----------------------------------------

    def update_status(
        self,
        kind: type[R],
        namespace: str,
        name: str,
        change: Callable[[R], dict[str, Any]],
        attempts: int = 5,
    ) -> bool:
        """Reads the object, lets `change` compute its new status (as a dict in API form) and
        writes it back at the version read, retrying on a conflict as a controller would."""
        for _ in range(attempts):
            body = self.get(kind, namespace, name)
            if body is None:
                return False
            model = validate_resource(body)
            if not isinstance(model, kind):
                return False
            if self.replace_status(kind, {**body, "status": change(model)}):
                return True
        return False


def _meta(namespace: str, name: str) -> Body:
    return {"metadata": {"namespace": namespace, "name": name}}
