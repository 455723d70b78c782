"""A member's probe as its status; which members are usable; which registration is the
duplicate of another."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from continuum.operator.api import CapacitySource, MemberClusterStatus, ResourceAmounts
from continuum.operator.api.probe import ProbeResult
from continuum.operator.reconcile.membership import (
    DUPLICATE_CLUSTER,
    also_registered_as,
    by_cluster_id,
    duplicate_of,
    invalid_status,
    is_duplicate,
    is_reachable,
    is_usable,
    probed_status,
    scheduled_view,
)
from tests.wrappers import MemberClusterWrapper

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 6, 9, tzinfo=UTC)
EARLIER = datetime(2026, 12, 1, 9, tzinfo=UTC)
NODES = ResourceAmounts.model_validate({"cpu": "16", "memory": "64Gi"})


def conditions(status: MemberClusterStatus) -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in status.conditions}


# is_reachable, is_duplicate, is_usable


@pytest.mark.parametrize(
    ("wrapper", "reachable", "duplicate", "usable"),
    [
        (MemberClusterWrapper(), False, False, False),
        (MemberClusterWrapper().reachable(), True, False, True),
        (MemberClusterWrapper().healthy(), True, False, True),
        # Ready=False for want of capacity does not make it unusable; the scheduler sees 0 cpu.
        (MemberClusterWrapper().reachable().ready(False), True, False, True),
        (MemberClusterWrapper().reachable(False), False, False, False),
        (MemberClusterWrapper().condition("Reachable", "Unknown"), False, False, False),
        (MemberClusterWrapper().duplicate(), True, True, False),
        (MemberClusterWrapper().healthy().deleting(), True, False, False),
    ],
    ids=[
        "unprobed",
        "reachable",
        "healthy",
        "no-capacity",
        "unreachable",
        "unknown",
        "duplicate",
        "deleting",
    ],
)
def test_a_member_is_usable_when_reached_not_a_duplicate_and_not_deleting(
    wrapper: MemberClusterWrapper, reachable: bool, duplicate: bool, usable: bool
) -> None:
    member = wrapper.obj()
    assert (is_reachable(member), is_duplicate(member), is_usable(member)) == (
        reachable,
        duplicate,
        usable,
    )


# also_registered_as


def test_a_cluster_another_live_member_cluster_reports_is_still_registered() -> None:
    twin = MemberClusterWrapper("twin").cluster_id("id-1").deleting().obj()
    original = MemberClusterWrapper("original").cluster_id("id-1").obj()
    other = MemberClusterWrapper("other").cluster_id("id-2").obj()
    assert also_registered_as(twin, [twin, original, other]) == "original"
    assert also_registered_as(original, [twin, original, other]) is None  # the twin is going
    assert also_registered_as(other, [twin, original, other]) is None
    unknown = MemberClusterWrapper("unknown").obj()
    assert also_registered_as(unknown, [unknown, original]) is None


# duplicate_of


def registered(name: str, created: str, cluster_id: str | None) -> MemberClusterWrapper:
    return MemberClusterWrapper(name).created(created).cluster_id(cluster_id)


def test_the_oldest_other_registration_with_the_id_keeps_the_cluster() -> None:
    oldest = registered("c", "2026-11-01T00:00:00Z", "id-1").obj()
    older = registered("a", "2026-11-15T00:00:00Z", "id-1").obj()
    me = registered("b", "2026-12-01T00:00:00Z", None).obj()
    other_cluster = registered("d", "2026-10-01T00:00:00Z", "id-2").obj()
    members = [older, me, oldest, other_cluster]
    assert duplicate_of(me, "id-1", members) == "c"
    assert duplicate_of(older, "id-1", members) == "c"
    assert duplicate_of(oldest, "id-1", members) is None
    assert duplicate_of(me, "id-3", members) is None
    # The members of one cluster ID alone give the same answers.
    same = by_cluster_id(members)
    assert sorted(m.metadata.name or "" for m in same["id-1"]) == ["a", "c"]
    assert duplicate_of(me, "id-1", same["id-1"]) == "c"
    assert duplicate_of(oldest, "id-1", same["id-1"]) is None
    assert "id-3" not in same


def test_one_registration_is_not_its_own_duplicate() -> None:
    me = registered("a", "2026-11-01T00:00:00Z", "id-1").obj()
    assert duplicate_of(me, "id-1", [me]) is None


def test_without_a_cluster_id_there_is_no_duplicate() -> None:
    older = registered("a", "2026-11-01T00:00:00Z", "").obj()
    me = registered("b", "2026-12-01T00:00:00Z", None).obj()
    assert duplicate_of(me, None, [older, me]) is None
    assert duplicate_of(me, "", [older, me]) is None


def test_registrations_at_the_same_time_are_ordered_by_name() -> None:
    a = registered("a", "2026-11-01T00:00:00Z", "id-1").obj()
    b = registered("b", "2026-11-01T00:00:00Z", "id-1").obj()
    assert duplicate_of(b, "id-1", [a, b]) == "a"
    assert duplicate_of(a, "id-1", [a, b]) is None


def test_a_member_never_probed_is_no_ones_original() -> None:
    unprobed = MemberClusterWrapper("a").created("2026-11-01T00:00:00Z").obj()
    me = registered("b", "2026-12-01T00:00:00Z", None).obj()
    assert unprobed.status is None
    assert duplicate_of(me, "id-1", [unprobed, me]) is None


# probed_status


def test_an_answering_member_with_nodes_is_reachable_and_ready_from_its_nodes() -> None:
    member = MemberClusterWrapper().generation(2).obj()
    probe = ProbeResult(
        kubernetes_version="v1.37.2",
        node_allocatable=NODES,
        node_count=3,
        latency_ms=12.4,
        cluster_id="kube-system-uid",
    )
    status = probed_status(member, probe, NOW)
    assert conditions(status) == {
        "Reachable": ("True", "APIServerAnswered", "kube-apiserver v1.37.2 answered in 12 ms"),
        "Ready": ("True", "CapacityKnown", "allocatable from 3 nodes"),
    }
    assert status.allocatable == NODES
    assert status.allocatable_source == CapacitySource.NODES
    assert status.last_heartbeat_time == NOW
    assert status.kubernetes_version == "v1.37.2"
    assert status.cluster_id == "kube-system-uid"
    assert status.observed_generation == 2
    assert {c.observed_generation for c in status.conditions} == {2}


def test_a_member_without_nodes_uses_its_declared_capacity() -> None:
    member = MemberClusterWrapper().capacity(4, "8Gi").obj()
    status = probed_status(member, ProbeResult(kubernetes_version="v1"), NOW)
    assert conditions(status)["Ready"] == (
        "True",
        "CapacityKnown",
        "no nodes report allocatable; using spec.capacity",
    )
    assert conditions(status)["Reachable"][2] == "kube-apiserver v1 answered"  # no latency
    assert status.allocatable == member.spec.capacity
    assert status.allocatable_source == CapacitySource.DECLARED


def test_nodes_that_report_no_allocatable_fall_back_to_the_declared_capacity() -> None:
    member = MemberClusterWrapper().capacity(4, "8Gi").obj()
    status = probed_status(member, ProbeResult(node_count=2), NOW)
    assert status.allocatable_source == CapacitySource.DECLARED


def test_a_member_with_no_capacity_at_all_is_reachable_but_not_ready() -> None:
    member = MemberClusterWrapper().capacity().obj()
    status = probed_status(member, ProbeResult(kubernetes_version="v1"), NOW)
    assert conditions(status)["Reachable"][0] == "True"
    assert conditions(status)["Ready"] == (
        "False",
        "NoCapacity",
        "the cluster has no nodes and spec.capacity declares none",
    )
    assert (status.allocatable, status.allocatable_source) == (None, None)


def test_a_member_that_does_not_answer_is_neither_reachable_nor_ready() -> None:
    last_answer = {"lastHeartbeatTime": "2026-12-01T09:00:00Z", "kubernetesVersion": "v1"}
    member = MemberClusterWrapper().status(last_answer).cluster_id("id-1").healthy().obj()
    probe = ProbeResult(failure_reason="Timeout", message="no answer within 5 s")
    status = probed_status(member, probe, NOW)
    assert conditions(status) == {
        "Reachable": ("False", "Timeout", "no answer within 5 s"),
        "Ready": ("False", "Unreachable", "no answer within 5 s"),
    }
    # What the last answer said is kept, with its time.
    assert (status.last_heartbeat_time, status.kubernetes_version, status.cluster_id) == (
        EARLIER,
        "v1",
        "id-1",
    )


def test_a_failure_without_a_reason_name_is_unknown() -> None:
    status = probed_status(MemberClusterWrapper().obj(), ProbeResult(failure_reason=""), NOW)
    # An empty reason is still a failure: the member did not answer.
    assert conditions(status)["Reachable"][:2] == ("False", "Unknown")


def test_a_second_registration_of_a_cluster_takes_no_shards() -> None:
    probe = ProbeResult(kubernetes_version="v1", cluster_id="id-1", duplicate_of="member-0")
    status = probed_status(MemberClusterWrapper("member-9").obj(), probe, NOW)
    ready = conditions(status)["Ready"]
    assert ready[:2] == ("False", DUPLICATE_CLUSTER)
    assert ready[2].startswith("MemberCluster member-0 registers the same cluster")
    assert conditions(status)["Reachable"][0] == "True"
    member = MemberClusterWrapper("member-9").obj().model_copy(update={"status": status})
    assert is_duplicate(member)
    assert not is_usable(member)


def test_a_probe_without_a_cluster_id_keeps_the_known_one() -> None:
    member = MemberClusterWrapper().cluster_id("id-1").obj()
    status = probed_status(member, ProbeResult(kubernetes_version="v1"), NOW)
    assert status.cluster_id == "id-1"
    status = probed_status(member, ProbeResult(kubernetes_version="v1", cluster_id="id-2"), NOW)
    assert status.cluster_id == "id-2"


def test_the_probe_keeps_other_status_fields_and_transition_times() -> None:
    member = MemberClusterWrapper().healthy().risk(0.3).obj()
    probe = ProbeResult(kubernetes_version="v1", node_allocatable=NODES, node_count=1)
    status = probed_status(member, probe, NOW)
    assert status.risk is not None and status.risk.score == 0.3
    # Both were True already (the wrapper's time): the transition times do not move.
    assert {c.last_transition_time for c in status.conditions} == {
        datetime(2026, 12, 1, 9, tzinfo=UTC)
    }


# invalid_status


def test_an_invalid_member_is_neither_reachable_nor_ready() -> None:
    status = invalid_status(None, 5, "spec.site: must be a label value", NOW)
    assert status["observedGeneration"] == 5
    assert [(c["type"], c["status"], c["reason"], c["message"]) for c in status["conditions"]] == [
        ("Reachable", "False", "InvalidSpec", "spec.site: must be a label value"),
        ("Ready", "False", "InvalidSpec", "spec.site: must be a label value"),
    ]
    assert {c["observedGeneration"] for c in status["conditions"]} == {5}


def test_an_invalid_member_keeps_what_its_status_held() -> None:
    current = MemberClusterWrapper().healthy().cluster_id("id-1").body()["status"]
    status = invalid_status(current, 2, "bad", NOW)
    assert status["clusterID"] == "id-1"
    assert [c["reason"] for c in status["conditions"]] == ["InvalidSpec", "InvalidSpec"]


def test_an_invalid_member_whose_status_does_not_parse_starts_afresh() -> None:
    status = invalid_status({"risk": {"score": 7}}, 1, "x" * 40000, NOW)
    assert "risk" not in status
    assert {len(c["message"]) for c in status["conditions"]} == {32768}


def _member_body(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "edge-1", "generation": 1, "resourceVersion": "7"},
        "spec": {"mode": "Pull", "tier": "Edge", "site": "a", "region": "a"},
        "status": {
            "lastHeartbeatTime": "2026-12-07T09:00:00Z",
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Reachable",
                 "message": "its agent renews its lease",
                 "lastTransitionTime": "2026-12-07T08:00:00Z"},
            ],
            **status,
        },
    }  # fmt: skip


def test_a_heartbeat_alone_does_not_change_what_the_scheduler_sees() -> None:
    before = _member_body(agent={"hubRttMs": 3.0})
    after = _member_body(agent={"hubRttMs": 9.0}, missedProbes=0)
    after["metadata"]["resourceVersion"] = "8"
    after["status"]["lastHeartbeatTime"] = "2026-12-07T09:01:00Z"
    after["status"]["conditions"][0]["message"] = "its agent renews its lease, 9 ms"
    assert scheduled_view(after) == scheduled_view(before)


def test_readiness_capacity_risk_and_spec_change_what_the_scheduler_sees() -> None:
    before = _member_body()
    not_ready = _member_body()
    not_ready["status"]["conditions"][0].update(status="False", reason="Unreachable")
    assert scheduled_view(not_ready) != scheduled_view(before)
    assert scheduled_view(_member_body(allocatable={"cpu": "8"})) != scheduled_view(before)
    assert scheduled_view(_member_body(risk={"score": 0.4})) != scheduled_view(before)
    assert scheduled_view(_member_body(latencyToSites={"b": 12.0})) != scheduled_view(before)
    relabelled = _member_body()
    relabelled["spec"]["labels"] = {"gpu": "yes"}
    assert scheduled_view(relabelled) != scheduled_view(before)
    assert scheduled_view(None) != scheduled_view(before)
