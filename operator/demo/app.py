"""`continuum demo`: the whole Continuum loop on one machine, with real Ray.

An in-process store holds the example MemberClusters, Tenants and MLJobs; the operator's own
scheduling cycle (`continuum.operator.controller.scheduling.run_cycle`) and reconcile functions
run over it. A local Ray node on 127.0.0.1 stands in for the member clusters, one custom resource
`cluster/<name>` each, and the shards really run there: federated averaging over three edge
sites with a cloud aggregator, and an inference shard near its data.

Then the fault act, twice:
- proactive: member-2's (eindhoven's) link degrades, the risk detector of
  `continuum.operator.recovery` sees the trend and raises the member's status.risk, the
  scheduler moves the shard off it (a Proactive migration), and the shard resumes from its
  checkpoint before the site fails;
- reactive: the site fails without warning; the heartbeats stop, the member turns unreachable,
  the scheduler re-places the shard (a Failure migration) and it restarts from its checkpoint.

The federated example keeps all its data at Site residency; a Site-bound shard has nowhere to
go when its site fails (the scheduler rightly leaves it in place), so the demo relaxes the
eindhoven source to Region: its data may be processed anywhere in eu-west.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from continuum.operator.api import (
    ConditionStatus,
    MemberCluster,
    MemberClusterConditionType,
    MLJob,
    Placement,
    upsert_condition,
)
from continuum.operator.api.keys import JobKey
from continuum.operator.demo.network import HEALTHY_LINK, DegradingLink, LinkState
from continuum.operator.demo.ray_executor import LocalRay, ShardExecutor
from continuum.operator.demo.store import LocalStore
from continuum.operator.recovery.migration import ShardMove, recovery_cost
from continuum.operator.recovery.risk import (
    HeartbeatDetector,
    LinkSample,
    RiskAssessment,
    RiskConfig,
    RiskDetector,
)

if TYPE_CHECKING:
    from rich.console import Console

    from continuum.schedulers.model import Migration as SchedulerMigration
    from continuum.workloads.fedavg import TrainingConfig

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TOPOLOGY = ROOT / "e2e" / "topology"
EXAMPLE_FILES = (
    "memberclusters.yaml",
    "tenants.yaml",
    "mljob-federated.yaml",
    "mljob-inference.yaml",
)
SYSTEM_NAMESPACE = "continuum-system"
NETWORK_CONFIG_MAP = "continuum-network"
FEDERATED_JOB = "hvac-fedavg"
INFERENCE_JOB = "defect-detector"
NAMESPACE = "default"
FAILING_MEMBER = "member-2"
RELAXED_SOURCE = "eindhoven-hvac"
# The hub runs beside the cloud member: heartbeats travel from there to each member.
HUB_SITE = "frankfurt"
CASES = ("proactive", "reactive")
PROBE_TIMEOUT_S = 1.5


class RoundAbortedError(Exception):
    """A round that cannot complete: one of its shards, or its update, was lost."""


@dataclass(frozen=True)
class Profile:
    name: str
    degrade_at_s: float
    ramp_s: float
    failure_at_s: float
    # Training goes on this long after the moved shard is back, to show it carry on.
    tail_s: float
    min_rounds: int
    probe_interval_s: float
    risk_window_s: float
    peak_extra_rtt_ms: float = 150.0
    peak_loss: float = 0.3
    misses_to_fail: int = 3
    inference_burst: int = 10
    inference_pause_s: float = 0.15
    model_refresh_s: float = 1.0
    sudden_failure_at_s: float = 4.0
    # Give up on a recovery that has not happened after this long: the demo must end.
    recovery_timeout_s: float = 30.0
    local_compute_s: float = 0.5


FAST = Profile("fast", 3.0, 4.0, 12.5, 1.5, 10, 0.25, 2.5, sudden_failure_at_s=4.0,
               local_compute_s=0.4)  # fmt: skip
FULL = Profile("full", 8.0, 14.0, 26.0, 8.0, 30, 0.25, 4.0, sudden_failure_at_s=12.0,
               local_compute_s=0.8)  # fmt: skip


# -- the world: objects in the store, and the network between sites -------------------------


def example_objects() -> list[dict[str, Any]]:
    import yaml

    objects = []
    for name in EXAMPLE_FILES:
        for document in yaml.safe_load_all((EXAMPLES / name).read_text()):
            if not document:
                continue
            if document["kind"] == "MLJob" and document["metadata"]["name"] == FEDERATED_JOB:
                for source in document["spec"]["data"]:
                    if source["name"] == RELAXED_SOURCE:
                        source["residency"] = "Region"
            objects.append(document)
    return objects


class Network:
    """Site-to-site RTTs of the testbed's default topology, as the scheduler reads them."""

    def __init__(self, latency_csv: str) -> None:
        from continuum.schedulers.loaders import parse_latency
        from continuum.schedulers.model import Network as SchedulerNetwork

        self.model = SchedulerNetwork(links=parse_latency(latency_csv, "default-latency.csv"))
        self.table = self.model.link_table()

    def rtt_ms(self, from_site: str, to_site: str) -> float:
        if from_site == to_site:
            return self.model.intra_site_rtt_ms
        link = self.table.get((from_site, to_site))
        return link.rtt_ms if link else self.model.default_rtt_ms


def build_store(latency_csv: str) -> LocalStore:
    store = LocalStore()
    store.create_all(example_objects())
    store.put_config_map(SYSTEM_NAMESPACE, NETWORK_CONFIG_MAP, {"latency.csv": latency_csv})
    return store


# -- what a run records -------------------------------------------------------------------


def _rounded(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


@dataclass
class MigrationRecord:
    job: str
    shard: int
    from_cluster: str
    to_cluster: str
    reason: str
    at_s: float
    failure_at_s: float | None = None
    stopped_at_s: float | None = None
    resumed_at_s: float | None = None
    resumed_after_round: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "shard": self.shard,
            "from": self.from_cluster,
            "to": self.to_cluster,
            "reason": self.reason,
            "at_s": round(self.at_s, 3),
            "failure_at_s": _rounded(self.failure_at_s),
            "stopped_at_s": _rounded(self.stopped_at_s),
            "resumed_at_s": _rounded(self.resumed_at_s),
            "resumed_after_round": self.resumed_after_round,
        }


@dataclass
class RunRecord:
    case: str
    accuracy: list[float] = field(default_factory=list)
    round_ends_s: list[float] = field(default_factory=list)
    aborted_rounds: list[int] = field(default_factory=list)
    migrations: list[MigrationRecord] = field(default_factory=list)
    failure_at_s: float | None = None
    link_samples: list[tuple[float, float | None]] = field(default_factory=list)
    risk: list[tuple[float, float]] = field(default_factory=list)
    inference: list[tuple[float, float]] = field(default_factory=list)
    placements: list[dict[str, Any]] = field(default_factory=list)
    lost_rounds: int = 0
    downtime_s: float | None = None
    recovered: bool = False
    setup_s: float = 0.0
    duration_s: float = 0.0
    job_status: dict[str, Any] = field(default_factory=dict)


# -- one run of the fault act ----------------------------------------------------------------


class FaultAct:
    """One world (store, detectors, shards) through one fault act.

    Three loops, as in the operator: the control loop (heartbeats, risk, the scheduling cycle)
    in a thread; the placement controller and the training rounds in the caller's thread; and,
    in the proactive case, inference requests in a thread of their own.
    """

    def __init__(
        self,
        case: str,
        profile: Profile,
        ray: LocalRay,
        network: Network,
        latency_csv: str,
        checkpoints: Path,
        training: TrainingConfig,
        say: Callable[[str], None],
        progress: Callable[[RunRecord, str], None],
        seed: int,
        reuse: dict[tuple[int, str], Any],
    ) -> None:
        self.case = case
        # Without warning there is nothing to wait for: the reactive site fails early.
        self.failure_at_s = (
            profile.failure_at_s if case == "proactive" else profile.sudden_failure_at_s
        )
        self._say = say
        # Shard actors of the previous act, by (shard, cluster): a new worker process costs
        # seconds on two busy cores, so an actor already on the right member is rebound.
        self.reuse = reuse
        self.leftovers: dict[tuple[int, str], Any] = {}
        self.proactive = case == "proactive"
        self.profile = profile
        self.ray = ray
        self.network = network
        self.checkpoints = checkpoints
        self.training = training
        self.progress = progress
        self.store = build_store(latency_csv)
        self.record = RunRecord(case)
        self.members = {m.metadata.name or "": m for m in self.store.list(MemberCluster).valid}
        self.sites = {name: member.spec.site for name, member in self.members.items()}
        failing = DegradingLink(
            degrade_at_s=profile.degrade_at_s if self.proactive else None,
            ramp_s=profile.ramp_s,
            peak_extra_rtt_ms=profile.peak_extra_rtt_ms,
            peak_loss=profile.peak_loss,
            failure_at_s=self.failure_at_s,
        )
        self.links = {
            name: failing if name == FAILING_MEMBER else HEALTHY_LINK for name in self.members
        }
        risk_config = RiskConfig(
            window_s=profile.risk_window_s,
            min_samples=max(6, int(profile.risk_window_s / profile.probe_interval_s / 2)),
        )
        self.risk = {name: RiskDetector(risk_config) for name in self.members}
        self.heartbeats = {name: HeartbeatDetector(profile.misses_to_fail) for name in self.members}
        self.loss_rng = random.Random(seed)
        self.started = time.monotonic()
        self.stop = threading.Event()
        self.failed = threading.Event()
        self.lock = threading.Lock()
        self.executors: dict[str, ShardExecutor] = {}
        self.pending_migrations: dict[tuple[str, int], MigrationRecord] = {}
        self.errors: list[BaseException] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, text: str) -> None:
        self._say(f"[bold]{self.case:>9}[/] {text}")

    # -- the control loop: heartbeats, risk, scheduling -------------------------------------

    def base_rtt_ms(self, member: str) -> float:
        return self.network.rtt_ms(HUB_SITE, self.sites[member])

    def link(self, member: str) -> LinkState:
        return self.links[member].at(self.elapsed())

    def _fail_site(self) -> None:
        self.record.failure_at_s = self.elapsed()
        self.failed.set()
        with self.lock:
            executors = dict(self.executors)
        lost = {job: ex.lose_cluster(FAILING_MEMBER) for job, ex in executors.items()}
        shards = ", ".join(f"{job} shard {s}" for job, gone in lost.items() for s in gone)
        self.say(
            f"[red]{self.record.failure_at_s:6.2f}s  site {self.sites[FAILING_MEMBER]} "
            f"({FAILING_MEMBER}) fails[/]" + (f": lost {shards}" if shards else ": nothing lost")
        )

    def _member_status(
        self, member: MemberCluster, reachable: bool, rtt_ms: float | None,
        misses: int, assessment: RiskAssessment | None, now: datetime,
    ) -> dict[str, Any]:  # fmt: skip
        from continuum.operator.api.probe import ProbeResult
        from continuum.operator.reconcile.membership import probed_status

        if reachable:
            probe = ProbeResult(
                kubernetes_version=f"ray-{self.ray.ray.__version__}", latency_ms=rtt_ms
            )
        else:
            probe = ProbeResult(
                failure_reason="HeartbeatsMissed", message=f"{misses} heartbeats unanswered"
            )
        status = probed_status(member, probe, now)
        if assessment is not None:
            from continuum.operator.api import Risk

            degraded = assessment.clear
            conditions = upsert_condition(
                status.conditions,
                MemberClusterConditionType.DEGRADED,
                ConditionStatus.TRUE if degraded else ConditionStatus.FALSE,
                "LinkDegrading" if degraded else "LinkNormal",
                assessment.reason,
                observed_generation=member.metadata.generation,
                now=now,
            )
            status = status.model_copy(
                update={
                    "conditions": conditions,
                    "risk": Risk(score=assessment.score, signals=assessment.signals),
                }
            )
        return status.to_dict()

    def control_tick(self) -> None:
        from continuum.operator.controller.scheduling import run_cycle

        t = self.elapsed()
        if not self.failed.is_set() and t >= self.failure_at_s:
            self._fail_site()
        states = {name: self.link(name) for name in self.members}
        dropped = {
            name for name, state in states.items()
            if not state.up or self.loss_rng.random() < state.loss
        }  # fmt: skip
        answering = [name for name in self.members if name not in dropped]
        delays = {name: self.base_rtt_ms(name) + states[name].extra_rtt_ms for name in answering}
        measured = self.ray.probe(answering, delays, PROBE_TIMEOUT_S) if answering else {}
        now = datetime.now(UTC)
        for name in self.members:
            rtt = measured.get(name)
            sample = LinkSample(t, rtt)
            verdict = self.heartbeats[name].observe(sample)
            assessment = None
            if self.proactive:
                self.risk[name].observe(sample)
                assessment = self.risk[name].assess(t)
            if name == FAILING_MEMBER:
                self.record.link_samples.append((t, rtt))
                if assessment is not None:
                    self.record.risk.append((t, assessment.score))
            member_name = name

            def change(
                member: MemberCluster,
                verdict_reachable: bool = verdict.reachable,
                misses: int = verdict.consecutive_misses,
                rtt_ms: float | None = rtt,
                risk: RiskAssessment | None = assessment,
            ) -> dict[str, Any]:
                return self._member_status(member, verdict_reachable, rtt_ms, misses, risk, now)

            before = self.store.get(MemberCluster, "", member_name)
            self.store.update_status(MemberCluster, "", member_name, change)
            self._report_member_change(member_name, before, assessment, verdict.reachable, t)
        result = run_cycle(self.store, now, system_namespace=SYSTEM_NAMESPACE)
        if result.migrations:
            with self.lock:
                executors = dict(self.executors)
            for job, executor in executors.items():
                executor.prepare(self.placement(job))
        for migration in result.migrations:
            if migration.from_cluster == migration.to_cluster or not self._written(migration):
                continue
            record = MigrationRecord(
                job=migration.job_key,
                shard=migration.shard_index,
                from_cluster=migration.from_cluster,
                to_cluster=migration.to_cluster,
                reason=migration.reason.value,
                at_s=t,
            )
            with self.lock:
                self.pending_migrations[(migration.job_key, migration.shard_index)] = record
                self.record.migrations.append(record)
            colour = "green" if record.reason == "Proactive" else "yellow"
            self.say(
                f"[{colour}]{t:6.2f}s  scheduler: {record.reason} migration of "
                f"{record.job} shard {record.shard}: {record.from_cluster} → "
                f"{record.to_cluster}[/] ({migration.detail})"
            )

    def _report_member_change(
        self, name: str, before: dict[str, Any] | None, assessment: RiskAssessment | None,
        reachable: bool, t: float,
    ) -> None:  # fmt: skip
        status = (before or {}).get("status") or {}
        was_reachable = any(
            c.get("type") == "Reachable" and c.get("status") == "True"
            for c in status.get("conditions", [])
        )
        if was_reachable and not reachable:
            self.say(f"[yellow]{t:6.2f}s  {name}: heartbeats missed, Reachable=False[/]")
        was_degraded = any(
            c.get("type") == "Degraded" and c.get("status") == "True"
            for c in status.get("conditions", [])
        )
        if assessment is not None and assessment.clear and not was_degraded:
            self.say(
                f"[magenta]{t:6.2f}s  risk detector: {name} risk {assessment.score:.2f} "
                f"({assessment.reason})[/]"
            )

    def _first_heartbeats(self) -> None:
        """The operator's first probe of each member, before the act's clock starts: until a
        member answers it is not schedulable. A member is there when Ray carries its resource;
        its allocatable is what that resource offers."""
        from continuum.operator.api import ResourceAmounts
        from continuum.operator.api.probe import ProbeResult
        from continuum.operator.api.quantity import Quantity
        from continuum.operator.reconcile.membership import probed_status

        offered = self.ray.member_resources()
        now = datetime.now(UTC)
        for name, member in self.members.items():
            if name in offered:
                declared = member.spec.capacity or ResourceAmounts()
                probe = ProbeResult(
                    kubernetes_version=f"ray-{self.ray.ray.__version__}",
                    node_allocatable=declared.model_copy(
                        update={"cpu": Quantity.parse(f"{int(offered[name] * 1000)}m")}
                    ),
                    node_count=1,
                )
            else:
                probe = ProbeResult(failure_reason="NotInRay", message=f"no cluster/{name}")

            def first(member: MemberCluster, probe: ProbeResult = probe) -> dict[str, Any]:
                return probed_status(member, probe, now).to_dict()

            self.store.update_status(MemberCluster, "", name, first)

    def control_loop(self) -> None:
        interval = self.profile.probe_interval_s
        next_tick = time.monotonic()
        while not self.stop.is_set():
            try:
                self.control_tick()
            except Exception as error:  # the main thread reports it and stops the run
                self.errors.append(error)
                self.stop.set()
                return
            next_tick += interval
            self.stop.wait(max(0.0, next_tick - time.monotonic()))

    # -- the placement controller and the shards ----------------------------------------------

    def _written(self, migration: SchedulerMigration) -> bool:
        """Whether the job's Placement holds the move: its write loses a race with a shard's
        status update now and then, and the next cycle then decides the same move again."""
        placement = self.placement(JobKey.parse(migration.job_key).name)
        return placement is not None and any(
            decision.shard == migration.shard_index and decision.cluster == migration.to_cluster
            for decision in placement.spec.decisions
        )

    def placement(self, job: str) -> Placement | None:
        return next(
            (p for p in self.store.list(Placement).valid if p.spec.job_ref.name == job), None
        )

    def job(self, name: str) -> MLJob:
        return next(j for j in self.store.list(MLJob).valid if j.metadata.name == name)

    def _moved(self, job: str) -> Callable[[ShardMove, float, Any], None]:
        def on_move(move: ShardMove, took_s: float, resumed_after: Any) -> None:
            t = self.elapsed()
            key = (f"{NAMESPACE}/{job}", move.shard)
            with self.lock:
                record = self.pending_migrations.pop(key, None)
            if move.from_cluster is None and record is None:
                return  # a first placement
            checkpoint = (
                f", from its checkpoint of round {resumed_after}" if job == FEDERATED_JOB else ""
            )
            if record is not None:
                record.resumed_at_s = t
                record.failure_at_s = self.record.failure_at_s
                record.stopped_at_s = t - took_s
                if isinstance(resumed_after, int):
                    record.resumed_after_round = resumed_after
            origin = move.from_cluster or (record.from_cluster if record else "?")
            self.say(
                f"[cyan]{t:6.2f}s  {job} shard {move.shard} resumed on {move.to_cluster} "
                f"(from {origin}){checkpoint}; down for {took_s:.2f}s[/]"
            )

        return on_move

    def _executor(
        self, job: str, make: Callable[[int, str], Any], ready: Callable[[Any], Any]
    ) -> ShardExecutor:
        executor = ShardExecutor(self.ray, make, ready, self._moved(job))
        with self.lock:
            self.executors[job] = executor
        return executor

    def run(self) -> RunRecord:
        from continuum.operator.controller.scheduling import run_cycle

        setup_started = time.monotonic()
        fed_executor, aggregator_index = self._federated_executor()
        inference_executor = self._inference_executor()
        # Set-up happens before the act's clock starts: the first heartbeats, the first cycle,
        # and the shards' first start, so that the fault act meets a running continuum.
        self._first_heartbeats()
        run_cycle(self.store, datetime.now(UTC), system_namespace=SYSTEM_NAMESPACE)
        self._record_placements()
        control = threading.Thread(target=self.control_loop, name=f"control-{self.case}")
        client = self._inference_client() if self.proactive else None
        inference = threading.Thread(target=self.inference_loop, args=(inference_executor, client))
        try:
            probes_up = self.ray.start_probes()
            # Both jobs' shards start at once: Ray starts two worker processes at a time.
            serving = threading.Thread(
                target=inference_executor.apply, args=(self.placement(INFERENCE_JOB),)
            )
            if self.proactive:
                serving.start()
            fed_executor.apply(self.placement(FEDERATED_JOB))
            for unused in self.reuse.values():
                self.ray.kill(unused)
            self.reuse.clear()
            if serving.is_alive():
                serving.join()
            self.ray.ray.get(probes_up, timeout=120)
            if client is not None:
                self._warm_up_inference(inference_executor, client)
            self.record.setup_s = time.monotonic() - setup_started
            self.started = time.monotonic()
            self.say(f"shards running after {self.record.setup_s:.1f} s of set-up; the act begins")
            control.start()
            if self.proactive:
                inference.start()
            self._train(fed_executor, aggregator_index, self.ray.ray)
        finally:
            self.stop.set()
            if control.is_alive():
                control.join(timeout=10)
            if inference.is_alive():
                inference.join(timeout=10)
            with self.lock:
                executors = list(self.executors.values())
            self.leftovers = fed_executor.release()
            for executor in executors:
                executor.stop()
        if self.errors:
            raise RuntimeError(f"the {self.case} act failed") from self.errors[0]
        self.record.duration_s = self.elapsed()
        self.record.job_status = self.job_summary(FEDERATED_JOB)
        self._account()
        return self.record

    def _federated_executor(self) -> tuple[ShardExecutor, int]:
        from continuum.operator.reconcile.snapshot import shard_demand
        from continuum.workloads.fedavg import AggregatorShard, ParticipantShard

        fed = self.job(FEDERATED_JOB)
        sites = [source.site or "" for source in fed.spec.data]
        aggregator_index = len(sites)
        demand = shard_demand(fed).cpu
        root = str(self.checkpoints / self.case / FEDERATED_JOB)

        def make(shard: int, cluster: str) -> Any:
            reused = self.reuse.pop((shard, cluster), None)
            if reused is not None:
                reused.rebind.remote(root)
                return reused
            if shard == aggregator_index:
                return self.ray.actor(
                    AggregatorShard, cluster, demand, sites, shard, root, self.training
                )
            return self.ray.actor(
                ParticipantShard, cluster, demand, sites[shard], shard, root, self.training
            )

        def resume(handle: Any) -> Any:
            return handle.resume.remote()

        return self._executor(FEDERATED_JOB, make, resume), aggregator_index

    def _warm_up_inference(self, executor: ShardExecutor, client: Any) -> None:
        """A first burst, not counted: a fresh actor's first calls pay for its lazy set-up,
        which is deployment, not serving."""
        from continuum.workloads.sensors import site_dataset

        serving = executor.handles().get(0)
        if serving is None:
            return
        _, requests = site_dataset(self.job(INFERENCE_JOB).spec.data[0].site or "", 80)
        batches = [requests.features[i : i + 8] for i in range(0, len(requests), 8)]
        self.ray.ray.get(client.burst.remote(serving.handle, batches, 0.0), timeout=120)

    def _inference_client(self) -> Any:
        from continuum.operator.demo.ray_executor import PROBE_RESOURCE
        from continuum.workloads.fedavg import InferenceClient

        data_site = self.job(INFERENCE_JOB).spec.data[0].site
        at_site = next(name for name, site in self.sites.items() if site == data_site)
        return self.ray.actor(InferenceClient, at_site, PROBE_RESOURCE)

    def _inference_executor(self) -> ShardExecutor:
        from continuum.operator.reconcile.snapshot import shard_demand
        from continuum.workloads.fedavg import InferenceShard

        demand = shard_demand(self.job(INFERENCE_JOB)).cpu
        # It serves the federated job's global model, as the aggregator checkpoints it.
        model = str(self.checkpoints / self.case / FEDERATED_JOB / "shard-3")

        def make(shard: int, cluster: str) -> Any:
            return self.ray.actor(InferenceShard, cluster, demand, model)

        def resume(handle: Any) -> Any:
            return handle.reload.remote()

        return self._executor(INFERENCE_JOB, make, resume)

    def report_shards(self, job_name: str) -> None:
        """The placement controller's status writes, from what the executor runs: each running
        actor is shown to `reconcile.shards` as the KubeRay resource the operator would have
        created for it, with the status KubeRay would report and the checkpoint annotation
        the workload writes; a member known to be down is unreachable."""
        from continuum.operator.api import ApplyState, PlacementStatus
        from continuum.operator.api.shard_resources import SHARD_LABELS
        from continuum.operator.reconcile.kuberay import build_shard_resource
        from continuum.operator.reconcile.shards import (
            ClusterOutcome,
            job_status,
            placement_status,
        )

        with self.lock:
            executor = self.executors.get(job_name)
        placement = self.placement(job_name)
        if executor is None or placement is None:
            return
        job = self.job(job_name)
        epochs = {d.shard: d.epoch or placement.spec.epoch for d in placement.spec.decisions}
        running = executor.handles()
        outcomes: dict[str, ClusterOutcome] = {}
        for name in self.members:
            if name in executor.down:
                outcomes[name] = ClusterOutcome(name, ApplyState.UNREACHABLE, "heartbeats missed")
                continue
            resources = []
            for shard, actor in sorted(running.items()):
                if actor.cluster != name:
                    continue
                manifest = build_shard_resource(job, shard, epochs.get(shard, placement.spec.epoch))
                manifest["status"] = {
                    "jobDeploymentStatus": "Running",
                    "jobStatus": "RUNNING",
                    "serviceStatus": "Running",
                }
                checkpoint = self._last_checkpoint(job_name, shard)
                if checkpoint is not None:
                    annotations = manifest["metadata"]["annotations"]
                    annotations[SHARD_LABELS.last_checkpoint_annotation] = checkpoint
                resources.append(manifest)
            outcomes[name] = ClusterOutcome(name, ApplyState.APPLIED, "", tuple(resources))
        now = datetime.now(UTC)
        raw_job = self.store.get(MLJob, NAMESPACE, job_name)
        raw_placement = self.store.get(Placement, NAMESPACE, placement.metadata.name or "")
        if raw_job is not None:
            status = job_status(job, placement, outcomes, now).to_dict()
            self.store.replace_status(MLJob, {**raw_job, "status": status})
        if raw_placement is not None:
            applied: PlacementStatus = placement_status(placement, outcomes.values(), now)
            self.store.replace_status(Placement, {**raw_placement, "status": applied.to_dict()})

    def _last_checkpoint(self, job_name: str, shard: int) -> str | None:
        directory = self.checkpoints / self.case / job_name / f"shard-{shard}"
        newest = max(directory.glob("round-*.npz"), default=None, key=lambda p: p.stat().st_mtime)
        if newest is None:
            return None
        return datetime.fromtimestamp(newest.stat().st_mtime, UTC).isoformat()

    def job_summary(self, job_name: str) -> dict[str, Any]:
        job = self.job(job_name)
        status = job.status
        return {
            "phase": status.phase.value if status and status.phase else None,
            "shards": [
                {
                    "index": s.index,
                    "cluster": s.cluster,
                    "state": s.state.value,
                    "lastCheckpoint": str(s.last_checkpoint) if s.last_checkpoint else None,
                }
                for s in (status.shards if status else [])
            ],
        }

    def _record_placements(self) -> None:
        for placement in self.store.list(Placement).valid:
            for decision in placement.spec.decisions:
                self.record.placements.append(
                    {
                        "job": f"{placement.metadata.namespace}/{placement.spec.job_ref.name}",
                        "shard": decision.shard,
                        "cluster": decision.cluster,
                        "site": self.sites.get(decision.cluster, ""),
                        "reasons": list(decision.reasons),
                    }
                )

    def _train(self, executor: ShardExecutor, aggregator_index: int, ray: Any) -> None:
        profile = self.profile
        round_index = 1
        while not self.stop.is_set():
            t = self.elapsed()
            failed_at = self.record.failure_at_s
            if failed_at is not None and t > failed_at + profile.recovery_timeout_s:
                self.say(f"[red]{t:6.2f}s  no recovery within {profile.recovery_timeout_s:.0f}s[/]")
                break
            executor.apply(self.placement(FEDERATED_JOB))
            running = executor.handles()
            if executor.has_lost_shards() or aggregator_index not in running:
                time.sleep(0.02)  # a shard is down: the gang waits for its replacement
                continue
            recovered = failed_at is not None and not self.pending_migrations
            if (
                recovered
                and t >= (failed_at or 0.0) + profile.tail_s
                and len(self.record.accuracy) >= profile.min_rounds
            ):
                break
            aggregator = running[aggregator_index]
            aggregator_site = self.sites[aggregator.cluster]
            weights = aggregator.handle.current_weights.remote()
            updates = []
            for shard, actor in sorted(running.items()):
                if shard == aggregator_index:
                    continue
                state = self.link(actor.cluster)
                rtt = self.network.rtt_ms(self.sites[actor.cluster], aggregator_site)
                updates.append(
                    actor.handle.train.remote(
                        round_index, weights, rtt + state.extra_rtt_ms, state.loss
                    )
                )
            round_started = self.elapsed()
            try:
                received = ray.get(updates, timeout=60)
                # The update of a shard whose site failed mid-round never left the site, even
                # if the shard's process had not been torn down yet.
                failed_at = self.record.failure_at_s
                if (
                    failed_at is not None
                    and failed_at >= round_started
                    and any(actor.cluster == FAILING_MEMBER for actor in running.values())
                ):
                    raise RoundAbortedError("an update was lost with its site")
                result = aggregator.handle.aggregate.remote(round_index, *received)
                accuracy = float(ray.get(result, timeout=60))
            except (ray.exceptions.RayError, RoundAbortedError) as error:
                self.record.aborted_rounds.append(round_index)
                self.say(
                    f"[red]{self.elapsed():6.2f}s  round {round_index} aborted: "
                    f"{error if isinstance(error, RoundAbortedError) else 'a shard died'}[/]"
                )
                continue
            self.record.accuracy.append(accuracy)
            self.record.round_ends_s.append(self.elapsed())
            self.report_shards(FEDERATED_JOB)
            self.progress(self.record, f"round {round_index}: accuracy {accuracy:.3f}")
            round_index += 1

    def inference_loop(self, executor: ShardExecutor, client: Any) -> None:
        from continuum.workloads.sensors import site_dataset

        try:
            ray = self.ray.ray
            data_site = self.job(INFERENCE_JOB).spec.data[0].site or ""
            _, requests = site_dataset(data_site, 400)
            batches = [requests.features[i : i + 8] for i in range(0, len(requests), 8)]
            burst = self.profile.inference_burst
            count = 0
            refreshed = 0.0
            while not self.stop.is_set():
                executor.apply(self.placement(INFERENCE_JOB))
                actor = executor.handles().get(0)
                if actor is None:
                    self.stop.wait(0.05)
                    continue
                if time.monotonic() - refreshed > self.profile.model_refresh_s:
                    actor.handle.reload.remote()  # serve the newest global model
                    refreshed = time.monotonic()
                state = self.link(actor.cluster)
                rtt = self.network.rtt_ms(data_site, self.sites[actor.cluster]) + state.extra_rtt_ms
                chosen = [batches[(count + k) % len(batches)] for k in range(burst)]
                sent_at = self.elapsed()
                try:
                    latencies = ray.get(client.burst.remote(actor.handle, chosen, rtt), timeout=30)
                except ray.exceptions.RayError:
                    continue
                self.record.inference.extend((sent_at, ms) for ms in latencies)
                count += burst
                self.stop.wait(self.profile.inference_pause_s)
        except Exception as error:  # the main thread reports it
            self.errors.append(error)
            self.stop.set()

    def _account(self) -> None:
        record = self.record
        record.lost_rounds = len(record.aborted_rounds)
        moved = [m for m in record.migrations if m.job.endswith(FEDERATED_JOB)]
        if not moved or moved[0].resumed_at_s is None or moved[0].stopped_at_s is None:
            return
        first = moved[0]
        assert first.resumed_at_s is not None and first.stopped_at_s is not None
        record.recovered = True
        # Rounds are checkpointed as they complete, so the replacement resumes after the last
        # completed round; what is lost is the rounds in flight when the shard died.
        completed = sum(1 for end in record.round_ends_s if end <= first.resumed_at_s)
        resumed_after = min(first.resumed_after_round or 0, completed)
        cost = recovery_cost(
            stopped_at_s=first.stopped_at_s,
            resumed_at_s=first.resumed_at_s,
            last_completed_round=completed,
            resumed_after_round=resumed_after,
            aborted_rounds=len(record.aborted_rounds),
        )
        record.lost_rounds = cost.lost_rounds
        record.downtime_s = cost.downtime_s


# -- the whole demo ------------------------------------------------------------------------


def _p99(samples: Sequence[float]) -> float | None:
    import numpy as np

    return round(float(np.percentile(np.array(samples), 99)), 3) if samples else None


def inference_phases(record: RunRecord, profile: Profile) -> dict[str, float | None]:
    failed = record.failure_at_s if record.failure_at_s is not None else float("inf")
    before = [ms for t, ms in record.inference if t < profile.degrade_at_s]
    during = [ms for t, ms in record.inference if profile.degrade_at_s <= t < failed]
    after = [ms for t, ms in record.inference if t >= failed]
    return {
        "before_degradation": _p99(before),
        "during_degradation": _p99(during),
        "after_failure": _p99(after),
    }


def build_summary(
    records: Mapping[str, RunRecord], profile: Profile, ray: LocalRay, slo_ms: float,
    duration_s: float, plot: Path, checkpoints: Path,
) -> dict[str, Any]:  # fmt: skip
    proactive, reactive = records["proactive"], records["reactive"]
    phases = inference_phases(proactive, profile)
    return {
        "profile": profile.name,
        "duration_s": round(duration_s, 2),
        "ray": {
            "node_address": ray.node_address(),
            "start_s": round(ray.started_in_s or 0.0, 2),
            "members": {name: f"cluster/{name}: {cpu:g}" for name, cpu in ray.member_cpus.items()},
        },
        "placements": proactive.placements,
        "accuracy_per_round": [round(a, 4) for a in proactive.accuracy],
        "accuracy_per_round_reactive": [round(a, 4) for a in reactive.accuracy],
        "inference_p99_ms": phases["before_degradation"],
        "inference_p99_ms_by_phase": phases,
        "inference_requests": len(proactive.inference),
        "slo_ms": slo_ms,
        "fault": {
            "member": FAILING_MEMBER,
            "degradation_at_s": profile.degrade_at_s,
            "failure_at_s": {case: _rounded(r.failure_at_s) for case, r in records.items()},
        },
        "migrations": [
            {**migration.to_json(), "failure_at_s": _rounded(record.failure_at_s), "case": case}
            for case, record in records.items()
            for migration in record.migrations
        ],
        "round_ends_s": {
            case: [round(t, 3) for t in record.round_ends_s] for case, record in records.items()
        },
        "timings_s": {
            "ray_start": round(ray.started_in_s or 0.0, 2),
            **{f"{case}_setup": round(r.setup_s, 2) for case, r in records.items()},
            **{f"{case}_act": round(r.duration_s, 2) for case, r in records.items()},
        },
        "lost_rounds": {case: record.lost_rounds for case, record in records.items()},
        "aborted_rounds": {case: record.aborted_rounds for case, record in records.items()},
        "downtime_s": {case: _rounded(record.downtime_s) for case, record in records.items()},
        "recovered": {case: record.recovered for case, record in records.items()},
        "job_status": {case: record.job_status for case, record in records.items()},
        "plot": str(plot),
        "checkpoints": str(checkpoints),
    }


def write_plot(records: Mapping[str, RunRecord], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), constrained_layout=True)
    colours = {"proactive": "tab:blue", "reactive": "tab:orange"}
    for case, record in records.items():
        rounds = range(1, len(record.accuracy) + 1)
        top.plot(rounds, record.accuracy, marker=".", color=colours.get(case), label=case)
        for aborted in record.aborted_rounds:
            top.axvline(aborted, color=colours.get(case), alpha=0.4, linewidth=6,
                        label=f"{case}: round {aborted} aborted by the failure")  # fmt: skip
    top.set_xlabel("round")
    top.set_ylabel("accuracy (reference set)")
    top.set_title("Federated averaging over delft, eindhoven and ghent")
    top.legend(fontsize=8)
    for case, record in records.items():
        answered = [(t, rtt) for t, rtt in record.link_samples if rtt is not None]
        lost = [t for t, rtt in record.link_samples if rtt is None]
        if answered:
            times, rtts = zip(*answered, strict=True)
            bottom.plot(times, rtts, ".", color=colours.get(case), markersize=3,
                        label=f"{case}: heartbeat RTT")  # fmt: skip
        if lost:
            ceiling = max((rtt for _, rtt in answered), default=10.0)
            bottom.plot(lost, [ceiling * 1.1] * len(lost), "x", color=colours.get(case),
                        markersize=4, label=f"{case}: unanswered")  # fmt: skip
        if record.failure_at_s is not None:
            bottom.axvline(record.failure_at_s, color="red", linestyle="--" if case == "reactive"
                           else "-", label=f"{case}: site fails")  # fmt: skip
        for migration in record.migrations:
            if migration.resumed_at_s is not None and migration.stopped_at_s is not None:
                bottom.axvspan(migration.stopped_at_s, migration.resumed_at_s, alpha=0.15,
                               color=colours.get(case), label=f"{case}: shard down")  # fmt: skip
            bottom.axvline(migration.at_s, color="green" if migration.reason == "Proactive"
                           else "goldenrod", linestyle=":",
                           label=f"{case}: {migration.reason} migration")  # fmt: skip
    bottom.set_xlabel("seconds since the act began")
    bottom.set_ylabel(f"{FAILING_MEMBER} RTT (ms)")
    bottom.set_yscale("log")
    bottom.legend(fontsize=7, loc="upper left")
    figure.savefig(path, dpi=110)
    plt.close(figure)


def print_summary(console: Console, summary: Mapping[str, Any]) -> None:
    from rich.table import Table

    placements = Table(title="Placements (the scheduler's decisions)")
    for column in ("job", "shard", "cluster", "site", "why"):
        placements.add_column(column)
    for entry in summary["placements"]:
        reasons = [r for r in entry["reasons"] if not r.startswith("filters:")]
        placements.add_row(
            entry["job"], str(entry["shard"]), entry["cluster"], entry["site"],
            "; ".join(reasons[:2]),
        )  # fmt: skip
    console.print(placements)

    results = Table(title=f"Continuum demo ({summary['profile']}), {summary['duration_s']:.0f} s")
    results.add_column("measure")
    results.add_column("value")
    accuracy = summary["accuracy_per_round"]
    if accuracy:
        results.add_row(
            "accuracy (proactive run)",
            f"{accuracy[0]:.3f} after round 1 → {accuracy[-1]:.3f} after round {len(accuracy)}",
        )
    slo = summary["slo_ms"]
    for phase, value in summary["inference_p99_ms_by_phase"].items():
        if value is not None:
            verdict = "[green]meets[/]" if value <= slo else "[red]misses[/]"
            results.add_row(f"inference p99, {phase.replace('_', ' ')}",
                            f"{value:.1f} ms, {verdict} the {slo:g} ms SLO")  # fmt: skip
    for migration in summary["migrations"]:
        failure = migration["failure_at_s"]
        results.add_row(
            f"migration ({migration['case']})",
            f"{migration['job']} shard {migration['shard']}: {migration['from']} → "
            f"{migration['to']}, {migration['reason']} at {migration['at_s']:.2f} s"
            + (f"; site failed at {failure:.2f} s" if failure is not None else ""),
        )
    for case, lost in summary["lost_rounds"].items():
        downtime = summary["downtime_s"][case]
        results.add_row(
            f"lost work ({case})",
            f"{lost} rounds lost, downtime "
            + (f"{downtime:.2f} s" if downtime is not None else "n/a (no recovery)"),
        )
    results.add_row("plot", summary["plot"])
    results.add_row("checkpoints", summary["checkpoints"])
    console.print(results)
