"""A local Ray cluster standing in for the member clusters, and the executor that runs a job's
shards on it where its Placement says.

Each member cluster is a custom resource `cluster/<name>` sized by its CPU capacity; a shard's
actor asks for its CPU demand of that resource (and no real CPU, so that a 2-core machine can
hold every shard), so Ray runs it "in" the member the scheduler chose, and a member that is full
refuses it as a real cluster would. All members' resources sit on one Ray node: on this
project's 2-core machines, one raylet per member (ray.cluster_utils) did not come up within
minutes while other work ran, whereas one node starts in seconds; the custom resources keep the
placement semantics either way.

Everything binds to 127.0.0.1: Ray resolves a node IP of 127.0.0.1 to the machine's routable
address unless told that clusters are off, and then listens on all interfaces.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from continuum.operator.api import Placement
from continuum.operator.recovery.migration import ShardMove, plan_moves

LOOPBACK = "127.0.0.1"
# Read by Ray at import time: without it a node IP of 127.0.0.1 is "resolved" to the routable
# address, and Ray's gRPC servers listen on every interface.
RAY_ENVIRONMENT = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}
# A probe actor takes a sliver of the member's resource, so it fits even a full member.
PROBE_RESOURCE = 0.001


def cluster_resource(member: str) -> str:
    return f"cluster/{member}"


def _import_ray() -> Any:
    for key, value in RAY_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    import ray

    return ray


class LocalRay:
    """One Ray node on 127.0.0.1 carrying a `cluster/<name>` resource per member."""

    def __init__(
        self,
        member_cpus: Mapping[str, float],
        num_cpus: int = 2,
        object_store_mb: int = 80,
    ) -> None:
        self.member_cpus = dict(member_cpus)
        self.num_cpus = num_cpus
        self.object_store_mb = object_store_mb
        self.ray: Any = None
        self.started_in_s: float | None = None
        self._probes: Any = None
        self._address: str | None = None

    def start(self) -> None:
        ray = _import_ray()
        started = time.perf_counter()
        ray.init(
            address="local",
            num_cpus=self.num_cpus,
            include_dashboard=False,
            object_store_memory=self.object_store_mb * 1024 * 1024,
            resources={cluster_resource(name): cpu for name, cpu in self.member_cpus.items()},
            _node_ip_address=LOOPBACK,
            log_to_driver=False,
            logging_level="ERROR",
            configure_logging=False,
        )
        self.ray = ray
        self.started_in_s = time.perf_counter() - started

    def node_address(self) -> str:
        """The address the node registered with; kept after shutdown for reports."""
        if self._address is None and self.ray is not None and self.ray.is_initialized():
            nodes = self.ray.nodes()
            self._address = str(nodes[0]["NodeManagerAddress"]) if nodes else ""
        return self._address or ""

    def stop(self) -> None:
        if self.ray is not None and self.ray.is_initialized():
            self.ray.shutdown()

    def __enter__(self) -> LocalRay:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- actors and probes ------------------------------------------------------------------

    def actor(self, cls: type, member: str, demand_cpu: float, *args: Any) -> Any:
        """An actor of `cls` placed in `member`, holding `demand_cpu` of its resource. Not
        restarted by Ray: when its member fails, recovery is the operator's decision."""
        remote = self.ray.remote(cls)
        return remote.options(
            num_cpus=0, resources={cluster_resource(member): demand_cpu}, max_restarts=0
        ).remote(*args)

    def kill(self, handle: Any) -> None:
        self.ray.kill(handle, no_restart=True)

    def probe(self, members: list[str], delays_ms: Mapping[str, float], timeout_s: float) -> dict[
        str, float | None
    ]:  # fmt: skip
        """Round trip to each member's probe actor, with the member link's delay injected
        there; milliseconds as measured, or None for no answer within `timeout_s`.

        A long-lived actor rather than a task per probe: zero-CPU tasks run concurrently, and
        each concurrent one costs Ray a new worker process, whose start on two busy cores
        shows up as seconds of fake RTT. One actor holding a sliver of every member's resource
        answers for all of them (concurrently): on one node, a process per member would only
        add start-up time.
        """
        started = time.perf_counter()
        target = self._probe_target()
        pending = {target.echo.remote(delays_ms[member] / 1000.0): member for member in members}
        answered: dict[str, float | None] = dict.fromkeys(members)
        remaining = list(pending)
        while remaining:
            left = timeout_s - (time.perf_counter() - started)
            if left <= 0:
                break
            ready, remaining = self.ray.wait(remaining, num_returns=1, timeout=left)
            for reference in ready:
                answered[pending[reference]] = (time.perf_counter() - started) * 1000.0
        return answered

    def _probe_target(self) -> Any:
        if self._probes is None:
            remote = self.ray.remote(ProbeTarget)
            self._probes = remote.options(
                num_cpus=0,
                max_concurrency=4 * max(1, len(self.member_cpus)),
                resources={cluster_resource(name): PROBE_RESOURCE for name in self.member_cpus},
            ).remote()
        return self._probes

    def start_probes(self) -> Any:
        """Starts the probe actor; the ObjectRef resolves once it answers. The first call to a
        new actor waits for its worker process, which is not any member's RTT."""
        return self._probe_target().echo.remote(0.0)

    def warm_up(self, timeout_s: float = 120.0) -> None:
        self.ray.get(self.start_probes(), timeout=timeout_s)

    def member_resources(self) -> dict[str, float]:
        """Member name -> the CPUs its `cluster/<name>` resource offers, as Ray reports it."""
        resources = self.ray.cluster_resources()
        return {
            name: float(resources[cluster_resource(name)])
            for name in self.member_cpus
            if cluster_resource(name) in resources
        }


class ProbeTarget:
    def echo(self, delay_s: float) -> bool:
        time.sleep(delay_s)
        return True


@dataclass
class RunningActor:
    shard: int
    cluster: str
    handle: Any


@dataclass
class Standby:
    """A shard's replacement, starting on its new member while the old copy still runs."""

    move: ShardMove
    actor: RunningActor
    constructed: Any  # ObjectRef
    since: float


class ShardExecutor:
    """Keeps one job's shard actors where its Placement says, resuming moved shards from their
    checkpoints.

    A shard whose copy still runs moves make-before-break: its replacement starts on the new
    member while the old copy goes on, and at a round boundary, once the replacement is up, it
    loads the latest checkpoint and the old copy stops. The downtime is that switch. A shard
    whose copy is gone (its member failed) can only restart where the scheduler now puts it.
    Nothing is started on a member known to be down.

    `on_move(move, downtime_s, resumed)` hears of every completed move: `downtime_s` runs from
    the switch or from the loss of the old copy until the new one has resumed.

    `make(shard, cluster)` creates a shard's actor (its constructor must not block on other
    shards); `resume(handle)` returns an ObjectRef that loads the shard's newest checkpoint and
    resolves to what it resumed from. Thread-safe: a member may fail (in the control loop) while
    the training loop applies a placement.
    """

    def __init__(
        self,
        ray: LocalRay,
        make: Callable[[int, str], Any],
        resume: Callable[[Any], Any],
        on_move: Callable[[ShardMove, float, Any], None] | None = None,
    ) -> None:
        self.ray = ray
        self.make = make
        self.resume = resume
        self.on_move = on_move
        self.running: dict[int, RunningActor] = {}
        self.standby: dict[int, Standby] = {}
        self.lost: dict[int, str] = {}
        self.lost_at: dict[int, float] = {}
        self.down: set[str] = set()
        self._lock = threading.Lock()

    def where(self) -> dict[int, str | None]:
        with self._lock:
            return self._where_locked()

    def _where_locked(self) -> dict[int, str | None]:
        placed: dict[int, str | None] = {s: a.cluster for s, a in self.running.items()}
        placed.update(dict.fromkeys(self.lost))
        return placed

    def handles(self) -> dict[int, RunningActor]:
        with self._lock:
            return dict(self.running)

    def has_lost_shards(self) -> bool:
        with self._lock:
            return bool(self.lost)

    def moving(self) -> bool:
        with self._lock:
            return bool(self.standby)

    def prepare(self, placement: Placement | None) -> None:
        """Starts replacements for moved shards whose copies still run; safe at any time, so
        the controller calls it as soon as a Placement changes, not at the next round."""
        with self._lock:
            self._start_standbys(plan_moves(self._where_locked(), placement))

    def _start_standbys(self, wanted: list[ShardMove]) -> list[ShardMove]:
        """With the lock held: starts what `wanted` needs and returns the moves that have no
        running copy to stand in for (cold starts)."""
        targets = {(move.shard, move.to_cluster) for move in wanted}
        for shard in [s for s, sb in self.standby.items() if (s, sb.actor.cluster) not in targets]:
            self.ray.kill(self.standby.pop(shard).actor.handle)  # the plan changed again
        cold: list[ShardMove] = []
        for move in wanted:
            if move.to_cluster in self.down or move.shard in self.standby:
                continue
            if move.shard in self.running:
                handle = self.make(move.shard, move.to_cluster)
                self.standby[move.shard] = Standby(
                    move,
                    RunningActor(move.shard, move.to_cluster, handle),
                    handle.__ray_ready__.remote(),
                    time.perf_counter(),
                )
            else:
                cold.append(move)
        return cold

    def apply(self, placement: Placement | None) -> list[ShardMove]:
        """Call at a round boundary. Starts replacements for moved shards, switches to those
        that are up, and restarts lost or new shards (waiting for them). Returns the moves
        completed by this call."""
        with self._lock:
            cold = self._start_standbys(plan_moves(self._where_locked(), placement))
            standbys = list(self.standby.values())
        done: list[tuple[ShardMove, float, Any]] = []
        if standbys:
            references = [standby.constructed for standby in standbys]
            up, _ = self.ray.ray.wait(references, num_returns=len(references), timeout=0)
            for standby in standbys:
                if standby.constructed in up:
                    switched = self._switch(standby)
                    if switched is not None:
                        done.append(switched)
        starting = [(move, self.make(move.shard, move.to_cluster)) for move in cold]
        for move, handle in starting:
            restarted = self._restart(move, handle)
            if restarted is not None:
                done.append(restarted)
        if self.on_move is not None:
            for move, took_s, value in done:
                self.on_move(move, took_s, value)
        return [move for move, _, _ in done]

    def _switch(self, standby: Standby) -> tuple[ShardMove, float, Any] | None:
        started = time.perf_counter()
        try:
            value = self.ray.ray.get(self.resume(standby.actor.handle))
        except self.ray.ray.exceptions.RayError:
            with self._lock:
                self.standby.pop(standby.move.shard, None)
            return None
        with self._lock:
            shard = standby.move.shard
            self.standby.pop(shard, None)
            previous = self.running.pop(shard, None)
            if previous is not None:
                self.ray.kill(previous.handle)
            self.running[shard] = standby.actor
            self.lost.pop(shard, None)
            # Down from the switch, or from the loss if the old copy died first.
            stopped = self.lost_at.pop(shard, started)
        return standby.move, time.perf_counter() - stopped, value

    def _restart(self, move: ShardMove, handle: Any) -> tuple[ShardMove, float, Any] | None:
        started = time.perf_counter()
        try:
            value = self.ray.ray.get(self.resume(handle))
        except self.ray.ray.exceptions.RayError:
            return None  # its member failed while it started; it stays lost
        with self._lock:
            self.running[move.shard] = RunningActor(move.shard, move.to_cluster, handle)
            self.lost.pop(move.shard, None)
            stopped = self.lost_at.pop(move.shard, started)
        return move, time.perf_counter() - stopped, value

    def lose_cluster(self, cluster: str) -> list[int]:
        """The member failed: its actors are gone, and their shards have no running copy. A
        replacement starting elsewhere survives, and takes over once it is up."""
        with self._lock:
            self.down.add(cluster)
            gone = [shard for shard, actor in self.running.items() if actor.cluster == cluster]
            for shard in gone:
                self.ray.kill(self.running.pop(shard).handle)
                self.lost[shard] = cluster
                self.lost_at[shard] = time.perf_counter()
            for shard in [s for s, sb in self.standby.items() if sb.actor.cluster == cluster]:
                self.ray.kill(self.standby.pop(shard).actor.handle)
            return gone

    def release(self) -> dict[tuple[int, str], Any]:
        """Hands over the running actors, by (shard, cluster), for another job to rebind;
        replacements still starting are stopped."""
        with self._lock:
            for standby in self.standby.values():
                self.ray.kill(standby.actor.handle)
            released = {(s, actor.cluster): actor.handle for s, actor in self.running.items()}
            self.running.clear()
            self.standby.clear()
            self.lost.clear()
            return released

    def stop(self) -> None:
        with self._lock:
            for actor in [*self.running.values(), *(s.actor for s in self.standby.values())]:
                self.ray.kill(actor.handle)
            self.running.clear()
            self.standby.clear()
            self.lost.clear()
