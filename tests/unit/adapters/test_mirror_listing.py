"""The hub mirror's lists kept up to date change by change (WatchCache.changed_since): after any
sequence of writes, deletions and fresh lists, a list is what listing every object afresh
gives. The caches are not started: what goes in comes by `store`, `discard` or `_list`."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from continuum.operator.adapters import watchcache
from continuum.operator.adapters.hub import Hub
from continuum.operator.adapters.hub_mirror import HubMirror
from continuum.operator.adapters.store import Listed, identity, listed_from
from continuum.operator.adapters.watchcache import WatchCache
from continuum.operator.api import MLJob, Tenant

pytestmark = pytest.mark.unit


def tenant(name: str, version: int, weight: Any = 2) -> dict[str, Any]:
    return {
        "apiVersion": "continuum.dev/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name, "uid": f"uid-{name}", "resourceVersion": str(version)},
        "spec": {"weight": weight},
    }


def job(namespace: str, name: str, version: int, shards: int = 1) -> dict[str, Any]:
    """Valid unless `shards` is 0."""
    return {
        "apiVersion": "continuum.dev/v1alpha1",
        "kind": "MLJob",
        "metadata": {"namespace": namespace, "name": name, "uid": f"uid-{namespace}-{name}",
                     "resourceVersion": str(version), "generation": 1},
        "spec": {
            "mode": "Training",
            "tenant": "research",
            "shards": {"count": shards, "resources": {"cpu": "100m", "memory": "128Mi"}},
            "ray": {"image": "rayproject/ray:2.50.0", "entrypoint": "python t.py"},
        },
    }  # fmt: skip


class Listing:
    """What `list` answers with `items`, for `_list`."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def __call__(self, **_: Any) -> dict[str, Any]:
        return {"items": [dict(item) for item in self.items], "metadata": {"resourceVersion": "9"}}


@pytest.fixture
def hub() -> Iterator[Hub]:
    # A client that is never asked anything: the mirrors are not started.
    api = client.ApiClient(client.Configuration(host="https://127.0.0.1:9"))
    yield Hub(api)
    api.close()


def names(items: dict[tuple[str, str], Any] | list[Any]) -> list[Any]:
    return list(items) if isinstance(items, dict) else [item.metadata.name for item in items]


def test_changed_since_gives_each_changed_object_once_as_it_is_now_oldest_first() -> None:
    cache = WatchCache("tenants", Listing())
    cache.store(tenant("a", 1))
    cache.store(tenant("b", 1))
    seen = cache.changes()
    cache.store(tenant("c", 1))
    cache.store(tenant("a", 2))
    cache.discard(("", "b"))
    cache.store(tenant("c", 2))

    found = cache.changed_since(seen)
    assert found is not None
    now, changed = found
    assert now == cache.changes()
    assert list(changed) == [("", "a"), ("", "b"), ("", "c")]
    assert changed[("", "a")]["metadata"]["resourceVersion"] == "2"
    assert changed[("", "b")] is None
    assert changed[("", "c")]["metadata"]["resourceVersion"] == "2"
    assert cache.changed_since(now) == (now, {})


def test_changed_since_cannot_tell_across_a_fresh_list_or_beyond_its_journal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listing = Listing()
    cache = WatchCache("tenants", listing)
    cache.store(tenant("a", 1))
    before = cache.changes()
    listing.items = [tenant("a", 2)]
    cache._list()
    assert cache.changed_since(before) is None
    after = cache.changes()
    assert cache.changed_since(after) == (after, {})

    monkeypatch.setattr(watchcache, "JOURNAL_LIMIT", 4)
    short = WatchCache("tenants", Listing())
    short.store(tenant("a", 1))
    seen = short.changes()
    for version in range(2, 6):  # two journal entries each: the old version out, the new in
        short.store(tenant("a", version))
    assert short.changed_since(seen) is None
    assert short.changed_since("not a count") is None


def same(listed: Listed[Any], fresh: Listed[Any], ordered: bool) -> None:
    if ordered:
        assert names(listed.valid) == names(fresh.valid)
    else:
        assert sorted(names(listed.valid)) == sorted(names(fresh.valid))
    assert listed.valid == fresh.valid or not ordered
    assert sorted(listed.invalid) == sorted(fresh.invalid)
    assert listed.raw == fresh.raw


def test_the_tenants_listed_change_by_change_are_those_listed_afresh(hub: Hub) -> None:
    mirror = HubMirror(hub)
    cache = mirror.caches[Tenant]
    assert isinstance(cache, WatchCache)
    listing = Listing()
    cache._list_function = listing
    rng = random.Random(7)
    # As the API server's: a version names one content, never two.
    versions = iter(range(1, 10_000))
    for step in range(400):
        name = rng.choice("abcdefgh")
        action = rng.random()
        if action < 0.6:
            # Now and then a weight the model refuses: listed as invalid, not valid.
            cache.store(tenant(name, next(versions), weight=rng.choice([1, 2, 3, -1])))
        elif action < 0.9:
            cache.discard(("", name))
        else:
            kept = {identity(body): body for body in cache.items()}
            listing.items = [kept.get(("", other)) or tenant(other, next(versions))
                             for other in rng.sample("abcdefgh", 4)]  # fmt: skip
            cache._list()
        if step % 3 == 0:
            same(mirror.list(Tenant), listed_from(Tenant, cache.items()), ordered=True)
    same(mirror.list(Tenant), listed_from(Tenant, cache.items()), ordered=True)


def test_jobs_of_a_confined_mirror_listed_change_by_change_are_those_listed_afresh(
    hub: Hub,
) -> None:
    mirror = HubMirror(hub, namespaces=("team-a", "team-b"))
    rng = random.Random(11)
    kinds: set[str] = set()
    for step in range(300):
        namespace = rng.choice(["team-a", "team-b", "team-c"])
        name = rng.choice(["x", "y", "z"])
        if rng.random() < 0.75:
            mirror.caches[MLJob].store(job(namespace, name, step, shards=rng.choice([1, 2, 0])))
        else:
            mirror.caches[MLJob].discard((namespace, name))
        if step % 4 == 0:
            fresh = listed_from(MLJob, mirror.caches[MLJob].items())
            same(mirror.list(MLJob), fresh, ordered=False)
            kinds.update(("valid" if fresh.valid else "", "invalid" if fresh.invalid else ""))
    assert {"valid", "invalid"} <= kinds


def test_a_model_is_the_one_listed_for_its_version(hub: Hub) -> None:
    mirror = HubMirror(hub)
    mirror.caches[Tenant].store(tenant("a", 1))
    listed = mirror.list(Tenant).valid[0]
    found = mirror.model(Tenant, ("", "a"))
    assert found is not None and found[0] is listed
    mirror.caches[Tenant].store(tenant("a", 2, weight=-1))
    assert mirror.model(Tenant, ("", "a")) is None
    assert mirror.list(Tenant).invalid
