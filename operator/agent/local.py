"""What the agent's own cluster holds of Continuum's shard resources: every managed RayJob and
RayService, mirrored by list-and-watch and indexed by job, as the operator mirrors a Push member.

A change there (KubeRay moving a RayJob to Running, a person deleting one) names the job whose
work is to be converged and reported again. While the mirror is not in step with the API
server, the job's resources are listed directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes import client

from continuum.operator.adapters.member_mirror import job_of, list_managed
from continuum.operator.adapters.watchcache import WatchCache, custom_object_cache
from continuum.operator.api.keys import JobKey
from continuum.operator.api.shard_resources import MANAGED_SELECTOR, RESOURCE_KINDS, job_selector

Manifest = dict[str, Any]


class LocalResources:
    """`on_change` hears the job of every shard resource that changed, on a watch's thread."""

    def __init__(self, api: client.ApiClient, on_change: Callable[[JobKey], None]) -> None:
        self.api = api
        objects = client.CustomObjectsApi(api)
        self._caches: dict[str, WatchCache] = {}
        for kind in RESOURCE_KINDS:
            cache = custom_object_cache(
                f"local-{kind.plural}",
                objects,
                {"group": kind.group, "version": kind.version, "plural": kind.plural,
                 "label_selector": MANAGED_SELECTOR},
                on_change=lambda event, body, before: on_change(job_of(body)),
                index=job_of,
            )  # fmt: skip
            assert isinstance(cache, WatchCache)  # one list and watch across the cluster
            self._caches[kind.kind] = cache

    def start(self) -> LocalResources:
        for cache in self._caches.values():
            cache.start()
        return self

    def stop(self) -> None:
        for cache in self._caches.values():
            cache.stop()

    def is_synced(self) -> bool:
        return all(cache.is_synced() for cache in self._caches.values())

    def of_job(self, job: JobKey) -> list[Manifest]:
        """The job's shard resources (of every uid), from the mirror when it is in step, else
        as listed now."""
        if self.is_synced():
            return [item for cache in self._caches.values() for item in cache.indexed(job)]
        return list_managed(self.api, job.namespace, job_selector(job.name))

    def items(self) -> list[Manifest]:
        """Every managed shard resource, as the mirror holds it (none before its first list)."""
        return [item for cache in self._caches.values() for item in cache.items()]

    def record(self, written: Manifest | None, removed: Manifest | None) -> None:
        """What a write returned (or removed), into the mirror at once."""
        body = written or removed
        cache = self._caches.get(str((body or {}).get("kind")))
        if body is None or cache is None:
            return
        if written is not None:
            cache.store(written)
        else:
            metadata = body.get("metadata", {})
            cache.discard((metadata.get("namespace", ""), metadata.get("name", "")))
