"""Properties every cycle must keep, on random small continuums."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sched_builders import NETWORK, SITES, with_running

from continuum.schedulers import (
    Cluster,
    CycleResult,
    DataSource,
    Job,
    Mode,
    Residency,
    Resources,
    RunningShard,
    Snapshot,
    Tenant,
    Tier,
    schedule,
)
from continuum.schedulers.fairness import dominant_share, fair_shares
from continuum.schedulers.policy import POLICY_NAMES
from continuum.schedulers.sim.metrics import region_map, residency_violated

pytestmark = pytest.mark.unit

SETTINGS = settings(max_examples=120, deadline=None)
SITE_NAMES = [s.name for s in SITES]
GANG_POLICIES = ("continuum", "fifo", "multikueue", "cloud-only", "nearest", "drf")
RESIDENCY_POLICIES = ("continuum", "nearest", "drf")


@st.composite
def clusters(draw: st.DrawFn) -> tuple[Cluster, ...]:
    count = draw(st.integers(1, 6))
    result = []
    for index in range(count):
        site = draw(st.sampled_from(SITE_NAMES))
        cpu = draw(st.sampled_from([1.0, 2.0, 4.0, 8.0]))
        used = draw(st.sampled_from([0.0, 0.25, 0.5]))
        result.append(
            Cluster(
                name=f"c{index}",
                tier=Tier.CLOUD if site == "cloud" else Tier.EDGE,
                site=site,
                capacity=Resources(cpu, cpu * 4, draw(st.sampled_from([0.0, 1.0]))),
                allocated=Resources(cpu * used, cpu * 4 * used, 0.0),
                cost_per_hour=draw(st.floats(0.0, 5.0)),
                risk=draw(st.sampled_from([0.0, 0.1, 0.5, 0.9])),
                healthy=draw(st.booleans()) or index == 0,
            )
        )
    return tuple(result)


@st.composite
def jobs(draw: st.DrawFn) -> tuple[Job, ...]:
    count = draw(st.integers(1, 8))
    result = []
    for index in range(count):
        tenant = draw(st.sampled_from(["a", "b", "c"]))
        mode = draw(st.sampled_from(list(Mode)))
        residency = draw(st.sampled_from(list(Residency)))
        if mode is Mode.FEDERATED:
            sites = draw(st.lists(st.sampled_from(SITE_NAMES[:3]), min_size=1, max_size=2))
            data = tuple(DataSource(f"d{i}", s, 5.0, Residency.SITE) for i, s in enumerate(sites))
            shards = len(data) + 1
        else:
            site = draw(st.sampled_from([None, *SITE_NAMES]))
            data = () if site is None else (DataSource("d", site, 10.0, residency),)
            shards = draw(st.integers(1, 4))
        result.append(
            Job(
                key=f"{tenant}/j{index}",
                tenant=tenant,
                demand=Resources(draw(st.sampled_from([0.5, 1.0, 2.0])), 1.0, 0.0),
                shards=shards,
                min_available=draw(st.one_of(st.none(), st.integers(0, shards))),
                mode=mode,
                priority=draw(st.integers(0, 2)),
                data=data,
                latency_slo_ms=draw(st.sampled_from([None, 30.0, 60.0])),
                submit_time_s=float(index),
            )
        )
    return tuple(result)


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    tenants = tuple(Tenant(n, weight=draw(st.sampled_from([1.0, 2.0]))) for n in "abc")
    base = Snapshot(SITES, draw(clusters()), draw(jobs()), tenants, network=NETWORK)
    if not draw(st.booleans()):
        return base
    # An incremental cycle: what a first cycle placed is now running.
    first = schedule(base)
    running = [RunningShard(d.job_key, d.shard_index, d.cluster) for d in first.decisions]
    started = with_running(base, running)
    if draw(st.booleans()):
        return started
    broken = draw(st.sampled_from([c.name for c in started.clusters]))
    return replace(
        started,
        clusters=tuple(
            replace(c, healthy=False) if c.name == broken else c for c in started.clusters
        ),
    )


def load_after(snapshot: Snapshot, result: CycleResult) -> dict[str, np.ndarray]:
    demand = {j.key: np.array(j.demand.as_tuple()) for j in snapshot.jobs}
    where = {(r.job_key, r.shard_index): r.cluster for r in snapshot.running}
    load = {c.name: np.array(c.allocated.as_tuple()) for c in snapshot.clusters}
    for preemption in result.preemptions:
        load[preemption.cluster] = load[preemption.cluster] - demand[preemption.job_key]
    for decision in result.decisions:
        source = where.get((decision.job_key, decision.shard_index))
        if source is not None:
            load[source] = load[source] - demand[decision.job_key]
        load[decision.cluster] = load[decision.cluster] + demand[decision.job_key]
    return load


@SETTINGS
@given(snapshots(), st.sampled_from(POLICY_NAMES))
def test_no_cluster_is_overcommitted(snapshot: Snapshot, policy: str) -> None:
    result = schedule(snapshot, policy)
    capacity = {c.name: np.array(c.capacity.as_tuple()) for c in snapshot.clusters}
    healthy = {c.name for c in snapshot.clusters if c.healthy}
    for name, load in load_after(snapshot, result).items():
        if name in healthy:
            assert (load <= capacity[name] + 1e-6).all(), (name, load, capacity[name])
    assert {d.cluster for d in result.decisions} <= healthy


@SETTINGS
@given(snapshots(), st.sampled_from(RESIDENCY_POLICIES))
def test_residency_is_never_broken(snapshot: Snapshot, policy: str) -> None:
    regions = region_map(snapshot.sites)
    jobs_by_key = {j.key: j for j in snapshot.jobs}
    clusters_by_name = {c.name: c for c in snapshot.clusters}
    for decision in schedule(snapshot, policy).decisions:
        job = jobs_by_key[decision.job_key]
        cluster = clusters_by_name[decision.cluster]
        assert not residency_violated(job, decision.shard_index, cluster, regions)


@SETTINGS
@given(snapshots(), st.sampled_from(GANG_POLICIES))
def test_gangs_are_placed_all_or_nothing(snapshot: Snapshot, policy: str) -> None:
    result = schedule(snapshot, policy)
    healthy = {c.name for c in snapshot.clusters if c.healthy}
    alive: dict[str, set[int]] = defaultdict(set)
    for shard in snapshot.running:
        if shard.cluster in healthy:
            alive[shard.job_key].add(shard.shard_index)
    for preemption in result.preemptions:
        alive[preemption.job_key].discard(preemption.shard_index)
    touched = set()
    for decision in result.decisions:
        alive[decision.job_key].add(decision.shard_index)
        touched.add(decision.job_key)
    for job in snapshot.jobs:
        if job.key in touched:
            assert len(alive[job.key]) >= job.gang_size


@SETTINGS
@given(snapshots(), st.sampled_from(POLICY_NAMES), st.randoms())
def test_the_same_input_decides_the_same_way(
    snapshot: Snapshot, policy: str, shuffler: object
) -> None:
    first = schedule(snapshot, policy)
    jobs = list(snapshot.jobs)
    clusters = list(snapshot.clusters)
    shuffler.shuffle(jobs)  # type: ignore[attr-defined]
    shuffler.shuffle(clusters)  # type: ignore[attr-defined]
    shuffled = replace(snapshot, jobs=tuple(jobs), clusters=tuple(clusters))
    second = schedule(shuffled, policy)
    assert replace(first, timing=second.timing) == second


def weighted_shares(snapshot: Snapshot, result: CycleResult) -> dict[str, float]:
    total = np.sum([c.capacity.as_tuple() for c in snapshot.clusters if c.healthy], axis=0)
    usage = {t.name: np.zeros(3) for t in snapshot.tenants}
    tenant_of = {j.key: j.tenant for j in snapshot.jobs}
    demand = {j.key: np.array(j.demand.as_tuple()) for j in snapshot.jobs}
    healthy = {c.name for c in snapshot.clusters if c.healthy}
    shards = {(r.job_key, r.shard_index) for r in snapshot.running if r.cluster in healthy}
    shards -= {(p.job_key, p.shard_index) for p in result.preemptions}
    shards |= {(d.job_key, d.shard_index) for d in result.decisions}
    for key, _ in shards:
        usage[tenant_of[key]] += demand[key]
    return {t.name: dominant_share(usage[t.name], total) for t in snapshot.tenants}


@SETTINGS
@given(
    st.lists(st.sampled_from([1.0, 2.0, 4.0]), min_size=1, max_size=4),
    st.dictionaries(st.sampled_from("abc"), st.integers(0, 12), min_size=2),
    st.dictionaries(st.sampled_from("abc"), st.sampled_from([1.0, 2.0, 3.0])),
)
def test_drf_no_backlogged_tenant_can_gain_from_one_above(
    cluster_cpus: list[float], demand: dict[str, int], weights: dict[str, float]
) -> None:
    cluster_list = tuple(
        Cluster(f"c{i}", Tier.CLOUD, "cloud", Resources(cpu, 64.0, 0.0))
        for i, cpu in enumerate(cluster_cpus)
    )
    tenants = tuple(Tenant(name, weight=weights.get(name, 1.0)) for name in sorted(demand))
    job_list = tuple(
        Job(f"{name}/{i}", name, Resources(1.0, 1.0, 0.0))
        for name, count in sorted(demand.items())
        for i in range(count)
    )
    snapshot = Snapshot(SITES, cluster_list, job_list, tenants, network=NETWORK)
    result = schedule(snapshot)
    share = weighted_shares(snapshot, result)
    weight = {t.name: t.weight for t in tenants}
    step = 1.0 / sum(cluster_cpus)
    placed = {d.job_key for d in result.decisions}
    backlogged = {j.tenant for j in job_list if j.key not in placed}
    for poor in backlogged:
        for rich in share:
            # The rich tenant got its last job while it was no richer than the poor one.
            if share[rich] > 0:
                richer_before = (share[rich] - step) / weight[rich]
                assert share[poor] / weight[poor] >= richer_before - 1e-9


@SETTINGS
@given(st.integers(4, 12), st.lists(st.integers(1, 3), min_size=1, max_size=4))
def test_preemption_keeps_both_tenants_on_their_side_of_the_fair_share(
    running_jobs: int, newcomer_shards: list[int]
) -> None:
    capacity = float(running_jobs)
    hog = tuple(Job(f"a/{i}", "a", Resources(1.0, 1.0, 0.0)) for i in range(running_jobs))
    newcomers = tuple(
        Job(f"b/{i}", "b", Resources(1.0, 1.0, 0.0), shards=n)
        for i, n in enumerate(newcomer_shards)
    )
    base = Snapshot(
        SITES,
        (Cluster("c0", Tier.CLOUD, "cloud", Resources(capacity, 64.0, 0.0)),),
        hog + newcomers,
        (Tenant("a"), Tenant("b")),
        network=NETWORK,
    )
    started = with_running(base, [RunningShard(j.key, 0, "c0") for j in hog])
    result = schedule(started)
    share = weighted_shares(started, result)
    fair = fair_shares({"a": 1.0, "b": 1.0}, ["a", "b"])
    if result.preemptions:
        assert share["a"] >= fair["a"] - 1e-9
        assert share["b"] <= fair["b"] + 1e-9
    assert share["a"] + share["b"] <= 1.0 + 1e-9


@SETTINGS
@given(snapshots(), st.booleans(), st.sampled_from(["continuum", "fifo"]))
def test_block_costing_equals_pair_by_pair_costing(
    snapshot: Snapshot, all_latencies: bool, policy: str
) -> None:
    # The cycle costs the groups without a residency bound in dense blocks; that must give
    # the very numbers of costing every pair on its own, so no decision depends on the path.
    from continuum.schedulers.config import PolicyConfig
    from continuum.schedulers.engine import prepare
    from continuum.schedulers.policy import STRATEGIES
    from continuum.schedulers.scoring import cost_terms

    config = PolicyConfig()
    m = prepare(snapshot, config, STRATEGIES[policy].filters, all_latencies=all_latencies)
    pair_group, pair_cluster, total = m.all_pairs()
    passed = m.filters.group_rows()
    assert np.array_equal(np.stack(np.nonzero(passed)), np.stack([pair_group, pair_cluster]))
    expected = cost_terms(
        m.groups,
        m.clusters,
        m.sites,
        config.latency_model,
        config.weights,
        pair_group,
        pair_cluster,
        m.clusters.allocated,
        all_latencies=all_latencies,
        detailed=False,
    )
    assert np.array_equal(total, expected.total)
    # The p99 used by `nearest`, pair by pair wherever it is held.
    for block in m.blocks:
        at = m.all_offsets[block.rows][:, None] + np.arange(block.columns.size)[None, :]
        assert np.array_equal(block.terms.p99_ms, expected.p99_ms[at])
        assert np.array_equal(block.terms.utilisation, expected.utilisation[at])
    outside = np.isin(pair_group, np.flatnonzero(m.block_of < 0))
    assert np.array_equal(m.terms.p99_ms, expected.p99_ms[outside])
