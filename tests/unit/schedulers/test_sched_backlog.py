"""Which jobs the simulator leaves out of cycles, and which a completion or an outage brings
back (the simulator's tests check that this changes no decision)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sched_builders import NETWORK, SITES, edge, job

from continuum.schedulers.model import Cluster, Job
from continuum.schedulers.sim.backlog import Backlog
from continuum.schedulers.trace import FailureKind, Topology, TraceJob, Workload

pytestmark = pytest.mark.unit

# Karmada weights clusters by cpu: a one-replica job goes to "a", the largest, alone.
CLUSTERS = (
    edge("a", "delft", cpu=24.0, memory=96.0),
    edge("b", "delft", cpu=8.0, memory=32.0),
    edge("c", "lyon", cpu=8.0, memory=32.0),
)


def backlog(policy: str, jobs: Sequence[Job], clusters: Sequence[Cluster] = CLUSTERS) -> Backlog:
    topology = Topology(SITES, tuple(clusters), network=NETWORK)
    return Backlog(Workload(topology, tuple(TraceJob(j, 60.0) for j in jobs)), policy)


def free_everywhere(cpu: float = 8.0) -> dict[str, tuple[float, float, float]]:
    return {c.name: (cpu, 32.0, 0.0) for c in CLUSTERS}


def test_karmada_waits_for_room_on_its_static_targets_only() -> None:
    waiting = job("t/one", cpu=2.0)
    karmada = backlog("karmada", [waiting])
    karmada.hold(waiting, {}, down=set())
    karmada.completed("t/elsewhere", ["b"])
    karmada.wake(free_everywhere())
    assert "t/one" in karmada, "room on b cannot help: karmada never sends it there"
    karmada.completed("t/on-a", ["a"])
    karmada.wake(free_everywhere())
    assert "t/one" not in karmada


def test_fifo_may_use_any_cluster_past_its_filters() -> None:
    waiting = job("t/one", cpu=2.0)
    fifo = backlog("fifo", [waiting])
    fifo.hold(waiting, {}, down=set())
    fifo.completed("t/elsewhere", ["b"])
    fifo.wake(free_everywhere())
    assert "t/one" not in fifo


def test_karmada_splits_again_when_a_target_goes_down() -> None:
    waiting = job("t/one", cpu=2.0)
    karmada = backlog("karmada", [waiting])
    karmada.hold(waiting, {}, down=set())
    karmada.cluster_changed("a", FailureKind.DOWN, opened=False, running_there=())
    assert "t/one" not in karmada, "with a down, its replica goes to b"
    karmada.hold(waiting, {}, down={"a"})
    karmada.completed("t/on-c", ["c"])
    karmada.wake(free_everywhere())
    assert "t/one" in karmada, "b comes before c among equals: c is no target"
    karmada.completed("t/on-b", ["b"])
    karmada.wake(free_everywhere())
    assert "t/one" not in karmada


def test_a_cluster_going_down_wakes_only_the_jobs_running_there_elsewhere() -> None:
    gang = job("t/gang", cpu=2.0, shards=2)
    idle = job("t/idle", cpu=2.0)
    fifo = backlog("fifo", [gang, idle])
    fifo.hold(gang, {0: "b"}, down=set())
    fifo.hold(idle, {}, down=set())
    fifo.cluster_changed("b", FailureKind.DOWN, opened=False, running_there=["t/gang"])
    assert "t/gang" not in fifo, "its shard on b stopped and is pending again"
    assert "t/idle" in fifo, "a cluster going down frees no room"
    fifo.cluster_changed("b", FailureKind.DOWN, opened=True, running_there=[])
    assert "t/idle" not in fifo


def test_a_risk_change_matters_only_to_policies_that_filter_on_risk() -> None:
    waiting = job("t/one", cpu=2.0)
    for policy, woken in (("fifo", False), ("nearest", True)):
        waiting_list = backlog(policy, [waiting])
        waiting_list.hold(waiting, {}, down=set())
        waiting_list.cluster_changed("a", FailureKind.DEGRADE, opened=True, running_there=[])
        assert ("t/one" not in waiting_list) is woken, policy


def test_only_the_jobs_of_a_pool_that_the_room_can_hold_come_back() -> None:
    # One cluster, room for one 4-cpu shard: of the 4-cpu jobs only the first in the cycle's
    # order may fit; the 1-cpu job may still fit after it, and a 4-cpu job after a 4-cpu job
    # that cannot fit cannot either.
    clusters = (edge("a", "delft", cpu=16.0, memory=64.0),)
    jobs = [
        job("t/first", cpu=4.0, submit=0.0),
        job("t/second", cpu=4.0, submit=1.0),
        job("t/small", cpu=1.0, submit=2.0),
        job("t/third", cpu=4.0, submit=3.0),
        job("t/urgent", cpu=4.0, submit=4.0, priority=1),
    ]
    fifo = backlog("fifo", jobs, clusters)
    for waiting in jobs:
        fifo.hold(waiting, {}, down=set())
    fifo.completed("t/done", ["a"])
    fifo.wake({"a": (4.0, 32.0, 0.0)})
    assert sorted(j.key for j in jobs if j.key not in fifo) == ["t/small", "t/urgent"]
