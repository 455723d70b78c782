"""Mirrors confined to some namespaces (watchcache.NamespacedCaches, HubMirror's namespaces): one
cache per namespace, read as one, and blind to every other namespace. The caches are not
started: what goes in comes by `store`, as a write's result would."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from continuum.operator.adapters.hub import Hub
from continuum.operator.adapters.hub_mirror import NAMESPACED_KINDS, HubMirror
from continuum.operator.adapters.watchcache import NamespacedCaches, WatchCache
from continuum.operator.api import MemberCluster, MLJob, Placement, Tenant
from continuum.operator.api.crd import DEFINITIONS

pytestmark = pytest.mark.unit


def never_listed(**_: Any) -> Any:
    raise AssertionError("an unstarted cache lists nothing")


def body(namespace: str, name: str, version: str = "1", team: str = "x") -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name, "resourceVersion": version,
                     "labels": {"team": team}},
    }  # fmt: skip


def caches(*namespaces: str) -> dict[str, WatchCache]:
    return {
        namespace: WatchCache(
            namespace, never_listed, index=lambda item: item["metadata"]["labels"]["team"]
        )
        for namespace in namespaces
    }


def test_reads_every_watched_namespace_as_one_and_nothing_of_the_others() -> None:
    scoped = NamespacedCaches(caches("a", "b"))
    scoped.store(body("a", "one"))
    scoped.store(body("b", "two", team="y"))
    scoped.store(body("c", "elsewhere"))

    assert sorted(item["metadata"]["name"] for item in scoped.items()) == ["one", "two"]
    assert scoped.get(("a", "one")) is not None
    assert scoped.get(("b", "one")) is None
    assert scoped.get(("c", "elsewhere")) is None
    assert [item["metadata"]["name"] for item in scoped.indexed("y")] == ["two"]

    scoped.discard(("b", "two"))
    scoped.discard(("c", "elsewhere"))
    assert [item["metadata"]["name"] for item in scoped.items()] == ["one"]


def test_is_in_step_only_when_every_namespace_is() -> None:
    inner = caches("a", "b")
    scoped = NamespacedCaches(inner)
    inner["a"].synced.set()
    assert not scoped.is_synced()
    assert not scoped.wait_synced(0)
    inner["b"].synced.set()
    assert scoped.is_synced()
    assert scoped.wait_synced(0)


def test_changes_are_told_for_the_watched_namespaces_only() -> None:
    seen: list[tuple[str, str]] = []
    scoped = NamespacedCaches(
        {
            namespace: WatchCache(
                namespace, never_listed, on_change=lambda event, item, _: seen.append(
                    (event, item["metadata"]["name"])
                )
            )
            for namespace in ("a",)
        }
    )  # fmt: skip
    scoped.store(body("a", "one"))
    scoped.store(body("a", "one", version="2"))
    scoped.store(body("b", "elsewhere"))
    assert seen == [("ADDED", "one"), ("MODIFIED", "one")]


@pytest.fixture
def hub() -> Iterator[Hub]:
    # A client that is never asked anything: the mirrors are not started.
    api = client.ApiClient(client.Configuration(host="https://127.0.0.1:9"))
    yield Hub(api)
    api.close()


def test_the_namespaced_kinds_are_those_whose_crds_are_namespaced() -> None:
    namespaced = {definition.kind for definition in DEFINITIONS if definition.scope == "Namespaced"}
    # MemberWorks live in the Pull members' own namespaces, not the jobs': the work mirror,
    # not the hub mirror, follows them.
    assert {kind.__name__ for kind in NAMESPACED_KINDS} | {"MemberWork"} == namespaced


def test_without_namespaces_the_hub_mirror_has_one_cache_per_kind(hub: Hub) -> None:
    mirror = HubMirror(hub)
    assert all(isinstance(cache, WatchCache) for cache in mirror.caches.values())


def test_a_confined_hub_mirror_holds_jobs_and_placements_of_its_namespaces_only(
    hub: Hub,
) -> None:
    mirror = HubMirror(hub, namespaces=("team-a", "team-b", "team-a"))
    for kind in (MLJob, Placement):
        assert isinstance(mirror.caches[kind], NamespacedCaches)
    # Cluster-scoped: mirrored whole, whatever the namespaces.
    for kind in (MemberCluster, Tenant):
        assert isinstance(mirror.caches[kind], WatchCache)

    for namespace in ("team-a", "team-b", "team-c"):
        mirror.caches[MLJob].store(body(namespace, "job"))
    assert sorted(mirror.list(MLJob).raw) == [("team-a", "job"), ("team-b", "job")]
    assert mirror.get(MLJob, ("team-c", "job")) is None
    assert mirror.model(MLJob, ("team-c", "job")) is None
    assert mirror.get(MLJob, ("team-a", "job")) is not None


def test_a_cache_keeps_every_index_in_step_with_writes_and_deletions() -> None:
    cache = WatchCache(
        "teams",
        never_listed,
        index=lambda item: item["metadata"]["labels"]["team"],
        indexes={"namespace": lambda item: item["metadata"]["namespace"]},
    )
    cache.store(body("a", "one"))
    cache.store(body("b", "two", team="y"))
    cache.store(body("b", "three", team="y"))
    assert sorted(item["metadata"]["name"] for item in cache.indexed("y")) == ["three", "two"]
    assert sorted(item["metadata"]["name"] for item in cache.indexed("b", "namespace")) == [
        "three",
        "two",
    ]
    # A newer version filed under another value leaves the old bucket.
    cache.store(body("b", "two", version="2", team="x"))
    assert sorted(item["metadata"]["name"] for item in cache.indexed("x")) == ["one", "two"]
    cache.discard(("b", "three"))
    assert cache.indexed("y") == []
    assert [item["metadata"]["name"] for item in cache.indexed("b", "namespace")] == ["two"]
    assert cache.indexed("b", "no such index") == []
