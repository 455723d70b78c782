"""A member deleted while it holds shards: the next cycle places them elsewhere and records the
move from the member the Placement named (the scheduler no longer knows it)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from continuum.operator.api import MemberCluster, MigrationReason, Placement
from continuum.operator.controller.scheduling import run_cycle
from continuum.operator.demo.store import LocalStore
from tests.wrappers import MemberClusterWrapper, MLJobWrapper, TenantWrapper

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_a_deleted_members_shard_moves_and_the_move_names_it() -> None:
    store = LocalStore(clock=lambda: NOW)
    store.create(TenantWrapper("team-a").body())
    for name in ("m1", "m2"):
        store.create(MemberClusterWrapper(name).healthy().body())
    store.create(MLJobWrapper("a").shards(1).uid(None).body())
    run_cycle(store, NOW)
    ((held,),) = [placement.spec.decisions for placement in store.list(Placement).valid]
    store.delete(MemberCluster, "", held.cluster)

    run_cycle(store, NOW)

    (placement,) = store.list(Placement).valid
    other = "m2" if held.cluster == "m1" else "m1"
    assert [d.cluster for d in placement.spec.decisions] == [other]
    assert [(m.from_cluster, m.to_cluster, m.reason) for m in placement.spec.migrations] == [
        (held.cluster, other, MigrationReason.FAILURE)
    ]
