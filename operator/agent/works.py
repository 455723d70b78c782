"""The agent's view of its work on the hub: the MemberWorks in its member's namespace, listed and
watched (one watch, which the member's credential allows and nothing more), and their status,
which the agent writes.

The view counts as synced only from a completed list on the current connection until that
connection fails (`WatchCache`): what the agent deletes it deletes only on what a synced view
says, never on what it remembers from before a disconnection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from continuum.operator.adapters.watchcache import WatchCache
from continuum.operator.api import GROUP, VERSION
from continuum.operator.api.work import member_namespace

WORK_PLURAL = "memberworks"
FIELD_MANAGER = "continuum-agent"
APPLY_PATCH = "application/apply-patch+yaml"
REQUEST_TIMEOUT_S = 10.0
Body = dict[str, Any]


class WorkView:
    """`on_change` hears the name of every work that changed (or went), on the watch's thread."""

    def __init__(
        self, hub: client.ApiClient, member: str, on_change: Callable[[str], None]
    ) -> None:
        self.namespace = member_namespace(member)
        self._objects = client.CustomObjectsApi(hub)
        self._cache = WatchCache(
            f"memberworks-{member}",
            self._objects.list_namespaced_custom_object,
            {"group": GROUP, "version": VERSION, "plural": WORK_PLURAL,
             "namespace": self.namespace},
            on_change=lambda event, body, before: on_change(body["metadata"]["name"]),
        )  # fmt: skip

    def start(self) -> WorkView:
        self._cache.start()
        return self

    def stop(self) -> None:
        self._cache.stop()

    def is_synced(self) -> bool:
        return self._cache.is_synced()

    def wait_synced(self, timeout_s: float) -> bool:
        return self._cache.wait_synced(timeout_s)

    def get(self, name: str) -> Body | None:
        return self._cache.get((self.namespace, name))

    def names(self) -> list[str]:
        return [body["metadata"]["name"] for body in self._cache.items()]

    def apply_status(self, name: str, status: Body) -> Body | None:
        """Server-side applies `status` to the work's status subresource as the agent; returns
        the work as written (kept in the view at once), or None when the work is gone."""
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "MemberWork",
            "metadata": {"name": name, "namespace": self.namespace},
            "status": status,
        }
        try:
            written: Any = self._objects.patch_namespaced_custom_object_status(
                GROUP, VERSION, self.namespace, WORK_PLURAL, name, body,
                field_manager=FIELD_MANAGER, force=True, _content_type=APPLY_PATCH,
                _request_timeout=REQUEST_TIMEOUT_S,
            )  # fmt: skip
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        result: Body = dict(written)
        self._cache.store(result)
        return result
