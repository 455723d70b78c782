"""The watch mirror (adapters/watchcache.py) watches again from the newest version it saw, also
through a list function whose return type the kubernetes client cannot tell (as the Pull
members' Lease mirror's wrapper in adapters/pull.py): a watch from the first list's version
would have the API server replay every change since then, each told again as new (a dead
agent's old renewals read as fresh ones). The API server is played by a function here."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from continuum.operator.adapters.watchcache import WatchCache

pytestmark = pytest.mark.unit


def lease(version: str, renewed: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "continuum-member-a", "name": "agent",
                     "resourceVersion": version},
        "spec": {"renewTime": renewed},
    }  # fmt: skip


class Response:
    """What the client's Watch reads a watch from: JSON lines, then the server ends it."""

    status = 200

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.lines = [json.dumps(event).encode() + b"\n" for event in events]

    def stream(self, amt: Any = None, decode_content: bool = False) -> Iterator[bytes]:
        yield from self.lines

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


class Server:
    """Lists at version 10; the first watch brings two renewals and a bookmark, then ends (the
    server's timeout); the watches after it bring nothing, and the third stops the mirror."""

    def __init__(self) -> None:
        self.watched_from: list[str] = []
        self.cache: WatchCache | None = None
        self.done = threading.Event()

    def list_leases(self, **arguments: Any) -> Any:
        """A wrapper, as adapters/pull.py's: nothing tells the client what it returns."""
        if not arguments.get("watch"):
            return {"metadata": {"resourceVersion": "10"}, "items": [lease("10", "t0")]}
        self.watched_from.append(str(arguments.get("resource_version")))
        if len(self.watched_from) == 1:
            return Response([
                {"type": "MODIFIED", "object": lease("11", "t1")},
                {"type": "MODIFIED", "object": lease("12", "t2")},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}},
            ])  # fmt: skip
        if len(self.watched_from) >= 3:
            assert self.cache is not None
            self.cache.stop()
            self.done.set()
        return Response([])


def test_watches_again_from_the_newest_version_seen_and_tells_no_change_twice() -> None:
    server = Server()
    told: list[tuple[str, str]] = []
    cache = WatchCache(
        "leases", server.list_leases,
        on_change=lambda event, body, before: told.append((event, body["spec"]["renewTime"])),
    )  # fmt: skip
    server.cache = cache
    cache.start()
    assert server.done.wait(10)

    assert server.watched_from == ["10", "15", "15"]
    assert told == [("ADDED", "t0"), ("MODIFIED", "t1"), ("MODIFIED", "t2")]
    assert cache.get(("continuum-member-a", "agent"))["spec"]["renewTime"] == "t2"  # type: ignore[index]
