"""A list-and-watch mirror of one kind of object in one API server, like client-go's informer.

The operator reads the hub's objects and the members' shard resources from these mirrors
instead of listing them on every pass: a pass that changes nothing then costs no request at
all, and a change reaches its handler as soon as the API server announces it. A mirror is a
cache, never a record of its own: it starts from a list, follows the watch, lists again when
the watch expires or breaks, and is rebuilt from nothing on restart. Writes still go to the API
server with the resourceVersion they were read at, so a stale mirror costs a 409 and a retry,
never a lost update; what a write returns is put in the mirror at once (`store`), so the next
pass sees its own write without waiting for the watch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from continuum.operator.adapters.store import identity

LOG = logging.getLogger(__name__)
Body = dict[str, Any]
Key = tuple[str, str]
# The server ends each watch after this long, and the mirror watches again from where it was:
# short enough that a half-open connection to a vanished member is noticed within a minute.
WATCH_TIMEOUT_S = 50
CONNECT_TIMEOUT_S = 5.0
LIST_TIMEOUT_S = 30.0
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 10.0
GONE = 410
# The changes a mirror remembers by key, for readers that update what they built from it
# rather than build it again (`changed_since`); one further behind builds again.
JOURNAL_LIMIT = 20_000
# event type ("ADDED", "MODIFIED", "DELETED"), the object as it is now (for DELETED, as it
# was last), and the version the mirror held before (None if it held none)
ChangeHandler = Callable[[str, Body, Body | None], None]
IndexFunction = Callable[[Body], Hashable]


class WatchCache:
    """Mirrors what `list_function(**list_arguments)` lists (a `list_*` method of a kubernetes
    client API, which also takes `watch=True`), and calls `on_change` for every change it sees,
    including those of the first list (as ADDED). `on_change` runs on the mirror's thread and
    must be quick: it enqueues work, it does not do it. With `index`, `indexed(value)` gives
    the objects whose `index(object)` is `value` without looking at the others; `indexes`
    adds more, by name: `indexed(value, name)`."""

    def __init__(
        self,
        name: str,
        list_function: Callable[..., Any],
        list_arguments: dict[str, Any] | None = None,
        on_change: ChangeHandler | None = None,
        index: IndexFunction | None = None,
        indexes: Mapping[str, IndexFunction] | None = None,
    ) -> None:
        self.name = name
        self._list_function = list_function
        self._list_arguments = dict(list_arguments or {})
        self._on_change = on_change
        self._indexes = {**({"": index} if index is not None else {}), **(indexes or {})}
        self._items: dict[Key, Body] = {}
        self._indexed: dict[str, dict[Hashable, dict[Key, Body]]] = {}
        self._lock = threading.Lock()
        # Counts every change of the items: a reader that built something from them can tell,
        # by the same count, that it still stands.
        self._changes = 0
        # (change count, key) of each change since the last list replaced everything (the
        # count then: `_listed_at`), the newest JOURNAL_LIMIT of them.
        self._journal: deque[tuple[int, Key]] = deque(maxlen=JOURNAL_LIMIT)
        self._listed_at = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stream: watch.Watch | None = None
        # Set once the first list has arrived, cleared while the API server cannot be reached.
        self.synced = threading.Event()
        # Set by the first complete list, and never cleared: the items are known, if stale.
        self.listed = threading.Event()
        self.last_error = ""

    def start(self) -> WatchCache:
        self._thread = threading.Thread(target=self._run, name=f"watch-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.stop()

    def wait_synced(self, timeout_s: float) -> bool:
        return self.synced.wait(timeout_s)

    def is_synced(self) -> bool:
        return self.synced.is_set()

    def has_listed(self) -> bool:
        return self.listed.is_set()

    def items(self) -> list[Body]:
        with self._lock:
            return list(self._items.values())

    def changes(self) -> Hashable:
        """Different after any change of the items (read it before them)."""
        with self._lock:
            return self._changes

    def changed_since(self, changes: Hashable) -> tuple[Hashable, dict[Key, Body | None]] | None:
        """The count now, and each object changed after `changes` (a count `changes()` gave)
        as it is now, None if gone, oldest change first; None when the mirror cannot tell
        (it listed everything again since, or no longer remembers that far back)."""
        with self._lock:
            if not isinstance(changes, int) or changes < self._listed_at:
                return None
            if changes < self._changes and (not self._journal or self._journal[0][0] > changes + 1):
                return None
            newest_first: dict[Key, None] = {}
            for number, key in reversed(self._journal):
                if number <= changes:
                    break
                newest_first.setdefault(key)
            keys = reversed(list(newest_first))
            return self._changes, {key: self._items.get(key) for key in keys}

    def get(self, key: Key) -> Body | None:
        with self._lock:
            return self._items.get(key)

    def indexed(self, value: Hashable, index: str = "") -> list[Body]:
        with self._lock:
            return list(self._indexed.get(index, {}).get(value, {}).values())

    def store(self, body: Body) -> None:
        """Puts what a write returned in the mirror, and tells `on_change` as the watch would
        have. The watch brings the same version a moment later, and is not told twice."""
        with self._lock:
            before = self._items.get(identity(body))
            self._put(body)
        if _version(before) != _version(body):
            self._notify("ADDED" if before is None else "MODIFIED", body, before)

    def discard(self, key: Key) -> None:
        with self._lock:
            before = self._items.get(key)
            self._remove(key)
        if before is not None:
            self._notify("DELETED", before, before)

    def _put(self, body: Body) -> None:
        # As client-go's informers may: nothing here reads them, and each entry is a few more
        # nested objects kept, and scanned again by every full garbage collection. A write of a
        # body without them keeps the server's, which reads none as "unchanged".
        body.get("metadata", {}).pop("managedFields", None)
        key = identity(body)
        self._remove(key)
        self._changes += 1
        self._journal.append((self._changes, key))
        self._items[key] = body
        for name, index in self._indexes.items():
            self._indexed.setdefault(name, {}).setdefault(index(body), {})[key] = body

    def _remove(self, key: Key) -> None:
        body = self._items.pop(key, None)
        if body is None:
            return
        self._changes += 1
        self._journal.append((self._changes, key))
        for name, index in self._indexes.items():
            buckets = self._indexed.get(name, {})
            value = index(body)
            bucket = buckets.get(value, {})
            bucket.pop(key, None)
            if not bucket:
                buckets.pop(value, None)

    def _notify(self, event_type: str, body: Body, before: Body | None) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(event_type, body, before)
        except Exception:
            LOG.exception("%s: change handler failed", self.name)

    def _list(self) -> str:
        listed: Any = self._list_function(**self._list_arguments, _request_timeout=LIST_TIMEOUT_S)
        items: list[Body] = listed.get("items", [])
        fresh = {identity(item): item for item in items}
        with self._lock:
            gone = [body for key, body in self._items.items() if key not in fresh]
            changed = [
                (body, self._items.get(key))
                for key, body in fresh.items()
                if _version(self._items.get(key)) != _version(body)
            ]
            self._items, self._indexed = {}, {}
            self._changes += 1
            self._listed_at = self._changes
            self._journal.clear()
            for body in items:
                self._put(body)
        for body in gone:
            self._notify("DELETED", body, body)
        for body, before in changed:
            self._notify("ADDED" if before is None else "MODIFIED", body, before)
        self.synced.set()
        self.listed.set()
        self.last_error = ""
        version: str = listed.get("metadata", {}).get("resourceVersion", "")
        return version

    def _watch(self, resource_version: str) -> str:
        """Follows the watch until the server ends it; returns the last resourceVersion seen."""
        self._stream = stream = watch.Watch()
        for event in stream.stream(
            self._list_function,
            **self._list_arguments,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_TIMEOUT_S,
            _request_timeout=(CONNECT_TIMEOUT_S, WATCH_TIMEOUT_S + 10),
        ):
            if self._stop.is_set():
                break
            event_type, body = event["type"], event["object"]
            # The mirror keeps where to watch from next itself: the client's Watch does only
            # for list functions whose return type it can tell, and one it cannot tell (a
            # wrapper) would watch again from the first list's version, replaying every
            # change since then as if new.
            resource_version = _version(body) or resource_version
            if event_type == "BOOKMARK":
                continue
            with self._lock:
                before = self._items.get(identity(body))
                if event_type == "DELETED":
                    self._remove(identity(body))
                else:
                    self._put(body)
            if event_type != "DELETED" and _version(before) == _version(body):
                continue  # the echo of a write whose result is in the mirror already
            self._notify(event_type, body, before)
        return resource_version

    def _run(self) -> None:
        delay = RETRY_INITIAL_S
        resource_version = ""
        while not self._stop.is_set():
            try:
                if not resource_version:
                    resource_version = self._list()
                resource_version = self._watch(resource_version)
                delay = RETRY_INITIAL_S
            except ApiException as error:
                if error.status != GONE:
                    self._failed(f"HTTP {error.status}: {error.reason}")
                    self._stop.wait(delay)
                    delay = min(delay * 2, RETRY_MAX_S)
                resource_version = ""  # expired, or unknown after an error: list afresh
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as error:
                self._failed(str(error)[:500])
                resource_version = ""
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    def _failed(self, message: str) -> None:
        if not self._stop.is_set():
            LOG.debug("%s: list or watch failed: %s", self.name, message)
        self.last_error = message
        self.synced.clear()


def _version(body: Body | None) -> str | None:
    return body.get("metadata", {}).get("resourceVersion") if body is not None else None


class NamespacedCaches:
    """One kind mirrored in a few namespaces, by a WatchCache each (a namespaced list and
    watch), and read as one WatchCache: what an operator confined to those namespaces sees, with
    credentials that need not allow a list across the cluster. An object of any other namespace
    does not exist for it: `get` does not find it, and `store` does not keep it."""

    def __init__(self, caches: Mapping[str, WatchCache]) -> None:
        self._caches = dict(caches)

    def start(self) -> NamespacedCaches:
        for cache in self._caches.values():
            cache.start()
        return self

    def stop(self) -> None:
        for cache in self._caches.values():
            cache.stop()

    def wait_synced(self, timeout_s: float) -> bool:
        return wait_all_synced(self._caches.values(), timeout_s)

    def is_synced(self) -> bool:
        return all(cache.is_synced() for cache in self._caches.values())

    def has_listed(self) -> bool:
        return all(cache.has_listed() for cache in self._caches.values())

    def items(self) -> list[Body]:
        return [body for cache in self._caches.values() for body in cache.items()]

    def changes(self) -> Hashable:
        return tuple(cache.changes() for cache in self._caches.values())

    def changed_since(self, changes: Hashable) -> tuple[Hashable, dict[Key, Body | None]] | None:
        """As WatchCache.changed_since, over every namespace (`changes` from `changes()`)."""
        if not isinstance(changes, tuple) or len(changes) != len(self._caches):
            return None
        counts, changed = [], {}
        for cache, since in zip(self._caches.values(), changes, strict=True):
            found = cache.changed_since(since)
            if found is None:
                return None
            counts.append(found[0])
            changed.update(found[1])
        return tuple(counts), changed

    def get(self, key: Key) -> Body | None:
        cache = self._caches.get(key[0])
        return cache.get(key) if cache is not None else None

    def indexed(self, value: Hashable, index: str = "") -> list[Body]:
        return [body for cache in self._caches.values() for body in cache.indexed(value, index)]

    def store(self, body: Body) -> None:
        cache = self._caches.get(identity(body)[0])
        if cache is not None:
            cache.store(body)

    def discard(self, key: Key) -> None:
        cache = self._caches.get(key[0])
        if cache is not None:
            cache.discard(key)


def custom_object_cache(
    name: str,
    objects: client.CustomObjectsApi,
    arguments: dict[str, Any],
    namespaces: Sequence[str] = (),
    on_change: ChangeHandler | None = None,
    index: IndexFunction | None = None,
    indexes: Mapping[str, IndexFunction] | None = None,
) -> WatchCache | NamespacedCaches:
    """A mirror of the custom objects that `arguments` name (group, version, plural, and any
    options of the list, such as a label selector): in every namespace by one list and watch
    across the cluster, or, given `namespaces`, by a list and watch in each of them."""
    if not namespaces:
        return WatchCache(
            name, objects.list_cluster_custom_object, arguments, on_change, index, indexes
        )
    return NamespacedCaches(
        {
            namespace: WatchCache(
                f"{name}-{namespace}",
                objects.list_namespaced_custom_object,
                {**arguments, "namespace": namespace},
                on_change,
                index,
                indexes,
            )
            for namespace in dict.fromkeys(namespaces)
        }
    )


def wait_all_synced(caches: Iterable[WatchCache | NamespacedCaches], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    return all(cache.wait_synced(max(0.0, deadline - time.monotonic())) for cache in caches)
