"""MemberClusters, Tenants, MLJobs and Placements turned into the scheduler's Snapshot."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from continuum.operator.api import MLJob, Placement
from continuum.operator.api.keys import JobKey
from continuum.operator.reconcile.snapshot import (
    SELECTOR_LABEL_PREFIX,
    build_snapshot,
    shard_demand,
)
from continuum.schedulers import model, schedule
from tests.wrappers import MemberClusterWrapper, MLJobWrapper, PlacementWrapper, TenantWrapper

pytestmark = pytest.mark.unit

TENANTS = (TenantWrapper("team-a").obj(),)


def by_key(*placements: Placement) -> dict[JobKey, Placement]:
    return {JobKey.of_placement(placement): placement for placement in placements}


def placed(job: MLJob, clusters: dict[int, str]) -> Placement:
    return PlacementWrapper.of(job).decisions(clusters).obj()


# shard_demand


@pytest.mark.parametrize(
    ("cpu", "memory", "gpu", "workers", "expected"),
    [
        ("1", "1Gi", None, 0, model.Resources(1.0, 1.0, 0.0)),
        ("1", "1Gi", None, 1, model.Resources(2.0, 2.0, 0.0)),
        ("500m", "512Mi", None, 2, model.Resources(1.5, 1.5, 0.0)),
        # A fractional GPU is a whole device per pod: Kubernetes allocates whole devices.
        ("1", "1Gi", "0.5", 1, model.Resources(2.0, 2.0, 2.0)),
        ("1", "1Gi", "2", 3, model.Resources(4.0, 4.0, 8.0)),
        ("1", "1Gi", "0", 1, model.Resources(2.0, 2.0, 0.0)),
    ],
)
def test_a_shard_holds_its_head_and_workers_resources(
    cpu: str, memory: str, gpu: str | None, workers: int, expected: model.Resources
) -> None:
    job = MLJobWrapper().resources(cpu, memory, gpu).workers(workers).obj()
    assert shard_demand(job) == expected


def test_the_demand_is_remembered_per_uid_and_generation() -> None:
    first = MLJobWrapper().uid("same-uid").generation(1).resources("1").workers(0)
    assert shard_demand(first.obj()).cpu == 1.0
    # The API server bumps the generation on every spec change: same generation, same spec.
    assert shard_demand(first.resources("3").obj()).cpu == 1.0
    assert shard_demand(first.generation(2).obj()).cpu == 3.0
    # Without a uid nothing is remembered.
    unversioned = MLJobWrapper().uid(None).workers(0)
    assert shard_demand(unversioned.resources("1").obj()).cpu == 1.0
    assert shard_demand(unversioned.resources("2").obj()).cpu == 2.0


# build_snapshot: jobs


def test_only_jobs_that_want_shards_are_scheduled() -> None:
    running = MLJobWrapper("running").phase("Running").obj()
    pending = MLJobWrapper("pending").obj()
    suspended = MLJobWrapper("suspended").suspend().obj()
    deleting = MLJobWrapper("deleting").deleting().obj()
    succeeded = MLJobWrapper("succeeded").phase("Succeeded").obj()
    failed = MLJobWrapper("failed").phase("Failed").obj()
    jobs = [running, pending, suspended, deleting, succeeded, failed]
    snapshot = build_snapshot([], TENANTS, jobs, {})
    assert [job.key for job in snapshot.jobs] == ["team-a/pending", "team-a/running"]


def test_jobs_are_in_key_order_across_namespaces() -> None:
    jobs = [
        MLJobWrapper("b").namespace("ns-1").obj(),
        MLJobWrapper("a").namespace("ns-2").obj(),
        MLJobWrapper("c").namespace("ns-1").obj(),
    ]
    snapshot = build_snapshot([], TENANTS, jobs, {})
    assert [job.key for job in snapshot.jobs] == ["ns-1/b", "ns-1/c", "ns-2/a"]


def test_a_job_becomes_the_schedulers_job() -> None:
    job = (
        MLJobWrapper("detector")
        .namespace("vision")
        .tenant("team-v")
        .inference(latency_p99_ms=40)
        .shards(3, min_available=2)
        .priority(7)
        .data("cameras", "delft", residency="Region", rate_mbps=20)
        .data("anywhere", None)  # residency Any without a site: not a data site
        .objectives(deadlineSeconds=600)
        .allowed_tiers("Edge")
        .toleration("dedicated", "ml")
        .toleration("flaky", operator="Exists")
        .proactive(risk_threshold=0.4)
        .created("2026-12-01T09:00:00Z")
        .obj()
    )
    (converted,) = build_snapshot([], TENANTS, [job], {}).jobs
    assert converted.key == "vision/detector"
    assert converted.tenant == "team-v"
    assert converted.mode == model.Mode.INFERENCE
    assert (converted.shards, converted.min_available, converted.priority) == (3, 2, 7)
    assert converted.demand == shard_demand(job)
    assert converted.data == (model.DataSource("cameras", "delft", 20.0, model.Residency.REGION),)
    assert converted.latency_slo_ms == 40.0
    assert converted.deadline_s == 600.0
    assert converted.allowed_tiers == (model.Tier.EDGE,)
    assert converted.tolerations == (
        model.Toleration("dedicated", "ml"),
        model.Toleration("flaky", None),  # Exists: any value
    )
    assert converted.risk_threshold == 0.4
    assert converted.submit_time_s == datetime.fromisoformat("2026-12-01T09:00:00Z").timestamp()
    assert converted.cluster_selector == {}


def test_a_plain_job_has_no_objectives_policy_or_proactive_threshold() -> None:
    (converted,) = build_snapshot([], TENANTS, [MLJobWrapper().obj()], {}).jobs
    assert converted.latency_slo_ms is None
    assert converted.deadline_s is None
    assert converted.allowed_tiers == ()
    assert converted.tolerations == ()
    assert converted.risk_threshold is None
    assert converted.proactive is False  # spec.faultTolerance.proactive.enabled defaults false
    assert converted.submit_time_s == 0.0  # no creationTimestamp yet
    assert converted.min_available is None


def test_a_disabled_proactive_policy_gives_no_risk_threshold_and_no_proactive_moves() -> None:
    job = MLJobWrapper().proactive(risk_threshold=0.4, enabled=False).obj()
    (converted,) = build_snapshot([], TENANTS, [job], {}).jobs
    assert converted.risk_threshold is None
    assert converted.proactive is False


def test_an_enabled_proactive_policy_lets_the_job_move_before_a_failure() -> None:
    job = MLJobWrapper().proactive(risk_threshold=0.4).obj()
    (converted,) = build_snapshot([], TENANTS, [job], {}).jobs
    assert (converted.risk_threshold, converted.proactive) == (0.4, True)


# build_snapshot: placements, running shards and held capacity


def test_placed_shards_run_where_their_placement_says_and_hold_their_demand() -> None:
    members = [MemberClusterWrapper(name).healthy().obj() for name in ("m1", "m2", "m3")]
    job = MLJobWrapper("a").shards(3).resources("1", "2Gi").workers(1).obj()
    snapshot = build_snapshot(members, TENANTS, [job], by_key(placed(job, {0: "m1", 1: "m1"})))
    assert snapshot.running == (
        model.RunningShard("team-a/a", 0, "m1"),
        model.RunningShard("team-a/a", 1, "m1"),
    )
    allocated = {cluster.name: cluster.allocated for cluster in snapshot.clusters}
    # Two shards of two pods of 1 cpu and 2Gi each.
    assert allocated == {
        "m1": model.Resources(4.0, 8.0, 0.0),
        "m2": model.Resources(0.0, 0.0, 0.0),
        "m3": model.Resources(0.0, 0.0, 0.0),
    }


def test_a_shard_remembers_the_clusters_it_left_for_failure_or_risk() -> None:
    members = [MemberClusterWrapper(name).healthy().obj() for name in ("m1", "m2", "m3")]
    job = MLJobWrapper("a").shards(2).obj()
    placement = (
        PlacementWrapper.of(job).epoch(3).decisions({0: "m3", 1: "m1"})
        .migration(0, "m1", "m2", "Proactive", "2026-12-06T09:00:00Z")
        .migration(0, "m2", "m3", "Failure", "2026-12-06T09:01:00Z")
        .migration(1, "m2", "m1", "Rebalance", "2026-12-06T09:02:00Z")
        .obj()
    )  # fmt: skip
    snapshot = build_snapshot(members, TENANTS, [job], by_key(placement))
    first, second = snapshot.running
    at = datetime(2026, 12, 6, 9, tzinfo=UTC).timestamp()
    assert first.departures == (model.Departure("m1", at), model.Departure("m2", at + 60))
    assert second.departures == ()  # a rebalance says nothing against the cluster it left
    # When the newest move brought each shard where it runs.
    assert (first.arrived_at_s, second.arrived_at_s) == (at + 60, at + 120)
    unmoved = build_snapshot(members, TENANTS, [job], by_key(
        PlacementWrapper.of(job).epoch(1).decisions({0: "m3", 1: "m1"}).obj()))  # fmt: skip
    assert [shard.arrived_at_s for shard in unmoved.running] == [None, None]


def test_shards_beyond_a_scaled_down_count_are_dropped() -> None:
    members = [MemberClusterWrapper("m1").healthy().obj()]
    job = MLJobWrapper("a").shards(1).workers(0).obj()
    placement = placed(job, {0: "m1", 1: "m1", 2: "m1"})
    snapshot = build_snapshot(members, TENANTS, [job], by_key(placement))
    assert snapshot.running == (model.RunningShard("team-a/a", 0, "m1"),)
    assert snapshot.clusters[0].allocated == model.Resources(1.0, 1.0, 0.0)


def test_running_shards_are_remembered_per_placement_version() -> None:
    members = [MemberClusterWrapper(name).healthy().obj() for name in ("m1", "m2")]
    job = MLJobWrapper("a").obj()
    version = PlacementWrapper.of(job).uid("remembered-placement").resource_version("7")
    first = build_snapshot(members, TENANTS, [job], by_key(version.decisions({0: "m1"}).obj()))
    assert first.running == (model.RunningShard("team-a/a", 0, "m1"),)
    # The API server gives every change a new resourceVersion: same version, same decisions.
    moved = by_key(version.decisions({0: "m2"}).obj())
    assert build_snapshot(members, TENANTS, [job], moved).running == first.running
    # A decision not written yet keeps the metadata of the stored version it replaces.
    unwritten = build_snapshot(members, TENANTS, [job], moved, unwritten={JobKey.of(job)})
    assert unwritten.running == (model.RunningShard("team-a/a", 0, "m2"),)
    assert [cluster.allocated.cpu > 0 for cluster in unwritten.clusters] == [False, True]


@pytest.mark.parametrize(
    "wrapper",
    [
        MLJobWrapper("a").suspend(),
        MLJobWrapper("a").deleting(),
        MLJobWrapper("a").phase("Succeeded"),
    ],
    ids=["suspended", "deleting", "finished"],
)
def test_a_job_that_wants_no_shards_holds_nothing(wrapper: MLJobWrapper) -> None:
    job = wrapper.obj()
    members = [MemberClusterWrapper("m1").healthy().obj()]
    snapshot = build_snapshot(members, TENANTS, [job], by_key(placed(job, {0: "m1"})))
    assert snapshot.jobs == ()
    assert snapshot.running == ()
    assert snapshot.clusters[0].allocated == model.Resources(0.0, 0.0, 0.0)


def test_a_placement_without_its_job_holds_nothing() -> None:
    members = [MemberClusterWrapper("m1").healthy().obj()]
    orphan = PlacementWrapper("gone").decisions({0: "m1"}).obj()
    snapshot = build_snapshot(members, TENANTS, [], by_key(orphan))
    assert snapshot.running == ()
    assert snapshot.clusters[0].allocated == model.Resources(0.0, 0.0, 0.0)


def test_running_shards_of_several_jobs_are_in_key_order() -> None:
    members = [MemberClusterWrapper(name).healthy().obj() for name in ("m1", "m2")]
    b, a = MLJobWrapper("b").obj(), MLJobWrapper("a").obj()
    placements = by_key(placed(b, {0: "m2"}), placed(a, {1: "m1", 0: "m2"}))
    snapshot = build_snapshot(members, TENANTS, [b, a], placements)
    assert [(r.job_key, r.shard_index, r.cluster) for r in snapshot.running] == [
        ("team-a/a", 0, "m2"),
        ("team-a/a", 1, "m1"),
        ("team-a/b", 0, "m2"),
    ]


# build_snapshot: members


def test_members_become_clusters_in_name_order() -> None:
    members = [
        MemberClusterWrapper("m2")
        .cloud()
        .site("cloud", "eu-central")
        .capacity(64, "256Gi", 4)
        .cost(3.5)
        .labels(zone="z1")
        .taint("dedicated", "ml", "NoExecute")
        .taint("spot")
        .risk(0.25, heartbeatMissRatio=0.5)
        .healthy()
        .obj(),
        MemberClusterWrapper("m1").healthy().obj(),
    ]
    first, second = build_snapshot(members, TENANTS, [], {}).clusters
    assert first == model.Cluster(
        name="m1",
        tier=model.Tier.EDGE,
        site="site-a",
        capacity=model.Resources(8.0, 32.0, 0.0),
        allocated=model.Resources(0.0, 0.0, 0.0),
        healthy=True,
    )
    assert second.name == "m2"
    assert second.tier == model.Tier.CLOUD
    assert second.site == "cloud"
    assert second.capacity == model.Resources(64.0, 256.0, 4.0)
    assert second.cost_per_hour == 3.5
    assert second.labels == {"zone": "z1"}
    assert second.taints == (
        model.Taint("dedicated", "ml", "NoExecute"),
        model.Taint("spot", "", "NoSchedule"),
    )
    assert second.risk == 0.25


def test_what_the_nodes_offer_wins_over_the_declared_capacity() -> None:
    observed = MemberClusterWrapper("m1").capacity(8, "32Gi").allocatable(2, "4Gi", 1).obj()
    declared = MemberClusterWrapper("m2").capacity(8, "32Gi").obj()
    neither = MemberClusterWrapper("m3").capacity().obj()
    clusters = build_snapshot([observed, declared, neither], TENANTS, [], {}).clusters
    assert [cluster.capacity for cluster in clusters] == [
        model.Resources(2.0, 4.0, 1.0),
        model.Resources(8.0, 32.0, 0.0),
        model.Resources(0.0, 0.0, 0.0),  # nothing known: nothing to place on
    ]


@pytest.mark.parametrize(
    ("wrapper", "usable"),
    [
        (MemberClusterWrapper().healthy(), True),
        (MemberClusterWrapper().reachable(), True),
        (MemberClusterWrapper(), False),  # never probed
        (MemberClusterWrapper().reachable(False), False),
        (MemberClusterWrapper().duplicate(), False),
        (MemberClusterWrapper().healthy().deleting(), False),
    ],
    ids=["healthy", "reachable", "unprobed", "unreachable", "duplicate", "deleting"],
)
def test_only_usable_members_are_healthy_clusters(
    wrapper: MemberClusterWrapper, usable: bool
) -> None:
    (cluster,) = build_snapshot([wrapper.obj()], TENANTS, [], {}).clusters
    assert cluster.healthy is usable


def test_sites_and_regions_come_from_the_members() -> None:
    members = [
        MemberClusterWrapper("m1").site("delft", "nl").obj(),
        MemberClusterWrapper("m2").site("delft", "nl").obj(),
        MemberClusterWrapper("m3").site("cloud", "eu").obj(),
        MemberClusterWrapper("m4").site("ghent", "be").obj(),
    ]
    snapshot = build_snapshot(members, TENANTS, [], {})
    assert snapshot.sites == (
        model.Site("cloud", "eu"),
        model.Site("delft", "nl"),
        model.Site("ghent", "be"),
    )


# build_snapshot: tenants


def test_tenants_keep_their_weight_and_quota() -> None:
    tenants = [
        TenantWrapper("b").weight(3).quota(cpu=16, memory="64Gi", gpu=2).obj(),
        TenantWrapper("a").obj(),
        TenantWrapper("c").quota(cpu="500m").obj(),
    ]
    snapshot = build_snapshot([], tenants, [], {})
    assert [tenant.name for tenant in snapshot.tenants] == ["a", "b", "c"]
    unlimited, quota, cpu_only = snapshot.tenants
    assert (unlimited.weight, unlimited.quota) == (1.0, None)
    assert (quota.weight, quota.quota) == (3.0, model.Resources(16.0, 64.0, 2.0))
    # A resource the quota leaves out is not limited.
    assert cpu_only.quota == model.Resources(0.5, math.inf, math.inf)


def test_links_and_the_time_pass_through() -> None:
    link = model.Link("delft", "cloud", 20.0, 100.0)
    snapshot = build_snapshot([], TENANTS, [], {}, links=[link], now_s=42.0)
    assert snapshot.network.links == (link,)
    assert snapshot.now_s == 42.0


# build_snapshot: cluster selectors


def test_match_labels_go_to_the_scheduler_as_they_are() -> None:
    members = [MemberClusterWrapper("m1").labels(gpu="a100").obj()]
    job = MLJobWrapper().selector({"gpu": "a100"}).obj()
    snapshot = build_snapshot(members, TENANTS, [job], {})
    assert snapshot.jobs[0].cluster_selector == {"gpu": "a100"}
    assert snapshot.clusters[0].labels == {"gpu": "a100"}  # no synthetic label


def test_match_expressions_become_one_synthetic_label_on_the_matching_members() -> None:
    members = [
        MemberClusterWrapper("m1").labels(zone="a", team="x").obj(),
        MemberClusterWrapper("m2").labels(zone="b", team="x").obj(),
        MemberClusterWrapper("m3").labels(zone="a").obj(),  # the expression but not matchLabels
    ]
    expressions = [{"key": "zone", "operator": "In", "values": ["a", "c"]}]
    job = MLJobWrapper("j").selector({"team": "x"}, expressions).obj()
    twin = MLJobWrapper("twin").selector({"team": "x"}, expressions).obj()
    snapshot = build_snapshot(members, TENANTS, [job, twin], {})
    selector = dict(snapshot.jobs[0].cluster_selector)
    synthetic = [key for key in selector if key.startswith(SELECTOR_LABEL_PREFIX)]
    assert len(synthetic) == 1
    assert selector == {"team": "x", synthetic[0]: "true"}
    assert snapshot.jobs[1].cluster_selector == selector  # one label per selector
    labels = {cluster.name: dict(cluster.labels) for cluster in snapshot.clusters}
    assert labels == {
        "m1": {"zone": "a", "team": "x", synthetic[0]: "true"},
        "m2": {"zone": "b", "team": "x"},
        "m3": {"zone": "a"},
    }


def test_a_synthetic_label_leads_the_scheduler_to_the_matching_member() -> None:
    members = [
        MemberClusterWrapper("m1").labels(zone="a").healthy().obj(),
        MemberClusterWrapper("m2").labels(zone="b").healthy().obj(),
    ]
    job = (
        MLJobWrapper()
        .shards(1)
        .selector(match_expressions=[{"key": "zone", "operator": "NotIn", "values": ["a"]}])
        .obj()
    )
    result = schedule(build_snapshot(members, TENANTS, [job], {}))
    assert [decision.cluster for decision in result.decisions] == ["m2"]


def test_a_selector_of_a_job_that_wants_no_shards_labels_no_member() -> None:
    members = [MemberClusterWrapper("m1").labels(zone="a").obj()]
    expressions = [{"key": "zone", "operator": "Exists"}]
    job = MLJobWrapper().selector(match_expressions=expressions).suspend().obj()
    assert build_snapshot(members, TENANTS, [job], {}).clusters[0].labels == {"zone": "a"}


# Known divergences between the API's tolerations and the scheduler's (see the report).


def test_a_toleration_for_one_effect_does_not_tolerate_another() -> None:
    members = [MemberClusterWrapper("m1").taint("gpu", effect="NoSchedule").healthy().obj()]
    job = MLJobWrapper().shards(1).toleration("gpu", operator="Exists", effect="NoExecute").obj()
    toleration = job.spec.placement.tolerations[0] if job.spec.placement else None
    assert toleration is not None
    assert not toleration.tolerates(members[0].spec.taints[0])  # the API's own word
    result = schedule(build_snapshot(members, TENANTS, [job], {}))
    assert result.decisions == ()


def test_a_toleration_without_key_tolerates_every_taint() -> None:
    members = [MemberClusterWrapper("m1").taint("dedicated", "ml").healthy().obj()]
    job = MLJobWrapper().shards(1).toleration(None, operator="Exists").obj()
    toleration = job.spec.placement.tolerations[0] if job.spec.placement else None
    assert toleration is not None
    assert toleration.tolerates(members[0].spec.taints[0])  # the API's own word
    result = schedule(build_snapshot(members, TENANTS, [job], {}))
    assert [decision.cluster for decision in result.decisions] == ["m1"]
