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
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from continuum.operator.adapters.hub import PLURALS, Hub
from continuum.operator.adapters.store import Listed, listed_from
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
        # per kind, (uid, resourceVersion) -> what validate_resource made of that version
        self._validated: dict[type[Resource], dict[tuple[str, str], Validated]] = {
            kind: {} for kind in PLURALS
        }
        # per kind, the last list made and the mirror's change count it was made at
        self._listed: dict[type[Resource], tuple[Hashable, Listed[Any]]] = {}
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

    def _validate(self, kind: type[Resource], body: Body, memo: dict[Any, Validated]) -> Validated:
        metadata = body.get("metadata", {})
        version = (metadata.get("uid", ""), metadata.get("resourceVersion", ""))
        with self._lock:
            known = self._validated[kind]
            if version in known:
                memo[version] = known[version]
                return known[version]
        result = validate_resource(body)
        memo[version] = result
        return result

    def list(self, kind: type[Resource]) -> Listed[Any]:
        """Made again only after the mirror changed: a fleet's thousand MemberClusters are
        listed by every job's pass, and most passes find them as the last one did. The lists
        are the caller's own; the mappings are shared and read-only."""
        changes = self.caches[kind].changes()
        with self._lock:
            made = self._listed.get(kind)
        if made is None or made[0] != changes:
            memo: dict[tuple[str, str], Validated] = {}
            listed = listed_from(
                kind, self.caches[kind].items(), lambda body: self._validate(kind, body, memo)
            )
            with self._lock:
                # Only the versions the mirror holds now, so the memo does not grow.
                self._validated[kind] = memo
                self._listed[kind] = (changes, listed)
            made = (changes, listed)
        listed = made[1]
        return Listed(list(listed.valid), listed.invalid, listed.raw)

    def get(self, kind: type[Resource], key: Key) -> Body | None:
        return self.caches[kind].get(key)

    def model(self, kind: type[Resource], key: Key) -> tuple[Resource, Body] | None:
        body = self.get(kind, key)
        if body is None:
            return None
        result = self._validate(kind, body, {})
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
