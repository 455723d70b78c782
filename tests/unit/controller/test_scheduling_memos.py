"""The scheduling cycle remembers what it made of each version of a job and of its Placement.
A decision not written yet carries the metadata of the stored version it replaces, so nothing
remembered of that version may stand for it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from continuum.operator.adapters.placement_writes import WriteRefusal
from continuum.operator.api import MLJob, Placement, PlacementSpec
from continuum.operator.api.keys import JobKey
from continuum.operator.controller.scheduling import run_cycle
from continuum.operator.demo.store import LocalStore
from tests.wrappers import MemberClusterWrapper, MLJobWrapper, TenantWrapper

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


class UnwrittenDecisions:
    """A PlacementWriteQueue whose decisions stay unwritten: each is the stored Placement with
    the new spec, as PlacementWrites keeps it until the hub takes it."""

    def __init__(self) -> None:
        self.decisions: dict[JobKey, Placement] = {}

    def hold(self, stored: Placement, spec: PlacementSpec) -> None:
        self.decisions[JobKey.of_placement(stored)] = stored.model_copy(update={"spec": spec})

    def submit(self, job: MLJob, spec: PlacementSpec, stored: Placement | None) -> None:
        raise AssertionError(f"no new decision was expected for {job.metadata.name}")

    def pending(self) -> Mapping[JobKey, Placement]:
        return dict(self.decisions)

    def refusal(self, job: MLJob) -> WriteRefusal | None:
        return None


def world() -> LocalStore:
    store = LocalStore(clock=lambda: NOW)
    store.create(TenantWrapper("team-a").body())
    for name in ("m1", "m2"):
        store.create(MemberClusterWrapper(name).healthy().body())
    store.create(MLJobWrapper("a").shards(1).uid(None).body())
    return store


def test_an_unwritten_decision_is_planned_from_its_own_spec() -> None:
    store = world()
    run_cycle(store, NOW)  # places the job and writes its Placement
    (stored,) = store.list(Placement).valid
    (placed,) = stored.spec.decisions
    # The job's status as the cycle hands it over (it may hand it over twice).
    statuses: dict[str, dict[str, Any]] = {}

    def hand_over(raw: dict[str, Any], status: dict[str, Any], now: bool) -> None:
        statuses[raw["metadata"]["name"]] = status

    run_cycle(store, NOW, hand_over=hand_over)
    # Moved elsewhere by a decision the hub has not taken yet.
    elsewhere = "m2" if placed.cluster == "m1" else "m1"
    moved = stored.spec.model_copy(
        update={"epoch": stored.spec.epoch + 1,
                "decisions": [placed.model_copy(update={"cluster": elsewhere})]}
    )  # fmt: skip
    queue = UnwrittenDecisions()
    queue.hold(stored, moved)
    statuses.clear()
    run_cycle(store, NOW, hand_over=hand_over, placement_writes=queue)
    status = statuses["a"]
    scheduled = next(c for c in status["conditions"] if c["type"] == "Scheduled")
    assert scheduled["message"] == f"1 of 1 shards placed on {elsewhere}"
    assert status["placementRef"]["epoch"] == moved.epoch
