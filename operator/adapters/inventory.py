"""A short-lived, shared view of the shard resources in each member namespace.

Every Placement's pass visits every member, so that nothing is left behind where a shard used
to be. Listing per job would cost jobs × members × kinds requests per pass; this lists each
(member, namespace) once per `ttl_s` for all jobs, and filters by the job's labels here. It is a
cache of what the members hold, never a record of its own: an entry expires within a second,
and any write to a member namespace drops its entry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from continuum.operator.adapters.kube import MEMBER_REQUEST_TIMEOUT_S
from continuum.operator.adapters.kuberay import (
    MANAGED_SELECTOR,
    RESOURCE_KINDS,
    SHARD_LABELS,
    job_label_value,
)
from continuum.operator.api import MLJob

Manifest = dict[str, Any]
DEFAULT_TTL_S = 1.0


@dataclass
class _Entry:
    listed_at: float
    items: list[Manifest]


def list_managed(api: client.ApiClient, namespace: str, selector: str) -> list[Manifest]:
    objects = client.CustomObjectsApi(api)
    found: list[Manifest] = []
    for kind in RESOURCE_KINDS:
        listed: Any = objects.list_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural,
            label_selector=selector, _request_timeout=MEMBER_REQUEST_TIMEOUT_S,
        )  # fmt: skip
        found.extend(listed.get("items", []))
    return found


def belongs_to(resource: Manifest, job: MLJob) -> bool:
    labels = resource.get("metadata", {}).get("labels", {})
    if labels.get(SHARD_LABELS.job) != job_label_value(job.metadata.name or ""):
        return False
    return not job.metadata.uid or labels.get(SHARD_LABELS.job_uid) == job.metadata.uid


class MemberInventory:
    def __init__(
        self, ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s, self.clock = ttl_s, clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.Lock()

    def job_resources(
        self, member: str, api: client.ApiClient, namespace: str, job: MLJob
    ) -> list[Manifest]:
        key = (member, namespace)
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or self.clock() - entry.listed_at > self.ttl_s:
            entry = _Entry(self.clock(), list_managed(api, namespace, MANAGED_SELECTOR))
            with self._lock:
                self._entries[key] = entry
        return [item for item in entry.items if belongs_to(item, job)]

    def invalidate(self, member: str, namespace: str) -> None:
        with self._lock:
            self._entries.pop((member, namespace), None)
