"""What each member holds of Continuum's shard resources, mirrored by list-and-watch.

Every Placement's pass visits every member, so that nothing is left behind where a shard used
to be. Listing per pass would cost jobs × members × kinds requests; the mirrors cost one watch
per member and kind, and a change in a member (KubeRay moving a RayJob to Running) reaches the
placement controller as it happens, not at its next poll. They are caches, never a record of
their own: a member whose mirror is not in step with its API server (not listed yet, or its
watch broken) is asked directly. An operator confined to some namespaces mirrors those alone
in each member, and so never converges or sweeps a shard resource elsewhere.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from kubernetes import client

from continuum.operator.adapters.pull import WorkMirror
from continuum.operator.adapters.watchcache import WatchCache, custom_object_cache
from continuum.operator.api import MLJob
from continuum.operator.api.keys import JobKey
from continuum.operator.api.shard_resources import (
    MANAGED_SELECTOR,
    RESOURCE_KINDS,
    SHARD_LABELS,
    job_label_value,
)
from continuum.operator.api.work import reported_resources

Manifest = dict[str, Any]
# member name, event type, and the shard resource
MemberChangeHandler = Callable[[str, str, Manifest], None]


def list_managed(api: client.ApiClient, namespace: str, selector: str) -> list[Manifest]:
    objects = client.CustomObjectsApi(api)
    found: list[Manifest] = []
    for kind in RESOURCE_KINDS:
        listed: Any = objects.list_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural,
            label_selector=selector,
        )  # fmt: skip
        found.extend(listed.get("items", []))
    return found


def belongs_to(resource: Manifest, job: MLJob) -> bool:
    labels = resource.get("metadata", {}).get("labels", {})
    if labels.get(SHARD_LABELS.job) != job_label_value(job.metadata.name or ""):
        return False
    return not job.metadata.uid or labels.get(SHARD_LABELS.job_uid) == job.metadata.uid


def job_of(resource: Manifest) -> JobKey:
    """The key of a shard resource's MLJob: the label holds a shortened name, the annotation
    the whole of it."""
    metadata = resource.get("metadata", {})
    annotations = metadata.get("annotations") or {}
    return JobKey(
        metadata.get("namespace", ""), annotations.get(SHARD_LABELS.job_name_annotation, "")
    )


class _Member:
    def __init__(
        self,
        name: str,
        api: client.ApiClient,
        on_change: MemberChangeHandler,
        namespaces: Sequence[str],
    ) -> None:
        self.api = api
        self.since = time.monotonic()
        objects = client.CustomObjectsApi(api)
        self.caches = {
            kind.kind: custom_object_cache(
                f"{name}-{kind.plural}",
                objects,
                {"group": kind.group, "version": kind.version, "plural": kind.plural,
                 "label_selector": MANAGED_SELECTOR},
                namespaces,
                on_change=lambda event, body, _: on_change(name, event, body),
                index=job_of,
            ).start()
            for kind in RESOURCE_KINDS
        }  # fmt: skip

    def synced(self) -> bool:
        return all(cache.is_synced() for cache in self.caches.values())

    def listed(self) -> bool:
        return all(cache.has_listed() for cache in self.caches.values())

    def job_resources(self, namespace: str, job: MLJob) -> list[Manifest]:
        return [
            item
            for cache in self.caches.values()
            for item in cache.indexed((namespace, job.metadata.name or ""))
            if belongs_to(item, job)
        ]

    def items(self) -> list[Manifest]:
        return [item for cache in self.caches.values() for item in cache.items()]

    def stop(self) -> None:
        for cache in self.caches.values():
            cache.stop()


class _PulledMember:
    """A Pull member, seen through its agent's reports in the MemberWorks: what it holds of a
    job is what its agent last reported, which the operator never writes itself."""

    def __init__(self, name: str, works: WorkMirror) -> None:
        self.name = name
        self.works = works
        self.since = time.monotonic()
        self.caches: dict[str, WatchCache] = {}  # nothing of its own to record a write in

    def synced(self) -> bool:
        return self.works.is_synced()

    def listed(self) -> bool:
        return self.works.is_synced()

    def job_resources(self, namespace: str, job: MLJob) -> list[Manifest]:
        work = self.works.work(self.name, namespace, job.metadata.name or "")
        return [item for item in reported_resources(work) if belongs_to(item, job)]

    def items(self) -> list[Manifest]:
        return [
            item for work in self.works.of_member(self.name) for item in reported_resources(work)
        ]

    def stop(self) -> None:
        pass


class MemberMirrors:
    """`namespaces`: the only namespaces mirrored in each member; empty, every namespace."""

    def __init__(
        self, on_change: MemberChangeHandler | None = None, namespaces: Sequence[str] = ()
    ) -> None:
        self._on_change: MemberChangeHandler = on_change or (lambda member, event, body: None)
        self._namespaces = tuple(namespaces)
        self._members: dict[str, _Member | _PulledMember] = {}
        self._lock = threading.Lock()

    def follow(self, member: str, api: client.ApiClient) -> None:
        """Mirrors `member` through `api`; a new client (a rotated kubeconfig) restarts it."""
        with self._lock:
            current = self._members.get(member)
            if isinstance(current, _Member) and current.api is api:
                return
            if current is not None:
                current.stop()
            self._members[member] = _Member(member, api, self._on_change, self._namespaces)

    def follow_pulled(self, member: str, works: WorkMirror) -> None:
        """Reads a Pull member's holdings from its agent's reports in `works`."""
        with self._lock:
            if isinstance(self._members.get(member), _PulledMember):
                return
            current = self._members.pop(member, None)
            if current is not None:
                current.stop()
            self._members[member] = _PulledMember(member, works)

    def retain(self, members: set[str]) -> None:
        """Stops mirroring the members no longer registered."""
        with self._lock:
            for name in [name for name in self._members if name not in members]:
                self._members.pop(name).stop()

    def _in_step(self, member: str) -> _Member | _PulledMember | None:
        with self._lock:
            mirrored = self._members.get(member)
        return mirrored if mirrored is not None and mirrored.synced() else None

    def is_synced(self, member: str) -> bool:
        return self._in_step(member) is not None

    def has_listed(self, member: str) -> bool:
        """Whether `member`'s mirror has listed its shard resources once."""
        with self._lock:
            mirrored = self._members.get(member)
        return mirrored is not None and mirrored.listed()

    def awaits_first_list(self, member: str, patience_s: float) -> bool:
        """Whether `member`'s mirror, followed less than `patience_s` ago, has not listed its
        shard resources yet: until it does it shows none, whatever the member holds. One that
        cannot list them (its CRDs missing, its grants short) is waited for no longer."""
        with self._lock:
            mirrored = self._members.get(member)
        if mirrored is None or mirrored.listed():
            return False
        return time.monotonic() - mirrored.since < patience_s

    def job_resources(self, member: str, namespace: str, job: MLJob) -> list[Manifest] | None:
        """The job's shard resources in `member`, or None if its mirror is not in step."""
        mirrored = self._in_step(member)
        return None if mirrored is None else mirrored.job_resources(namespace, job)

    def last_known(self, member: str, namespace: str, job: MLJob) -> list[Manifest]:
        """The job's shard resources in `member` as its mirror last saw them, in step or not
        (none if it was never mirrored): what a member that does not answer may still hold."""
        with self._lock:
            mirrored = self._members.get(member)
        return [] if mirrored is None else mirrored.job_resources(namespace, job)

    def all_resources(self) -> dict[str, list[Manifest]]:
        """Member -> every shard resource it holds, for the members whose mirrors are in step."""
        with self._lock:
            members = dict(self._members)
        return {name: mirrored.items() for name, mirrored in members.items() if mirrored.synced()}

    def record(self, member: str, written: Manifest | None, removed: Manifest | None) -> None:
        """What a write to `member` returned (or removed), into its mirror at once."""
        with self._lock:
            mirrored = self._members.get(member)
        if mirrored is None:
            return
        body = written or removed
        if body is None or body.get("kind") not in mirrored.caches:
            return
        cache = mirrored.caches[body["kind"]]
        if written is not None:
            cache.store(written)
        else:
            metadata = body.get("metadata", {})
            cache.discard((metadata.get("namespace", ""), metadata.get("name", "")))

    def stop(self) -> None:
        with self._lock:
            for mirrored in self._members.values():
                mirrored.stop()
            self._members.clear()
