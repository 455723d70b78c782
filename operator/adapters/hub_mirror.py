"""The hub's Continuum objects read from watch mirrors, written through to the API server.

It is the ObjectStore the operator's scheduling cycle and placement controller use: a cycle
over a few hundred jobs then costs no list request, and an object is validated once per
resourceVersion rather than once per pass. Writes go to the API server exactly as `Hub` makes
them (optimistic, at the resourceVersion read), and what they return goes into the mirror.

Confined to some namespaces, it mirrors MLJobs and Placements in those alone, so that nothing
the operator decides or writes concerns a job elsewhere; MemberClusters and Tenants, which are
cluster-scoped, it mirrors whole.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from continuum.operator.adapters.hub import PLURALS, Hub
from continuum.operator.adapters.store import Listed, identity
from continuum.operator.adapters.watchcache import (
    Body,
    Key,
    NamespacedCaches,
    WatchCache,
    custom_object_cache,
    wait_all_synced,
)
from continuum.operator.api import (
    GROUP,
    VERSION,
    MLJob,
    Placement,
    PlacementSpec,
    Resource,
    validate_resource,
)
from continuum.operator.api.validation import FieldError

# kind, event type, the object and its version before, for every change any mirror sees
HubChangeHandler = Callable[[type[Resource], str, Body, Body | None], None]
Validated = Resource | list[FieldError] | None
CONFIG_MAP_TTL_S = 5.0
# The kinds whose CRDs are namespaced (api/crd.py); the others are cluster-scoped.
NAMESPACED_KINDS: tuple[type[Resource], ...] = (MLJob, Placement)


def _version_of(body: Body) -> tuple[str, str]:
    metadata = body.get("metadata", {})
    return (metadata.get("uid", ""), metadata.get("resourceVersion", ""))


class _Listing:
    """One kind's objects sorted as `listed_from` sorts them, and each version's validation,
    updated by the changes the mirror journals; `listed`, the Listed handed out since the last
    change."""

    def __init__(self, changes: Hashable) -> None:
        self.changes = changes
        self.valid: dict[Key, Resource] = {}
        self.invalid: dict[Key, list[FieldError]] = {}
        self.raw: dict[Key, Body] = {}
        # (uid, resourceVersion) -> what validate_resource made of that version
        self.versions: dict[tuple[str, str], Validated] = {}
        self.listed: Listed[Any] = Listed([], {}, {})

    @classmethod
    def of(
        cls, kind: type[Resource], changes: Hashable, bodies: Sequence[Body], old: _Listing | None
    ) -> _Listing:
        """Built afresh, reusing `old`'s validations of the versions still there."""
        listing = cls(changes)
        known = old.versions if old is not None else {}
        for body in bodies:
            listing._put(kind, body, known)
        listing._publish()
        return listing

    def update(
        self, kind: type[Resource], changes: Hashable, bodies: Mapping[Key, Body | None]
    ) -> None:
        """`bodies`: the objects changed, as they are now (None: gone), oldest change first."""
        self.changes = changes
        for key, body in bodies.items():
            old = self.raw.pop(key, None)
            self.valid.pop(key, None)
            self.invalid.pop(key, None)
            if old is not None:
                self.versions.pop(_version_of(old), None)
            if body is not None:
                self._put(kind, body, {})
        self._publish()

    def _put(
        self, kind: type[Resource], body: Body, known: Mapping[tuple[str, str], Validated]
    ) -> None:
        # The order listed_from gives: the mirror's, where a changed object moves to the end.
        key, version = identity(body), _version_of(body)
        self.raw[key] = body
        result = known[version] if version in known else validate_resource(body)
        self.versions[version] = result
        if isinstance(result, kind):
            self.valid[key] = result
        elif isinstance(result, list):
            self.invalid[key] = result

    def _publish(self) -> None:
        self.listed = Listed(list(self.valid.values()), dict(self.invalid), dict(self.raw))


class HubMirror:
    """`namespaces`: the only namespaces whose MLJobs and Placements it mirrors; empty, every
    namespace."""

    def __init__(
        self,
        hub: Hub,
        on_change: HubChangeHandler | None = None,
        namespaces: Sequence[str] = (),
    ) -> None:
        self.hub = hub
        self.caches: dict[type[Resource], WatchCache | NamespacedCaches] = {}
        for kind, plural in PLURALS.items():
            notify = functools.partial(on_change, kind) if on_change is not None else None
            self.caches[kind] = custom_object_cache(
                plural,
                hub.objects,
                {"group": GROUP, "version": VERSION, "plural": plural},
                namespaces if kind in NAMESPACED_KINDS else (),
                on_change=notify,
            )
        # per kind, what the last list made, kept up to date change by change
        self._listings: dict[type[Resource], _Listing] = {}
        self._listing_locks = {kind: threading.Lock() for kind in PLURALS}
        self._lock = threading.Lock()
        self._config_maps: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}

    def start(self) -> HubMirror:
        for cache in self.caches.values():
            cache.start()
        return self

    def stop(self) -> None:
        for cache in self.caches.values():
            cache.stop()

    def wait_synced(self, timeout_s: float) -> bool:
        return wait_all_synced(self.caches.values(), timeout_s)

    def list(self, kind: type[Resource]) -> Listed[Any]:
        """Brought up to date with the objects changed since the last list alone, each
        validated once per version: the cycle lists thousands of jobs a few times a second, and
        every job's pass lists a fleet's thousand MemberClusters. The lists are the caller's
        own; the mappings are shared and read-only."""
        cache = self.caches[kind]
        with self._listing_locks[kind]:
            listing = self._listings.get(kind)
            changed = cache.changed_since(listing.changes) if listing is not None else None
            if listing is None or changed is None:
                changes = cache.changes()
                listing = _Listing.of(kind, changes, cache.items(), listing)
                self._listings[kind] = listing
            elif changed[1]:
                listing.update(kind, changed[0], changed[1])
            else:
                listing.changes = changed[0]
            listed = listing.listed
        return Listed(list(listed.valid), listed.invalid, listed.raw)

    def get(self, kind: type[Resource], key: Key) -> Body | None:
        return self.caches[kind].get(key)

    def model(self, kind: type[Resource], key: Key) -> tuple[Resource, Body] | None:
        body = self.get(kind, key)
        if body is None:
            return None
        listing = self._listings.get(kind)
        known = listing.versions.get(_version_of(body)) if listing is not None else None
        result = known if known is not None else validate_resource(body)
        return (result, body) if isinstance(result, kind) else None

    def replace_status(self, kind: type[Resource], body: dict[str, Any]) -> bool:
        written = self.hub.put_status(kind, body)
        if written is not None:
            self.caches[kind].store(written)
        return written is not None

    def put_finalizers(
        self, kind: type[Resource], body: Body, finalizers: Sequence[str]
    ) -> Body | None:
        written = self.hub.put_finalizers(kind, body, finalizers)
        if written is not None:
            self.caches[kind].store(written)
        return written

    def write_placement(self, job: MLJob, spec: PlacementSpec, existing: Placement | None) -> bool:
        """False when it was not written: a conflict, or the job is gone."""
        written = self.hub.put_placement(job, spec, existing)
        if written is not None:
            self.caches[Placement].store(written)
        return written is not None

    def config_map_data(self, namespace: str, name: str) -> dict[str, str]:
        """The network ConfigMap, read at most every CONFIG_MAP_TTL_S: every cycle asks for it,
        and it changes when an operator of the network edits it, not with every job."""
        now = time.monotonic()
        with self._lock:
            cached = self._config_maps.get((namespace, name))
        if cached is not None and now - cached[0] < CONFIG_MAP_TTL_S:
            return cached[1]
        data = self.hub.config_map_data(namespace, name)
        with self._lock:
            self._config_maps[(namespace, name)] = (now, data)
        return data
