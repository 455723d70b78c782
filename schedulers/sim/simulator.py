"""A discrete-event simulator: a workload replayed under one policy.

Events are job arrivals, job completions and the failures of the failure CSV. A scheduling
cycle runs every `cycle_interval_s` seconds, and only when something changed since the last one
(the scheduler is deterministic, so an unchanged state gives an unchanged decision).

- A job progresses at rate 1 while at least minAvailable of its shards run on healthy clusters;
  it completes when its progress reaches its duration.
- A `down` failure makes a cluster unhealthy: its shards stop until the policy moves them or the
  cluster returns (then they restart in place).
- A `degrade` failure raises the cluster's risk (what the risk predictor would report) and slows
  its service time, so that shards there miss latency SLOs unless they move.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from continuum.schedulers.config import PolicyConfig
from continuum.schedulers.engine import prepare
from continuum.schedulers.fairness import dominant_share, jain_index, water_fill
from continuum.schedulers.filters import ALL_FILTERS
from continuum.schedulers.model import (
    Cluster,
    CycleResult,
    DataSource,
    Job,
    Mode,
    Resources,
    RunningShard,
    Snapshot,
    Tenant,
)
from continuum.schedulers.network.latency import QueueingLatencyModel
from continuum.schedulers.policy import schedule
from continuum.schedulers.scoring import MEGABITS_PER_GIGABYTE, SECONDS_PER_HOUR
from continuum.schedulers.sim.backlog import Backlog
from continuum.schedulers.sim.metrics import (
    SimulationMetrics,
    TimelinePoint,
    mean,
    percentile,
    region_map,
    residency_violated,
)
from continuum.schedulers.trace import FailureKind, Topology, TraceJob, Workload


@dataclass(frozen=True)
class SimulationConfig:
    cycle_interval_s: float = 10.0
    # Stop at this time even if work is left; None: last arrival + 3 × the longest duration.
    horizon_s: float | None = None
    degrade_risk: float = 0.9
    degrade_slowdown: float = 4.0
    policy: PolicyConfig = field(default_factory=lambda: PolicyConfig(explain=False))


@dataclass(frozen=True)
class SimulationResult:
    policy: str
    metrics: SimulationMetrics
    timeline: tuple[TimelinePoint, ...]


@dataclass
class _JobState:
    trace: TraceJob
    # Whether its shard-time counts towards SLO attainment (latency-bound, not infeasible).
    counts_slo: bool
    shards: dict[int, str] = field(default_factory=dict)
    progress_s: float = 0.0
    started_s: float | None = None
    # The healthy shards it needs to progress, read every time step.
    gang: int = field(init=False)

    def __post_init__(self) -> None:
        self.gang = max(self.trace.job.gang_size, 1)


@dataclass
class _Accounts:
    slo_demand_s: float = 0.0
    slo_met_s: float = 0.0
    wan_gb: float = 0.0
    cost: float = 0.0
    contended_s: float = 0.0
    jain_weighted: float = 0.0


def infeasible_jobs(workload: Workload) -> frozenset[str]:
    """Jobs whose gang cannot be placed even on the whole, empty, healthy continuum under
    their own hard constraints (residency, tiers, selectors). No policy can be blamed for
    them, so fairness and SLO accounting leave them out.

    Alone on an empty continuum, a job of one placement group (Training, Inference) gets as
    many shards as fit on the clusters that pass its filters, whatever its scores; that sum
    is computed for all of them at once. A Federated job's shards compete for clusters in
    the order the policy picks them, so each one is scheduled alone, as the policy would.
    """
    topology = workload.topology
    empty = tuple(replace(c, allocated=Resources(), healthy=True) for c in topology.clusters)
    config = PolicyConfig(explain=False)
    jobs = tuple(replace(trace.job, risk_threshold=1.0) for trace in workload.jobs)

    def alone(job: Job) -> int:
        snapshot = Snapshot(
            sites=topology.sites,
            clusters=empty,
            jobs=(job,),
            tenants=topology.tenants,
            network=topology.network,
        )
        return len(schedule(snapshot, "continuum", config).decisions)

    whole = [job for job in jobs if job.mode is not Mode.FEDERATED]
    placed = dict(
        zip((job.key for job in whole), fitting_alone(topology, empty, whole), strict=True)
    )
    infeasible = set()
    for job in jobs:
        count = placed[job.key] if job.key in placed else alone(job)
        if count < max(job.gang_size, 1):
            infeasible.add(job.key)
    return frozenset(infeasible)


def fitting_alone(
    topology: Topology, clusters: tuple[Cluster, ...], jobs: Sequence[Job]
) -> list[int]:
    """Per job of one placement group: the shards it would get alone on these clusters, all
    free: its pending shards, capped by how many fit on the clusters that pass its filters
    (with the engine's rounding, see _Cycle._assign_best)."""
    if not jobs:
        return []
    snapshot = Snapshot(
        sites=topology.sites,
        clusters=clusters,
        jobs=tuple(jobs),
        tenants=topology.tenants,
        network=topology.network,
    )
    m = prepare(snapshot, PolicyConfig(explain=False), ALL_FILTERS)
    demand = m.groups.demand
    fit = np.full((len(m.groups), len(m.clusters.names)), np.iinfo(np.int32).max, dtype=np.int64)
    for resource in range(3):
        asks = demand[:, resource] > 0
        if asks.any():
            room = m.clusters.capacity[None, :, resource] + 1e-9
            shards = (room // np.where(asks, demand[:, resource], 1.0)[:, None]).astype(np.int64)
            fit = np.where(asks[:, None], np.minimum(fit, shards), fit)
    fit = np.where(m.filters.group_rows(), np.maximum(fit, 0), 0)
    total = np.minimum(fit.sum(axis=1), m.groups.count)
    by_key = {
        m.jobs[int(job)].key: int(count) for job, count in zip(m.groups.job, total, strict=True)
    }
    return [by_key.get(job.key, 0) for job in jobs]


class _Simulation:
    def __init__(
        self,
        workload: Workload,
        policy: str,
        config: SimulationConfig,
        infeasible: frozenset[str] = frozenset(),
    ) -> None:
        self.infeasible = infeasible
        self.workload = workload
        self.policy = policy
        self.config = config
        topology = workload.topology
        self.base_clusters = {c.name: c for c in topology.clusters}
        self.down: dict[str, int] = dict.fromkeys(self.base_clusters, 0)
        self.degraded: dict[str, int] = dict.fromkeys(self.base_clusters, 0)
        self.regions = region_map(topology.sites)
        self.links = topology.network.link_table()
        self.tenants = {t.name: t for t in topology.tenants}
        for trace in workload.jobs:
            self.tenants.setdefault(trace.job.tenant, Tenant(trace.job.tenant))
        self.arrivals = sorted(workload.jobs, key=lambda t: (t.job.submit_time_s, t.job.key))
        self.next_arrival = 0
        self.active: dict[str, _JobState] = {}
        self.accounts = _Accounts()
        self.jct: list[float] = []
        self.rho: list[float] = []
        self.queueing: list[float] = []
        self.cycle_ms: list[float] = []
        self.placements = 0
        self.violations = 0
        self.schedule_s = 0.0
        self.timeline: list[TimelinePoint] = []
        self.latency = QueueingLatencyModel()
        self.total_capacity = np.sum([c.capacity.as_tuple() for c in topology.clusters], axis=0)
        self.tenant_count = max(len(self.tenants), 1)
        self.dirty = True
        self.end_time = 0.0
        self._views: dict[str, Cluster] | None = None
        self._rates: dict[str, list[tuple[float, float, bool]]] | None = None
        self._fairness: tuple[float | None] | None = None
        # Per tenant, the demand of its active jobs (for fairness), until a job completes.
        self._asked: dict[str, list[float]] | None = None
        # Healthy running shards per job, until the placement or a cluster's health changes.
        self._healthy: dict[str, int] = {}
        # Jobs that found no room in the last cycle, left out of cycles until room may have
        # freed up for them; only for policies where that changes no decision.
        self.backlog = Backlog(workload, policy)
        # The last view of each cluster, by what it shows (allocation, risk, health).
        self._view_of: dict[str, tuple[tuple[float, float, float, float, bool], Cluster]] = {}
        # Per job, its running shards as a snapshot lists them, until they change.
        self._running_of: dict[str, tuple[RunningShard, ...]] = {}
        self._static_loads: dict[
            tuple[str, int, str], tuple[float, float, tuple[int, ...], tuple[DataSource, ...]]
        ] = {}

    def invalidate(self) -> None:
        """Forget cached cluster views and shard rates after the placement changed."""
        self._views = None
        self._rates = None
        self._fairness = None
        self._healthy = {}

    # -- state ------------------------------------------------------------------------------

    def cluster_views(self) -> dict[str, Cluster]:
        if self._views is None:
            self._views = self._cluster_views()
        return self._views

    def _cluster_views(self) -> dict[str, Cluster]:
        # Plain floats, as this runs after every change; the order of the additions fixes the
        # sums to the last bit, and so every figure of a run.
        allocated = {name: [0.0, 0.0, 0.0] for name in self.base_clusters}
        for state in self.active.values():
            if not state.shards:
                continue
            cpu, memory, gpu = state.trace.job.demand.as_tuple()
            for cluster in state.shards.values():
                used = allocated[cluster]
                used[0] += cpu
                used[1] += memory
                used[2] += gpu
        views = {}
        for name, base in self.base_clusters.items():
            risk = max(base.risk, self.config.degrade_risk) if self.degraded[name] else base.risk
            cpu, memory, gpu = allocated[name]
            shown = (cpu, memory, gpu, risk, not self.down[name])
            known = self._view_of.get(name)
            if known is None or known[0] != shown:
                view = replace(
                    base, allocated=Resources(cpu, memory, gpu), risk=risk, healthy=shown[4]
                )
                known = self._view_of[name] = (shown, view)
            views[name] = known[1]
        return views

    def snapshot(self, now: float) -> Snapshot:
        topology = self.workload.topology
        # Cluster views count every shard, so capacity held by a left-out job stays held.
        active = [(k, s) for k, s in self.active.items() if self.in_cycle(k, s)]
        running = tuple(shard for key, state in active for shard in self.running_shards(key, state))
        return Snapshot(
            sites=topology.sites,
            clusters=tuple(self.cluster_views().values()),
            jobs=tuple(state.trace.job for _, state in active),
            tenants=tuple(self.tenants.values()),
            running=running,
            network=topology.network,
            now_s=now,
        )

    def running_shards(self, key: str, state: _JobState) -> tuple[RunningShard, ...]:
        known = self._running_of.get(key)
        if known is None:
            known = self._running_of[key] = tuple(
                RunningShard(key, shard, cluster) for shard, cluster in sorted(state.shards.items())
            )
        return known

    def in_cycle(self, key: str, state: _JobState) -> bool:
        """Whether the next cycle needs to see this job. A policy with a backlog looks at
        pending work alone (see backlog.py): a job with every shard running on a healthy
        cluster can change nothing in its cycle."""
        if not self.backlog.enabled:
            return True
        return key not in self.backlog and self.healthy_shards(state) < state.trace.job.shards

    def healthy_shards(self, state: _JobState) -> int:
        if not state.shards:
            return 0
        key = state.trace.job.key
        count = self._healthy.get(key)
        if count is None:
            count = sum(1 for c in state.shards.values() if not self.down[c])
            self._healthy[key] = count
        return count

    # -- time passing -----------------------------------------------------------------------

    def shard_rates(self) -> dict[str, list[tuple[float, float, bool]]]:
        """Per job, per healthy running shard: (cost $/h, WAN Mbps, meets SLO)."""
        if self._rates is None:
            self._rates = self._shard_rates()
        return self._rates

    def _shard_rates(self) -> dict[str, list[tuple[float, float, bool]]]:
        views = self.cluster_views()
        rows: list[tuple[str, float, float]] = []
        # Latency inputs of every (latency-bound shard, data source), for one vector call.
        owners: list[int] = []
        inputs: list[tuple[float, float, float, float, float]] = []
        slos: list[float] = []
        no_slo = float("inf")
        down = self.down
        static_loads = self._static_loads
        # A cluster's utilisation over the resources a shard asks for, once per call.
        utilisations: dict[tuple[str, tuple[int, ...]], float] = {}
        for key, state in self.active.items():
            if not state.shards:
                continue
            job = state.trace.job
            for shard, name in state.shards.items():
                if down[name]:
                    continue
                cluster = views[name]
                place = (key, shard, name)
                static = static_loads.get(place)
                if static is None:
                    static = self._shard_load(job, shard, cluster)
                    static_loads[place] = static
                cost, wan, wanted, sources = static
                utilisation = utilisations.get((name, wanted))
                if utilisation is None:
                    allocated = cluster.allocated.as_tuple()
                    capacity = cluster.capacity.as_tuple()
                    utilisation = max((allocated[i] / capacity[i] for i in wanted), default=0.0)
                    utilisations[(name, wanted)] = utilisation
                if job.latency_slo_ms is not None:
                    slowdown = self.config.degrade_slowdown if self.degraded[name] else 1.0
                    for source in sources:
                        rtt, bandwidth = self._path(source.site, cluster.site)
                        owners.append(len(rows))
                        inputs.append(
                            (rtt, bandwidth, job.request_kb, job.service_ms * slowdown, utilisation)
                        )
                slos.append(no_slo if job.latency_slo_ms is None else job.latency_slo_ms)
                rows.append((key, cost, wan))
        worst = np.zeros(len(rows))
        if inputs:
            columns = np.array(inputs).T
            p99 = self.latency.p99_ms(columns[0], columns[1], columns[2], columns[3], columns[4])
            np.maximum.at(worst, np.array(owners), p99)
        # Only jobs with a healthy shard have an entry.
        rates: dict[str, list[tuple[float, float, bool]]] = {}
        for (key, cost, wan), p99_ms, slo in zip(rows, worst.tolist(), slos, strict=True):
            rates.setdefault(key, []).append((cost, wan, p99_ms <= slo))
        return rates

    def _shard_load(
        self, job: Job, shard: int, cluster: Cluster
    ) -> tuple[float, float, tuple[int, ...], tuple[DataSource, ...]]:
        """What does not change while a shard stays on a cluster: (cost $/h, WAN Mbps, the
        resources it asks for, its data sources)."""
        demand = job.demand.as_tuple()
        capacity = cluster.capacity.as_tuple()
        wanted = tuple(i for i in range(3) if demand[i] > 0 and capacity[i] > 0)
        share = max((demand[i] / capacity[i] for i in wanted), default=0.0)
        sources: tuple[DataSource, ...]
        if job.mode is Mode.FEDERATED:
            sources = (job.data[shard],) if shard < len(job.data) else ()
            rate_share = 1.0
        else:
            sources, rate_share = job.data, 1.0 / job.shards
        wan = sum(s.rate_mbps * rate_share for s in sources if s.site != cluster.site)
        return cluster.cost_per_hour * share, wan, wanted, sources

    def _path(self, source: str, target: str) -> tuple[float, float]:
        network = self.workload.topology.network
        if source == target:
            return network.intra_site_rtt_ms, network.intra_site_bandwidth_mbps
        link = self.links.get((source, target))
        if link is None:
            return network.default_rtt_ms, network.default_bandwidth_mbps
        return link.rtt_ms, link.bandwidth_mbps

    def advance(self, start: float, end: float) -> None:
        """Let time run from start to end with no event in between."""
        if end <= start:
            return
        rates = self.shard_rates()
        finished: list[tuple[float, str]] = []
        accounts = self.accounts
        # Summed in the same order as ever, in locals: this runs every time step over every
        # active job, most of them idle in a long backlog (adding nothing is left out).
        cost, wan_gb = accounts.cost, accounts.wan_gb
        slo_demand_s, slo_met_s = accounts.slo_demand_s, accounts.slo_met_s
        step = end - start
        for key, state in self.active.items():
            span = step
            shard_rates = None
            if state.shards:
                if self.healthy_shards(state) >= state.gang:
                    remaining = state.trace.duration_s - state.progress_s
                    if remaining <= span:
                        span = max(remaining, 0.0)
                        finished.append((start + span, key))
                    state.progress_s += span
                shard_rates = rates.get(key)
                if shard_rates:
                    for shard_cost, shard_wan, _ in shard_rates:
                        cost += shard_cost * span / SECONDS_PER_HOUR
                        wan_gb += shard_wan * span / MEGABITS_PER_GIGABYTE
            if state.counts_slo:
                shards = state.trace.job.shards
                slo_demand_s += shards * span
                if shard_rates:
                    met = sum(1 for _, _, ok in shard_rates if ok)
                    slo_met_s += min(met, shards) * span
        accounts.cost, accounts.wan_gb = cost, wan_gb
        accounts.slo_demand_s, accounts.slo_met_s = slo_demand_s, slo_met_s
        for at, key in finished:
            self.finish(key, at)

    def finish(self, key: str, at: float) -> None:
        state = self.active.pop(key)
        self._running_of.pop(key, None)
        self.invalidate()
        self._asked = None
        self.backlog.completed(key, state.shards.values())
        job = state.trace.job
        jct = at - job.submit_time_s
        self.jct.append(jct)
        demand = np.array(job.demand.as_tuple()) * job.shards
        fraction = dominant_share(demand, self.total_capacity) * self.tenant_count
        ideal = state.trace.duration_s * max(1.0, fraction)
        self.rho.append(jct / ideal if ideal > 0 else 1.0)
        self.dirty = True

    # -- events -----------------------------------------------------------------------------

    def failure_events(self) -> list[tuple[float, int, str, FailureKind]]:
        events: list[tuple[float, int, str, FailureKind]] = []
        for failure in self.workload.failures:
            events.append((failure.at_s, +1, failure.cluster, failure.kind))
            events.append((failure.at_s + failure.duration_s, -1, failure.cluster, failure.kind))
        heapq.heapify(events)
        return events

    def apply_failure(self, change: int, cluster: str, kind: FailureKind) -> None:
        if cluster not in self.base_clusters:
            return
        table = self.down if kind is FailureKind.DOWN else self.degraded
        before = table[cluster] > 0
        table[cluster] = max(0, table[cluster] + change)
        if before != (table[cluster] > 0) and len(self.backlog):
            there = [k for k, state in self.active.items() if cluster in state.shards.values()]
            self.backlog.cluster_changed(cluster, kind, opened=before, running_there=there)
        self.invalidate()
        self.dirty = True

    def admit_arrivals(self, now: float) -> None:
        while (
            self.next_arrival < len(self.arrivals)
            and self.arrivals[self.next_arrival].job.submit_time_s <= now
        ):
            trace = self.arrivals[self.next_arrival]
            key = trace.job.key
            counts_slo = trace.job.latency_slo_ms is not None and key not in self.infeasible
            self.active[key] = _JobState(trace, counts_slo)
            self.next_arrival += 1
            self.dirty = True
            # A job without shards changes the demand that fairness weighs, nothing else.
            self._fairness = None
            if self._asked is not None and key not in self.infeasible:
                # The newest job comes last in the order the demand is summed in.
                self._add_asked(self._asked, trace.job)

    # -- cycles -----------------------------------------------------------------------------

    def cycle(self, now: float, clock: Callable[[], float]) -> None:
        if len(self.backlog):
            self.backlog.wake({name: _room(view) for name, view in self.cluster_views().items()})
        snapshot = self.snapshot(now)
        started = clock()
        result = schedule(snapshot, self.policy, self.config.policy)
        self.schedule_s += clock() - started
        self.cycle_ms.append(result.timing.total_ms)
        changed = self.apply(result, now)
        if self.backlog.enabled:
            down = {name for name, count in self.down.items() if count}
            for entry in result.unschedulable:
                state = self.active[entry.job_key]
                self.backlog.hold(state.trace.job, state.shards, down)
        self.dirty = changed
        self.sample_fairness(now)

    def apply(self, result: CycleResult, now: float) -> bool:
        changed = bool(result.decisions or result.preemptions or result.migrations)
        if changed:
            self.invalidate()
        for preemption in result.preemptions:
            state = self.active.get(preemption.job_key)
            if state is not None:
                state.shards.pop(preemption.shard_index, None)
                self._running_of.pop(preemption.job_key, None)
        for decision in result.decisions:
            state = self.active[decision.job_key]
            state.shards[decision.shard_index] = decision.cluster
            self._running_of.pop(decision.job_key, None)
            self.placements += 1
            if residency_violated(
                state.trace.job,
                decision.shard_index,
                self.base_clusters[decision.cluster],
                self.regions,
            ):
                self.violations += 1
        for state in self.active.values():
            if state.started_s is not None or not state.shards:
                continue
            if self.healthy_shards(state) >= state.gang:
                state.started_s = now
                self.queueing.append(now - state.trace.job.submit_time_s)
        return changed

    def sample_fairness(self, now: float) -> None:
        if self._fairness is None:
            self._fairness = (self._jain_now(),)
        (jain,) = self._fairness
        if jain is not None:
            self.accounts.contended_s += self.config.cycle_interval_s
            self.accounts.jain_weighted += jain * self.config.cycle_interval_s
        attainment = (
            self.accounts.slo_met_s / self.accounts.slo_demand_s
            if self.accounts.slo_demand_s
            else None
        )
        self.timeline.append(TimelinePoint(now, attainment, jain))

    def _jain_now(self) -> float | None:
        """Jain's index of dominant share over fair share, or None without contention."""
        # Plain floats per tenant, in the order of the active jobs: this runs every cycle.
        if self._asked is None:
            self._asked = {}
            for key, state in self.active.items():
                if key not in self.infeasible:
                    self._add_asked(self._asked, state.trace.job)
        asked = self._asked
        used: dict[str, list[float]] = {name: [0.0, 0.0, 0.0] for name in asked}
        pending = False
        for key, state in self.active.items():
            if key in self.infeasible:
                continue
            if not state.shards:
                # Nothing running adds nothing to its tenant's usage.
                pending = True
                continue
            job = state.trace.job
            per_shard = job.demand.as_tuple()
            running = self.healthy_shards(state)
            tenant_used = used[job.tenant]
            for resource in range(3):
                tenant_used[resource] += running * per_shard[resource]
            pending |= running < job.shards
        usage = {name: np.array(values) for name, values in used.items()}
        demand = {name: np.array(values) for name, values in asked.items()}
        total = np.sum(
            [c.capacity.as_tuple() for n, c in self.base_clusters.items() if not self.down[n]],
            axis=0,
        )
        if not pending or len(demand) < 2:
            return None
        weights = {name: self.tenants[name].weight for name in demand}
        wanted = {name: min(dominant_share(d, total), 1.0) for name, d in demand.items()}
        fair = water_fill(wanted, weights)
        ratios = [
            dominant_share(usage[name], total) / fair[name] for name in fair if fair[name] > 0
        ]
        return jain_index(ratios)

    @staticmethod
    def _add_asked(asked: dict[str, list[float]], job: Job) -> None:
        per_shard = job.demand.as_tuple()
        tenant_asked = asked.setdefault(job.tenant, [0.0, 0.0, 0.0])
        for resource in range(3):
            tenant_asked[resource] += job.shards * per_shard[resource]

    def run(self, clock: Callable[[], float], progress: Callable[[float], None] | None) -> None:
        interval = self.config.cycle_interval_s
        horizon = self.config.horizon_s
        if horizon is None:
            last = max((t.job.submit_time_s for t in self.arrivals), default=0.0)
            longest = max((t.duration_s for t in self.arrivals), default=0.0)
            horizon = last + 3 * longest + interval
        events = self.failure_events()
        now = 0.0
        while now <= horizon:
            self.admit_arrivals(now)
            if self.dirty:
                self.cycle(now, clock)
            elif self.timeline:
                self.sample_fairness(now)
            if progress is not None:
                progress(min(now / horizon, 1.0) if horizon else 1.0)
            if not self.active and self.next_arrival >= len(self.arrivals):
                break
            until = now + interval
            cursor = now
            while events and events[0][0] < until:
                at, change, cluster, kind = heapq.heappop(events)
                self.advance(cursor, max(at, cursor))
                cursor = max(at, cursor)
                self.apply_failure(change, cluster, kind)
            self.advance(cursor, until)
            now = until
        self.end_time = now

    def metrics(self) -> SimulationMetrics:
        censored = [self.end_time - s.trace.job.submit_time_s for s in self.active.values()]
        jcts = self.jct + censored
        accounts = self.accounts
        return SimulationMetrics(
            slo_attainment=accounts.slo_met_s / accounts.slo_demand_s
            if accounts.slo_demand_s
            else None,
            jain_index=accounts.jain_weighted / accounts.contended_s
            if accounts.contended_s
            else None,
            max_rho=max(self.rho) if self.rho else None,
            mean_jct_s=mean(jcts),
            p95_jct_s=percentile(jcts, 95),
            mean_queueing_s=mean(self.queueing),
            wan_gb=accounts.wan_gb,
            cost=accounts.cost,
            residency_violations=self.violations,
            placements=self.placements,
            placements_per_s=self.placements / self.schedule_s if self.schedule_s else None,
            p99_cycle_ms=percentile(self.cycle_ms, 99),
            cycles=len(self.cycle_ms),
            completed_jobs=len(self.jct),
            unfinished_jobs=len(self.active),
            infeasible_jobs=len(self.infeasible),
        )


def _room(cluster: Cluster) -> tuple[float, float, float]:
    capacity, allocated = cluster.capacity.as_tuple(), cluster.allocated.as_tuple()
    return (capacity[0] - allocated[0], capacity[1] - allocated[1], capacity[2] - allocated[2])


def simulate(
    workload: Workload,
    policy: str = "continuum",
    config: SimulationConfig | None = None,
    clock: Callable[[], float] | None = None,
    progress: Callable[[float], None] | None = None,
    infeasible: frozenset[str] | None = None,
) -> SimulationResult:
    """Replay the workload under the policy. `infeasible` (see infeasible_jobs) can be passed
    in when several policies run on the same workload, to compute it once."""
    config = config or SimulationConfig()
    if infeasible is None:
        infeasible = infeasible_jobs(workload)
    simulation = _Simulation(workload, policy, config, infeasible)
    simulation.run(clock or config.policy.clock, progress)
    if not math.isfinite(simulation.end_time):
        raise ValueError("the simulation did not end")
    return SimulationResult(policy, simulation.metrics(), tuple(simulation.timeline))
