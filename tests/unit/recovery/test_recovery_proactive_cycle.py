"""Risk reaches the scheduler the way the operator writes it: as MemberCluster status.risk in
the store, read by the same scheduling cycle. Over the demo's in-process store, without Ray."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from continuum.operator.api import MemberCluster, MLJob, Placement
from continuum.operator.api.probe import ProbeResult
from continuum.operator.controller.scheduling import run_cycle
from continuum.operator.demo.network import DegradingLink
from continuum.operator.demo.store import LocalStore
from continuum.operator.reconcile.membership import probed_status
from continuum.operator.recovery.risk import LinkSample, RiskDetector

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
START = datetime(2026, 1, 1, 12, tzinfo=UTC)


def world(eindhoven_residency: str = "Region") -> LocalStore:
    store = LocalStore(clock=lambda: START)
    for name in ("memberclusters.yaml", "tenants.yaml", "mljob-federated.yaml"):
        for document in yaml.safe_load_all((ROOT / "examples" / name).read_text()):
            if document and document["kind"] == "MLJob":
                for source in document["spec"]["data"]:
                    if source["site"] == "eindhoven":
                        source["residency"] = eindhoven_residency
            if document:
                store.create(document)
    latency = (ROOT / "e2e" / "topology" / "default-latency.csv").read_text()
    store.put_config_map("continuum-system", "continuum-network", {"latency.csv": latency})
    for member in store.list(MemberCluster).valid:
        heartbeat(store, member.metadata.name or "", ProbeResult(kubernetes_version="v1"), START)
    return store


def heartbeat(store: LocalStore, name: str, probe: ProbeResult, now: datetime,
              risk: dict[str, Any] | None = None) -> None:  # fmt: skip
    def change(member: MemberCluster) -> dict[str, Any]:
        status = probed_status(member, probe, now).to_dict()
        if risk is not None:
            status["risk"] = risk
        return status

    assert store.update_status(MemberCluster, "", name, change)


def decisions(store: LocalStore) -> dict[int, str]:
    placement = store.list(Placement).valid[0]
    return {decision.shard: decision.cluster for decision in placement.spec.decisions}


def test_the_federated_shards_start_at_their_data_sites() -> None:
    store = world()
    run_cycle(store, START)
    assert decisions(store) == {0: "member-1", 1: "member-2", 2: "member-3", 3: "member-4"}
    job = store.list(MLJob).valid[0]
    assert job.status is not None and job.status.phase == "Placed"


def test_a_detected_trend_moves_the_shard_before_the_failure() -> None:
    store = world()
    run_cycle(store, START)
    detector = RiskDetector()
    link = DegradingLink(degrade_at_s=5.0, ramp_s=10.0, peak_extra_rtt_ms=150.0,
                         peak_loss=0.3, failure_at_s=20.0)  # fmt: skip
    losses = random.Random(3)
    moved_at = None
    for tick in range(80):
        at = tick * 0.25
        state = link.at(at)
        if not state.up:
            break
        lost = losses.random() < state.loss
        detector.observe(LinkSample(at, None if lost else 7.0 + state.extra_rtt_ms))
        assessment = detector.assess(at)
        now = START + timedelta(seconds=at)
        heartbeat(store, "member-2", ProbeResult(kubernetes_version="v1"), now,
                  {"score": assessment.score, "signals": assessment.signals})  # fmt: skip
        result = run_cycle(store, now)
        if result.migrations:
            assert [(m.shard_index, m.from_cluster, m.reason.value) for m in result.migrations] == [
                (1, "member-2", "Proactive")
            ]
            moved_at = at
            break
    assert moved_at is not None and link.failure_at_s is not None
    assert link.degrade_at_s is not None and link.degrade_at_s < moved_at < link.failure_at_s
    placement = store.list(Placement).valid[0]
    assert decisions(store)[1] != "member-2"
    assert placement.spec.migrations[-1].reason == "Proactive"


def test_without_warning_the_shard_moves_only_once_the_member_is_unreachable() -> None:
    store = world()
    run_cycle(store, START)
    lost = ProbeResult(failure_reason="HeartbeatsMissed", message="3 heartbeats unanswered")
    heartbeat(store, "member-2", lost, START + timedelta(seconds=3))
    result = run_cycle(store, START + timedelta(seconds=3))
    assert [(m.shard_index, m.reason.value) for m in result.migrations] == [(1, "Failure")]


def test_a_site_bound_shard_has_nowhere_to_go() -> None:
    store = world(eindhoven_residency="Site")
    run_cycle(store, START)
    heartbeat(store, "member-2", ProbeResult(kubernetes_version="v1"), START,
              {"score": 0.95, "signals": {}})  # fmt: skip
    assert run_cycle(store, START + timedelta(seconds=1)).migrations == ()
    assert decisions(store)[1] == "member-2"


def test_status_writes_are_optimistic() -> None:
    store = world()
    body = store.get(MemberCluster, "", "member-1")
    assert body is not None
    assert store.replace_status(MemberCluster, {**body, "status": {"conditions": []}})
    # The same, stale, resourceVersion again: someone else wrote in between.
    assert not store.replace_status(MemberCluster, {**body, "status": {"conditions": []}})


def test_a_placement_is_owned_by_its_job_and_goes_with_it() -> None:
    store = world()
    run_cycle(store, START)
    placement = store.list(Placement).valid[0]
    job = store.list(MLJob).valid[0]
    assert placement.metadata.owner_references is not None
    assert placement.metadata.owner_references[0]["uid"] == job.metadata.uid
    assert store.delete(MLJob, "default", "hvac-fedavg")
    assert store.list(Placement).valid == []
