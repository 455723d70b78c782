"""The MILP yardstick, the latency model and the fairness helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sched_builders import cloud, edge, job, snapshot

from continuum.schedulers import Residency, schedule
from continuum.schedulers.fairness import jain_index, water_fill
from continuum.schedulers.network.latency import QueueingLatencyModel
from continuum.schedulers.sim.milp import evaluate_objective, optimality_gap, solve_milp
from continuum.schedulers.sim.scenarios import small_snapshot

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("seed", [0, 5, 12])
def test_the_milp_is_never_worse_than_any_policy(seed: int) -> None:
    instance = small_snapshot(seed)
    solution = solve_milp(instance)
    assert solution.optimal
    for policy in ("continuum", "fifo", "nearest", "drf"):
        objective = evaluate_objective(instance, schedule(instance, policy))
        assert solution.objective <= objective + 1e-6


def test_the_milp_placement_is_costed_like_its_objective_and_fits() -> None:
    instance = small_snapshot(3)
    solution = solve_milp(instance)
    demand = {j.key: np.array(j.demand.as_tuple()) for j in instance.jobs}
    load = {c.name: np.array(c.allocated.as_tuple()) for c in instance.clusters}
    for (key, _), cluster in solution.placement.items():
        load[cluster] = load[cluster] + demand[key]
    for cluster in instance.clusters:
        assert (load[cluster.name] <= np.array(cluster.capacity.as_tuple()) + 1e-6).all()
    from continuum.schedulers.model import CycleResult, Decision

    as_result = CycleResult(
        "milp", tuple(Decision(k, s, c, 0.0, ()) for (k, s), c in solution.placement.items())
    )
    assert evaluate_objective(instance, as_result) == pytest.approx(solution.objective)


def test_the_milp_prefers_the_rigid_job_for_the_scarce_site() -> None:
    clusters = [edge("delft-1", "delft", cpu=2.0), cloud("cloud-1")]
    flexible = job("a/flexible", cpu=2.0, data_site="delft", rate_mbps=1.0)
    pinned = job("b/pinned", cpu=2.0, data_site="delft", residency=Residency.SITE)
    solution = solve_milp(snapshot(clusters, [flexible, pinned]))
    assert solution.placement == {("b/pinned", 0): "delft-1", ("a/flexible", 0): "cloud-1"}
    result = schedule(snapshot(clusters, [flexible, pinned]))
    assert result.placement() == solution.placement


def test_the_gap_is_relative_to_the_optimum() -> None:
    assert optimality_gap(102.0, 100.0) == pytest.approx(0.02)
    assert optimality_gap(0.0, 0.0) == 0.0


def test_latency_adds_rtt_transfer_and_queueing() -> None:
    model = QueueingLatencyModel(request_load=0.5, interference=1.0)
    one = np.array(1.0)
    # 125 kB is 1000 kbit, which takes 1 ms at 1000 Mbps.
    assert float(model.transfer_ms(np.array(125.0), np.array(1000.0))) == pytest.approx(1.0)
    idle = float(model.p99_ms(np.array(10.0), np.array(1000.0), np.array(125.0), one, 0 * one))
    assert idle == pytest.approx(10.0 + 1.0 + math.log(100) * 1.0 / 0.5)
    busy = float(model.p99_ms(np.array(10.0), np.array(1000.0), np.array(125.0), one, one))
    assert busy - 11.0 == pytest.approx(2 * (idle - 11.0))


def test_jain_and_water_filling() -> None:
    assert jain_index([1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert jain_index([1.0, 0.0, 0.0, 0.0]) == pytest.approx(0.25)
    shares = water_fill({"a": 0.1, "b": 1.0, "c": 1.0}, {"a": 1.0, "b": 1.0, "c": 2.0})
    assert shares["a"] == pytest.approx(0.1)
    assert shares["c"] == pytest.approx(2 * shares["b"])
    assert sum(shares.values()) == pytest.approx(1.0)


def test_a_link_serves_both_ways_unless_the_way_back_is_given() -> None:
    from continuum.schedulers import Link, Network, Site, Snapshot
    from continuum.schedulers.arrays import build_site_index

    sites = (Site("a", "r"), Site("b", "r"), Site("c", "r"))
    one_way = Network(links=(Link("a", "b", 10.0, 100.0), Link("c", "a", 5.0, 50.0)))
    index = build_site_index(Snapshot(sites, (), network=one_way))
    a, b, c = (index.index[name] for name in "abc")
    assert index.rtt_ms[b, a] == index.rtt_ms[a, b] == 10.0
    assert index.bandwidth_mbps[a, c] == 50.0
    assert index.rtt_ms[b, c] == one_way.default_rtt_ms
    both = Network(links=(Link("a", "b", 10.0, 100.0), Link("b", "a", 20.0, 200.0)))
    index = build_site_index(Snapshot(sites, (), network=both))
    assert (index.rtt_ms[a, b], index.rtt_ms[b, a]) == (10.0, 20.0)
