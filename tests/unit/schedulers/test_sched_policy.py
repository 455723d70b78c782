"""The continuum policy on continuums small enough to reason out by hand."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sched_builders import cloud, edge, federated, job, snapshot, with_running

from continuum.schedulers import (
    Departure,
    MigrationReason,
    Mode,
    PolicyConfig,
    Residency,
    Resources,
    RunningShard,
    Tenant,
    Tier,
    schedule,
)

pytestmark = pytest.mark.unit


def placed_on(result: object) -> dict[tuple[str, int], str]:
    return result.placement()  # type: ignore[attr-defined, no-any-return]


def test_a_tight_slo_wins_over_cost_and_goes_to_the_data_site() -> None:
    expensive_edge = replace(edge("delft-1", "delft"), cost_per_hour=50.0)
    inference = job("ns/serve", data_site="delft", slo_ms=40.0, mode=Mode.INFERENCE)
    result = schedule(snapshot([expensive_edge, cloud("cloud-1")], [inference]))
    assert placed_on(result) == {("ns/serve", 0): "delft-1"}
    assert any("meets SLO 40 ms" in reason for reason in result.decisions[0].reasons)


def test_without_an_slo_wan_and_cost_decide() -> None:
    training = job("ns/train", data_site="delft", rate_mbps=10.0)
    local = schedule(snapshot([edge("delft-1", "delft"), cloud("cloud-1")], [training]))
    assert placed_on(local) == {("ns/train", 0): "delft-1"}
    full = edge("delft-1", "delft", allocated=Resources(4.0, 0.0, 0.0))
    clusters = [full, edge("eindhoven-1", "eindhoven"), cloud("cloud-1")]
    elsewhere = schedule(snapshot(clusters, [training]))
    # Both alternatives move the same bytes off-site; the edge cpu is cheaper than the cloud's.
    assert placed_on(elsewhere) == {("ns/train", 0): "eindhoven-1"}


def test_residency_site_explains_itself_in_one_sentence() -> None:
    clusters = [
        edge("delft-1", "delft", cpu=2.0, allocated=Resources(1.5, 0.0, 0.0)),
        edge("eindhoven-1", "eindhoven"),
        edge("lyon-1", "lyon"),
        cloud("cloud-1"),
    ]
    pinned = job("ns/pinned", cpu=2.0, data_site="delft", residency=Residency.SITE)
    result = schedule(snapshot(clusters, [pinned]))
    assert result.decisions == ()
    (unschedulable,) = result.unschedulable
    assert unschedulable.job_key == "ns/pinned"
    assert "residency=Site excludes all 3 clusters outside site delft" in unschedulable.reason
    assert "the 1 at delft (delft-1) has 0.5 cpu free and a shard needs 2" in unschedulable.reason


def test_residency_region_keeps_shards_in_the_region() -> None:
    clusters = [edge("lyon-1", "lyon", cpu=16.0), edge("eindhoven-1", "eindhoven", cpu=2.0)]
    clusters.append(cloud("cloud-1"))
    regional = job(
        "ns/regional", shards=4, min_available=1, data_site="delft", residency=Residency.REGION
    )
    result = schedule(snapshot(clusters, [regional]))
    assert set(placed_on(result).values()) == {"eindhoven-1"}
    assert len(result.decisions) == 2
    assert result.unschedulable == ()


def test_a_gang_is_placed_all_or_nothing() -> None:
    clusters = [edge("delft-1", "delft", cpu=4.0)]
    gang = job("ns/gang", cpu=2.0, shards=3, data_site="delft", residency=Residency.SITE)
    none = schedule(snapshot(clusters, [gang]))
    assert none.decisions == ()
    assert "gang needs 3 shards at once but only 2 fit" in none.unschedulable[0].reason
    elastic = schedule(snapshot(clusters, [replace(gang, min_available=2)]))
    assert len(elastic.decisions) == 2


def test_federated_shards_follow_their_data_and_the_aggregator_runs_in_the_cloud() -> None:
    clusters = [edge("delft-1", "delft"), edge("eindhoven-1", "eindhoven"), cloud("cloud-1")]
    clusters.append(edge("lyon-1", "lyon"))
    fed = federated("ns/fed", ["delft", "eindhoven"])
    result = schedule(snapshot(clusters, [fed]))
    assert placed_on(result) == {
        ("ns/fed", 0): "delft-1",
        ("ns/fed", 1): "eindhoven-1",
        ("ns/fed", 2): "cloud-1",
    }


def test_weighted_drf_splits_by_weight() -> None:
    tenants = [Tenant("a", weight=2.0), Tenant("b", weight=1.0)]
    jobs = [job(f"a/{i}", tenant="a") for i in range(10)]
    jobs += [job(f"b/{i}", tenant="b") for i in range(10)]
    result = schedule(snapshot([cloud("cloud-1", cpu=9.0)], jobs, tenants))
    by_tenant = [d.job_key.split("/")[0] for d in result.decisions]
    assert (by_tenant.count("a"), by_tenant.count("b")) == (6, 3)


def test_fifo_ignores_weights() -> None:
    tenants = [Tenant("a", weight=2.0), Tenant("b", weight=1.0)]
    jobs = [job(f"b/{i}", tenant="b", submit=float(i)) for i in range(10)]
    jobs += [job(f"a/{i}", tenant="a", submit=10.0 + i) for i in range(10)]
    result = schedule(snapshot([cloud("cloud-1", cpu=9.0)], jobs, tenants), "fifo")
    assert {d.job_key.split("/")[0] for d in result.decisions} == {"b"}


@pytest.mark.parametrize(("b_jobs", "expected"), [(8, (2, 6)), (3, (5, 3))])
def test_quota_is_guaranteed_and_idle_capacity_is_borrowed(
    b_jobs: int, expected: tuple[int, int]
) -> None:
    tenants = [
        Tenant("a", quota=Resources(2.0, 100.0, 0.0)),
        Tenant("b", quota=Resources(6.0, 100.0, 0.0)),
    ]
    jobs = [job(f"a/{i}", tenant="a") for i in range(8)]
    jobs += [job(f"b/{i}", tenant="b") for i in range(b_jobs)]
    result = schedule(snapshot([cloud("cloud-1", cpu=8.0)], jobs, tenants))
    by_tenant = [d.job_key.split("/")[0] for d in result.decisions]
    assert (by_tenant.count("a"), by_tenant.count("b")) == expected


def full_cluster_of_tenant_a(a_jobs: list, newcomer: object) -> object:  # type: ignore[type-arg]
    base = snapshot([cloud("cloud-1", cpu=8.0)], [*a_jobs, newcomer])
    running = [RunningShard(j.key, shard, "cloud-1") for j in a_jobs for shard in range(j.shards)]
    return with_running(base, running)


def test_preemption_takes_from_the_tenant_above_its_share_lowest_priority_first() -> None:
    a_jobs = [job(f"a/{i}", tenant="a", priority=1 if i < 4 else 0) for i in range(8)]
    newcomer = job("b/new", tenant="b", shards=2)
    result = schedule(full_cluster_of_tenant_a(a_jobs, newcomer))  # type: ignore[arg-type]
    assert {(p.job_key, p.shard_index) for p in result.preemptions} == {("a/4", 0), ("a/5", 0)}
    assert len(result.decisions) == 2


def test_preemption_never_takes_part_of_a_gang() -> None:
    newcomer = job("b/new", tenant="b", shards=2)
    whole_gang = [job("a/gang", tenant="a", shards=8)]
    untouched = schedule(full_cluster_of_tenant_a(whole_gang, newcomer))  # type: ignore[arg-type]
    assert untouched.preemptions == ()
    elastic = [job("a/elastic", tenant="a", shards=8, min_available=4)]
    trimmed = schedule(full_cluster_of_tenant_a(elastic, newcomer))  # type: ignore[arg-type]
    assert {p.shard_index for p in trimmed.preemptions} == {7, 6}
    assert len(trimmed.decisions) == 2


def test_a_shard_on_a_failed_cluster_moves_with_reason_failure() -> None:
    broken = edge("delft-1", "delft", healthy=False)
    base = snapshot([broken, edge("delft-2", "delft")], [job("ns/j", data_site="delft")])
    result = schedule(with_running(base, [RunningShard("ns/j", 0, "delft-1")]))
    (migration,) = result.migrations
    assert (migration.from_cluster, migration.to_cluster) == ("delft-1", "delft-2")
    assert migration.reason is MigrationReason.FAILURE
    assert placed_on(result) == {("ns/j", 0): "delft-2"}


def test_a_shard_on_a_risky_cluster_moves_proactively() -> None:
    risky = edge("delft-1", "delft", risk=0.9)
    base = snapshot([risky, edge("delft-2", "delft")], [job("ns/j", data_site="delft")])
    result = schedule(with_running(base, [RunningShard("ns/j", 0, "delft-1")]))
    assert [(m.to_cluster, m.reason) for m in result.migrations] == [
        ("delft-2", MigrationReason.PROACTIVE)
    ]


def test_a_job_without_proactive_moves_stays_on_a_risky_cluster_until_it_fails() -> None:
    risky = edge("delft-1", "delft", risk=0.9)
    opted_out = replace(job("ns/j", data_site="delft"), proactive=False)
    base = snapshot([risky, edge("delft-2", "delft")], [opted_out])
    result = schedule(with_running(base, [RunningShard("ns/j", 0, "delft-1")]))
    assert (result.decisions, result.migrations) == ((), ())
    # New shards of it still avoid the risky cluster.
    fresh = schedule(snapshot([risky, edge("delft-2", "delft")], [opted_out]))
    assert placed_on(fresh) == {("ns/j", 0): "delft-2"}


def test_running_shards_stay_put_without_a_reason() -> None:
    clusters = [edge("delft-1", "delft"), edge("eindhoven-1", "eindhoven"), cloud("cloud-1")]
    jobs = [
        job("ns/a", shards=3, data_site="delft"),
        job("ns/b", shards=2, data_site="eindhoven", slo_ms=60.0, mode=Mode.INFERENCE),
        federated("ns/fed", ["delft", "eindhoven"]),
    ]
    first = schedule(snapshot(clusters, jobs))
    running = [RunningShard(d.job_key, d.shard_index, d.cluster) for d in first.decisions]
    second = schedule(with_running(snapshot(clusters, jobs), running))
    assert (second.decisions, second.migrations, second.preemptions) == ((), (), ())


def test_a_shard_missing_its_slo_is_rebalanced_only_past_the_threshold() -> None:
    inference = job("ns/serve", data_site="delft", slo_ms=40.0, mode=Mode.INFERENCE)
    base = snapshot([edge("delft-1", "delft"), cloud("cloud-1")], [inference])
    moved = with_running(base, [RunningShard("ns/serve", 0, "cloud-1")])
    result = schedule(moved)
    assert [(m.to_cluster, m.reason) for m in result.migrations] == [
        ("delft-1", MigrationReason.REBALANCE)
    ]
    reluctant = PolicyConfig(rebalance_min_gain_usd_h=1000.0)
    assert schedule(moved, config=reluctant).migrations == ()


def test_a_shard_that_left_a_failing_cluster_is_not_rebalanced_back_within_the_cooldown() -> None:
    """A flapping link: the shard left delft-1 for risk 100 s ago; delft-1 looks healthy and
    better again, but moving back now would move it on every swing of the link."""
    inference = job("ns/serve", data_site="delft", slo_ms=40.0, mode=Mode.INFERENCE)
    base = replace(
        snapshot([edge("delft-1", "delft"), cloud("cloud-1")], [inference]), now_s=1000.0
    )
    left = (Departure("delft-1", at_s=900.0),)
    moved = replace(base, running=(RunningShard("ns/serve", 0, "cloud-1", left),))
    assert schedule(moved).migrations == ()
    later = replace(moved, now_s=900.0 + PolicyConfig().return_cooldown_s)
    assert [(m.to_cluster, m.reason) for m in schedule(later).migrations] == [
        ("delft-1", MigrationReason.REBALANCE)
    ]


def test_a_shard_a_move_just_brought_is_not_rebalanced_before_its_dwell() -> None:
    """It moved to cloud-1 (any reason) 100 s ago; delft-1 now looks much better, but the
    costs that say so were measured in the midst of what moved it."""
    inference = job("ns/serve", data_site="delft", slo_ms=40.0, mode=Mode.INFERENCE)
    base = replace(
        snapshot([edge("delft-1", "delft"), cloud("cloud-1")], [inference]), now_s=1000.0
    )
    moved = replace(base, running=(RunningShard("ns/serve", 0, "cloud-1", arrived_at_s=900.0),))
    assert schedule(moved).migrations == ()
    later = replace(moved, now_s=900.0 + PolicyConfig().rebalance_min_dwell_s)
    assert [(m.to_cluster, m.reason) for m in schedule(later).migrations] == [
        ("delft-1", MigrationReason.REBALANCE)
    ]


def test_risk_moves_a_shard_however_recently_it_arrived() -> None:
    inference = job("ns/serve", data_site="delft", slo_ms=40.0, mode=Mode.INFERENCE)
    clusters = [edge("delft-1", "delft", risk=0.95), edge("delft-2", "delft")]
    base = replace(snapshot(clusters, [inference]), now_s=1000.0)
    moved = replace(base, running=(RunningShard("ns/serve", 0, "delft-1", arrived_at_s=990.0),))
    assert [(m.to_cluster, m.reason) for m in schedule(moved).migrations] == [
        ("delft-2", MigrationReason.PROACTIVE)
    ]


def test_a_proactive_move_avoids_a_cluster_whose_risk_is_rising_too() -> None:
    """delft-2 is nearer the data but half-way to the threshold itself: the shard would move
    again seconds later. It goes to the calm cloud, and to delft-2 only if nothing else will
    take it."""
    training = job("ns/j", data_site="delft")
    clusters = [edge("delft-1", "delft", risk=0.95), edge("delft-2", "delft", risk=0.5),
                cloud("cloud-1")]  # fmt: skip
    running = (RunningShard("ns/j", 0, "delft-1"),)
    moved = replace(snapshot(clusters, [training]), running=running)
    assert [(m.to_cluster, m.reason) for m in schedule(moved).migrations] == [
        ("cloud-1", MigrationReason.PROACTIVE)
    ]
    cornered = replace(snapshot(clusters[:2], [training]), running=running)
    assert [m.to_cluster for m in schedule(cornered).migrations] == ["delft-2"]
    calm = replace(snapshot([clusters[0], edge("delft-2", "delft"), cloud("cloud-1")],
                            [training]), running=running)  # fmt: skip
    assert [m.to_cluster for m in schedule(calm).migrations] == ["delft-2"]


def test_a_rebalance_never_goes_to_a_cluster_whose_risk_is_rising() -> None:
    inference = job("ns/serve", data_site="delft", slo_ms=40.0, mode=Mode.INFERENCE)
    clusters = [edge("delft-1", "delft", risk=0.5), cloud("cloud-1")]
    moved = with_running(snapshot(clusters, [inference]), [RunningShard("ns/serve", 0, "cloud-1")])
    assert schedule(moved).migrations == ()


def test_the_same_input_gives_the_same_decision() -> None:
    clusters = [edge(f"e{i}", "delft" if i % 2 else "eindhoven") for i in range(6)]
    clusters.append(cloud("cloud-1", cpu=8.0))
    jobs = [job(f"t{i % 3}/j{i}", tenant=f"t{i % 3}", shards=1 + i % 3) for i in range(12)]
    first = schedule(snapshot(clusters, jobs))
    again = schedule(snapshot(clusters, list(reversed(jobs))))
    assert replace(first, timing=again.timing) == again


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown policy"):
        schedule(snapshot([cloud("c")]), "best-effort")


def test_multikueue_sends_the_whole_job_to_the_first_cluster_that_admits_it() -> None:
    clusters = [edge("a-small", "delft", cpu=2.0), edge("b-big", "delft", cpu=4.0)]
    result = schedule(snapshot(clusters, [job("ns/j", shards=3)]), "multikueue")
    assert set(placed_on(result).values()) == {"b-big"}
    assert len(result.decisions) == 3


def test_karmada_splits_replicas_by_static_weight() -> None:
    clusters = [edge("a", "delft", cpu=8.0), edge("b", "delft", cpu=24.0, memory=96.0)]
    result = schedule(snapshot(clusters, [job("ns/j", shards=4)]), "karmada")
    counts = [d.cluster for d in result.decisions]
    assert (counts.count("a"), counts.count("b")) == (1, 3)


def test_cloud_only_uses_the_cloud_tier_only() -> None:
    clusters = [edge("delft-1", "delft"), cloud("cloud-1"), cloud("cloud-2")]
    jobs = [job(f"ns/{i}", shards=2, data_site="delft") for i in range(5)]
    result = schedule(snapshot(clusters, jobs), "cloud-only")
    assert {d.cluster for d in result.decisions} <= {"cloud-1", "cloud-2"}
    assert len(result.decisions) == 10


def test_selectors_taints_and_tiers_filter_clusters() -> None:
    from continuum.schedulers import Taint, Toleration

    labelled = edge("delft-gpu", "delft", labels={"accelerator": "gpu"})
    tainted = edge("delft-maint", "delft", taints=[Taint("maintenance", "yes")])
    clusters = [labelled, tainted, cloud("cloud-1")]
    wants_gpu = job("ns/gpu", cluster_selector={"accelerator": "gpu"})
    tolerant = job("ns/tolerant", data_site="delft", tolerations=(Toleration("maintenance"),))
    edge_only = job("ns/edge", allowed_tiers=(Tier.EDGE,))
    result = schedule(snapshot(clusters, [wants_gpu, tolerant, edge_only]))
    placements = placed_on(result)
    assert placements[("ns/gpu", 0)] == "delft-gpu"
    assert placements[("ns/edge", 0)] in {"delft-gpu"}
    assert placements[("ns/tolerant", 0)] in {"delft-gpu", "delft-maint"}
    intolerant = schedule(snapshot([tainted], [job("ns/x")]))
    assert "untolerated taints" in intolerant.unschedulable[0].reason


@pytest.mark.parametrize(
    ("toleration", "tolerated"),
    [
        (("maintenance", None, None), True),
        (("maintenance", "yes", None), True),
        (("maintenance", "no", None), False),
        (("maintenance", None, "NoExecute"), False),
        (("maintenance", None, "NoSchedule"), True),
        ((None, None, None), True),
        ((None, None, "NoExecute"), False),
        (("other", None, None), False),
    ],
)
def test_a_toleration_matches_a_taint_by_key_value_and_effect_as_in_kubernetes(
    toleration: tuple[str | None, str | None, str | None], tolerated: bool
) -> None:
    from continuum.schedulers import Taint, Toleration

    taint = Taint("maintenance", "yes", "NoSchedule")
    assert Toleration(*toleration).tolerates(taint) is tolerated
    tainted = edge("delft-maint", "delft", taints=[taint])
    result = schedule(snapshot([tainted], [job("ns/j", tolerations=(Toleration(*toleration),))]))
    assert bool(result.decisions) is tolerated


def test_within_a_priority_the_earliest_deadline_goes_first() -> None:
    # Room for one shard; the later, deadline-bound job goes before the earlier one without,
    # and of two deadlines the one due first wins.
    lone = [edge("delft-1", "delft", cpu=1.0)]
    early = job("t1/early", submit=0.0)
    due = job("t1/due", submit=5.0, deadline_s=600.0)
    assert placed_on(schedule(snapshot(lone, [early, due]))) == {("t1/due", 0): "delft-1"}
    later = job("t1/later", submit=1.0, deadline_s=100.0)  # due at 101, before 605
    assert placed_on(schedule(snapshot(lone, [early, due, later]))) == {("t1/later", 0): "delft-1"}
    # Priority still comes first, and the anchors' FIFO ignores deadlines.
    urgent = job("t1/high", submit=9.0, priority=1)
    assert placed_on(schedule(snapshot(lone, [due, urgent]))) == {("t1/high", 0): "delft-1"}
    assert placed_on(schedule(snapshot(lone, [early, due]), "fifo")) == {("t1/early", 0): "delft-1"}


def test_a_preempted_shard_with_room_elsewhere_moves_as_a_preemption_migration() -> None:
    # Tenant a fills delft-1 (and holds 4 of the 6 cpus); b's job must run at delft. One shard
    # of a is evicted for it and, as the cloud has room, is placed there in the same cycle.
    a_jobs = [job(f"a/{i}", tenant="a", priority=1 if i else 0) for i in range(4)]
    newcomer = job("b/new", tenant="b", data_site="delft", residency=Residency.SITE)
    base = snapshot(
        [edge("delft-1", "delft", cpu=4.0), cloud("cloud-1", cpu=2.0)], [*a_jobs, newcomer]
    )
    running = [RunningShard(j.key, 0, "delft-1") for j in a_jobs]
    result = schedule(with_running(base, running))
    assert [(p.job_key, p.shard_index, p.cluster) for p in result.preemptions] == [
        ("a/0", 0, "delft-1")
    ]
    (migration,) = result.migrations
    assert migration.reason is MigrationReason.PREEMPTION
    assert (migration.job_key, migration.from_cluster, migration.to_cluster) == (
        "a/0",
        "delft-1",
        "cloud-1",
    )
    assert placed_on(result) == {("b/new", 0): "delft-1", ("a/0", 0): "cloud-1"}
    moved = next(d for d in result.decisions if d.job_key == "a/0")
    assert moved.reasons[0].startswith("moved: preempted from delft-1 for b/new")
