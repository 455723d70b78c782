"""A Federated job's aggregator address: found on the aggregator's RayJob, handed to the
participants when they are made, published in the Placement, and a participant made again when
its aggregator comes back elsewhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from continuum.operator.api import ApplyState, MLJob, Placement, ShardState
from continuum.operator.api.shard_resources import SHARD_LABELS
from continuum.operator.reconcile.federation import (
    WAITING_FOR_AGGREGATOR,
    aggregator_endpoint,
    head_address,
)
from continuum.operator.reconcile.kuberay import build_shard_resource
from continuum.operator.reconcile.shards import (
    ClusterOutcome,
    desired_resources,
    placement_status,
    plan_cluster,
    shard_statuses,
)
from tests.wrappers import MLJobWrapper, PlacementWrapper

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 7, 9, tzinfo=UTC)
CLUSTERS = {0: "edge-delft", 1: "edge-ghent", 2: "cloud"}


def federated() -> MLJob:
    job: MLJob = MLJobWrapper("fl").federated("delft", "ghent").obj()
    return job


def placement(job: MLJob, clusters: dict[int, str] = CLUSTERS) -> Placement:
    found: Placement = PlacementWrapper.of(job).epoch(2).decisions(clusters).obj()
    return found


def env_of(manifest: dict[str, Any]) -> dict[str, str]:
    head = manifest["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    return {item["name"]: item["value"] for item in head["containers"][0]["env"]}


def aggregator_at(job: MLJob, ip: str | None, deleting: bool = False) -> dict[str, Any]:
    manifest = build_shard_resource(job, 2, epoch=2)
    manifest["status"] = {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}
    if ip is not None:
        manifest["status"]["rayClusterStatus"] = {"head": {"podIP": ip}}
    if deleting:
        manifest["metadata"]["deletionTimestamp"] = "2026-12-07T09:00:00Z"
    return manifest


def test_the_aggregator_gets_its_port_and_the_sites_to_score_on() -> None:
    job = federated()
    env = env_of(desired_resources(job, placement(job))["cloud"][0])
    assert env["CONTINUUM_ROLE"] == "aggregator"
    assert env["CONTINUUM_FEDERATION_PORT"] == "8470"
    assert env["CONTINUUM_FEDERATION_SITES"] == "delft,ghent"
    assert "CONTINUUM_AGGREGATOR_ADDRESS" not in env


def test_participants_wait_for_the_aggregators_address_and_then_get_it() -> None:
    job = federated()
    waiting = desired_resources(job, placement(job), {"cloud": [aggregator_at(job, None)]})
    assert set(waiting) == {"cloud"}, "no participant before the aggregator's head has an IP"

    held = {"cloud": [aggregator_at(job, "10.77.4.130")]}
    desired = desired_resources(job, placement(job), held)
    for cluster in ("edge-delft", "edge-ghent"):
        (participant,) = desired[cluster]
        assert env_of(participant)["CONTINUUM_AGGREGATOR_ADDRESS"] == "10.77.4.130:8470"
        annotations = participant["metadata"]["annotations"]
        assert annotations[SHARD_LABELS.aggregator_address_annotation] == "10.77.4.130:8470"


def test_a_participant_already_made_stays_while_the_address_is_unknown() -> None:
    job = federated()
    made = build_shard_resource(job, 0, epoch=2, aggregator="10.77.4.130:8470")
    held = {"cloud": [aggregator_at(job, None)], "edge-delft": [made]}
    desired = desired_resources(job, placement(job), held)
    assert desired["edge-delft"] == [made]
    assert plan_cluster(desired["edge-delft"], [made]).is_empty


def test_only_the_decided_members_live_copy_gives_the_address() -> None:
    job = federated()
    moved = placement(job, {**CLUSTERS, 2: "cloud-2"})
    held = {"cloud": [aggregator_at(job, "10.77.4.130")]}
    assert aggregator_endpoint(job, moved, held) is None, "the old copy's address is not it"
    going = {"cloud": [aggregator_at(job, "10.77.4.130", deleting=True)]}
    assert aggregator_endpoint(job, placement(job), going) is None
    found = aggregator_endpoint(job, moved, {"cloud-2": [aggregator_at(job, "fd00::7")]})
    assert found is not None and found.address == "[fd00::7]:8470"


@pytest.mark.parametrize("value", [None, "", "pending", 7])
def test_a_head_without_an_ip_has_no_address(value: object) -> None:
    assert head_address({"status": {"rayClusterStatus": {"head": {"podIP": value}}}}) is None


def test_a_participant_whose_aggregator_moved_is_made_again() -> None:
    job = federated()
    old = build_shard_resource(job, 0, epoch=2, aggregator="10.77.4.130:8470")
    new = build_shard_resource(job, 0, epoch=2, aggregator="10.77.2.140:8470")
    plan = plan_cluster([new], [old])
    assert plan.delete == (old,) and not plan.create and not plan.update
    # Once it is going, nothing is written until it is gone; then it is made.
    going = {**old, "metadata": {**old["metadata"], "deletionTimestamp": "2026-12-07T09:00:00Z"}}
    assert plan_cluster([new], [going]).is_empty
    assert plan_cluster([new], []).create == (new,)


def test_other_jobs_are_untouched_by_federation() -> None:
    training: MLJob = MLJobWrapper("t").shards(2).obj()
    placed = placement(training, {0: "a", 1: "b"})
    desired = desired_resources(training, placed, {})
    assert {cluster: len(items) for cluster, items in desired.items()} == {"a": 1, "b": 1}
    assert "CONTINUUM_FEDERATION_PORT" not in env_of(desired["a"][0])
    assert aggregator_endpoint(training, placed, {}) is None


def test_the_address_is_published_with_the_time_it_was_first_seen() -> None:
    job = federated()
    placed = placement(job)
    found = aggregator_endpoint(job, placed, {"cloud": [aggregator_at(job, "10.77.4.130")]})
    outcomes = [ClusterOutcome("cloud", ApplyState.APPLIED)]
    first = placement_status(placed, outcomes, NOW, found).federation
    assert first is not None
    assert (first.cluster, first.address, first.aggregator_shard) == (
        "cloud",
        "10.77.4.130:8470",
        2,
    )
    again = placement_status(
        placed.model_copy(update={"status": placement_status(placed, outcomes, NOW, found)}),
        outcomes, NOW + timedelta(minutes=5), found,
    ).federation  # fmt: skip
    assert again is not None and again.since == NOW
    assert placement_status(placed, outcomes, NOW, None).federation is None


def test_a_participant_not_made_yet_says_it_waits_for_its_aggregator() -> None:
    job = federated()
    outcomes = {
        "cloud": ClusterOutcome("cloud", ApplyState.APPLIED, "", (aggregator_at(job, None),)),
        "edge-delft": ClusterOutcome("edge-delft", ApplyState.APPLIED),
        "edge-ghent": ClusterOutcome("edge-ghent", ApplyState.APPLIED),
    }
    statuses = shard_statuses(job, placement(job), outcomes)
    assert [(s.state, s.message) for s in statuses[:2]] == [
        (ShardState.PENDING, WAITING_FOR_AGGREGATOR)
    ] * 2
    assert statuses[2].state == ShardState.RUNNING
