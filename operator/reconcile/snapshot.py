"""Kubernetes objects, as validated models, turned into the scheduler's snapshot. Pure.

The operator lists MemberClusters, Tenants, MLJobs and Placements from the hub and hands them
here; what comes out is what `continuum.schedulers.schedule` decides on.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from continuum.operator.api import (
    MemberCluster,
    MigrationReason,
    MLJob,
    Placement,
    ResourceAmounts,
    Tenant,
)
from continuum.operator.api import Toleration as ApiToleration
from continuum.operator.api.keys import JobKey
from continuum.operator.reconcile.eviction import (
    UNREACHABLE_TAINT_KEY,
    eviction_held,
    shards_stay,
)
from continuum.operator.reconcile.membership import is_usable
from continuum.operator.reconcile.memo import Memo
from continuum.schedulers import model

SELECTOR_LABEL_PREFIX = "selector.continuum.dev/"


def _scheduler_key(job: MLJob) -> str:
    return str(JobKey.of(job))


# A job the scheduler places, with its keys: the scheduler's (text) and the operator's.
KeyedJob = tuple[str, JobKey, MLJob]


def _keyed_jobs(jobs: Iterable[MLJob]) -> list[KeyedJob]:
    """The jobs that want shards, keyed once each, in the scheduler's order (by key text)."""
    keyed: list[KeyedJob] = []
    for job in jobs:
        if not job.wants_no_shards:
            key = JobKey.of(job)
            keyed.append((str(key), key, job))
    keyed.sort(key=lambda entry: entry[0])
    return keyed


def _amounts(amounts: ResourceAmounts | None, absent: float = 0.0) -> model.Resources:
    """`absent` stands for a resource the object leaves out: none for a capacity, unlimited
    (infinity) for a quota."""
    if amounts is None:
        return model.Resources(absent, absent, absent)
    return model.Resources(
        cpu=amounts.cpu.cores if amounts.cpu is not None else absent,
        memory_gib=amounts.memory.gib if amounts.memory is not None else absent,
        gpu=float(amounts.gpu.value) if amounts.gpu is not None else absent,
    )


def _sum(resources: Iterable[model.Resources]) -> model.Resources:
    cpu = memory = gpu = 0.0
    for amount in resources:
        cpu, memory, gpu = cpu + amount.cpu, memory + amount.memory_gib, gpu + amount.gpu
    return model.Resources(cpu, memory, gpu)


# What the scheduler's model makes of a job, per incarnation (uid) and spec version
# (generation): specs change far less often than cycles run.
_demands: Memo[model.Resources] = Memo()
_jobs: Memo[model.Job] = Memo()


def _spec_version(job: MLJob, *extra: Hashable) -> Hashable | None:
    uid, generation = job.metadata.uid, job.metadata.generation
    return (uid, generation, *extra) if uid and generation is not None else None


def shard_demand(job: MLJob) -> model.Resources:
    """What one shard holds: spec.shards.resources is per Ray pod, and a shard is its head plus
    workersPerShard workers (each pod gets the resources as requests and limits). A fractional
    GPU is rounded up per pod, as Kubernetes allocates whole devices."""
    return _demands.get(_spec_version(job), lambda: _shard_demand(job))


def _shard_demand(job: MLJob) -> model.Resources:
    resources = job.spec.shards.resources
    pods = 1 + job.spec.ray.workers_per_shard
    gpu = float(resources.gpu.value)
    return model.Resources(
        cpu=resources.cpu.cores * pods,
        memory_gib=resources.memory.gib * pods,
        gpu=(math.ceil(gpu) if gpu else 0.0) * pods,
    )


@dataclass(frozen=True)
class SelectorLabels:
    """matchExpressions, which the scheduler's plain label map cannot say, evaluated here: each
    selector with expressions becomes one synthetic label on the clusters it matches."""

    per_job: Mapping[str, Mapping[str, str]]
    per_cluster: Mapping[str, Mapping[str, str]]


def _selector_labels(jobs: Sequence[KeyedJob], members: Sequence[MemberCluster]) -> SelectorLabels:
    per_job: dict[str, dict[str, str]] = {}
    # Only the clusters some selector's expressions match: most of a fleet has none.
    per_cluster: dict[str, dict[str, str]] = {}
    synthetics: dict[str, str] = {}
    for scheduler_key, _, job in jobs:
        selector = job.spec.placement.cluster_selector if job.spec.placement else None
        if selector is None:
            continue
        labels = dict(selector.match_labels)
        if selector.match_expressions:
            text = selector.model_dump_json()
            synthetic = synthetics.get(text)
            if synthetic is None:
                # Each distinct selector is matched against the members once, however many
                # jobs say it.
                digest = hashlib.sha256(text.encode()).hexdigest()[:12]
                synthetic = synthetics[text] = SELECTOR_LABEL_PREFIX + digest
                for member in members:
                    if selector.matches(member.spec.labels):
                        per_cluster.setdefault(member.metadata.name or "", {})[synthetic] = "true"
            labels[synthetic] = "true"
        per_job[scheduler_key] = labels
    return SelectorLabels(per_job, per_cluster)


def _tolerations(tolerations: Sequence[ApiToleration]) -> tuple[model.Toleration, ...]:
    converted = []
    for toleration in tolerations:
        exists = toleration.operator.value == "Exists"
        effect = toleration.effect.value if toleration.effect is not None else None
        value = None if exists else toleration.value or ""
        converted.append(model.Toleration(toleration.key, value, effect))
    return tuple(converted)


def _job(job: MLJob, selector: Mapping[str, str]) -> model.Job:
    version = _spec_version(job, tuple(sorted(selector.items())))
    return _jobs.get(version, lambda: _convert_job(job, selector))


def _convert_job(job: MLJob, selector: Mapping[str, str]) -> model.Job:
    spec = job.spec
    data = tuple(
        model.DataSource(
            name=source.name,
            site=source.site,
            rate_mbps=source.rate_mbps or 0.0,
            residency=model.Residency(source.residency.value),
        )
        for source in spec.data
        if source.site is not None
    )
    objectives = spec.objectives
    proactive = spec.fault_tolerance.proactive if spec.fault_tolerance else None
    created = job.metadata.creation_timestamp
    submitted = datetime.fromisoformat(created).timestamp() if created else 0.0
    return model.Job(
        key=_scheduler_key(job),
        tenant=spec.tenant,
        demand=shard_demand(job),
        shards=spec.shards.count,
        min_available=spec.shards.min_available,
        mode=model.Mode(spec.mode.value),
        priority=spec.priority,
        data=data,
        latency_slo_ms=float(objectives.latency_p99_ms)
        if objectives and objectives.latency_p99_ms
        else None,
        deadline_s=float(objectives.deadline_seconds)
        if objectives and objectives.deadline_seconds
        else None,
        cluster_selector=selector,
        allowed_tiers=tuple(model.Tier(tier.value) for tier in spec.placement.allowed_tiers)
        if spec.placement
        else (),
        tolerations=_tolerations(spec.placement.tolerations) if spec.placement else (),
        risk_threshold=proactive.risk_threshold if proactive and proactive.enabled else None,
        proactive=proactive is not None and proactive.enabled,
        submit_time_s=submitted,
    )


# What the scheduler's model makes of a member, per version of it and what is placed there:
# most of a fleet is the same from one cycle to the next.
_clusters: Memo[model.Cluster] = Memo()


def _cluster(
    member: MemberCluster, held: model.Resources, extra_labels: Mapping[str, str]
) -> model.Cluster:
    uid, version = member.metadata.uid, member.metadata.resource_version
    key = (uid, version, held, tuple(sorted(extra_labels.items()))) if uid and version else None
    return _clusters.get(key, lambda: _convert_cluster(member, held, extra_labels))


def _convert_cluster(
    member: MemberCluster, held: model.Resources, extra_labels: Mapping[str, str]
) -> model.Cluster:
    status = member.status
    observed = status.allocatable if status and status.allocatable else None
    capacity = _amounts(observed or member.spec.capacity)
    # A member that does not answer but keeps its shards (reconcile/eviction.py) is healthy
    # to the scheduler, so they stay, and tainted, so no new ones go there; a held failure's
    # risk is not a reason to move them either.
    stays = shards_stay(member)
    unreachable = (model.Taint(UNREACHABLE_TAINT_KEY, "", "NoSchedule"),) if stays else ()
    risk = min(1.0, max(0.0, status.risk.score)) if status and status.risk else 0.0
    return model.Cluster(
        name=member.metadata.name or "",
        tier=model.Tier(member.spec.tier.value),
        site=member.spec.site,
        capacity=capacity,
        # What Continuum's own placed shards hold; members report no other usage yet.
        allocated=held,
        cost_per_hour=member.spec.cost_per_hour or 0.0,
        labels={**member.spec.labels, **extra_labels},
        taints=tuple(
            model.Taint(taint.key, taint.value or "", taint.effect.value)
            for taint in member.spec.taints
        )
        + unreachable,
        risk=0.0 if eviction_held(member) else risk,
        healthy=is_usable(member) or stays,
    )


# Moves that say the cluster left was failing or about to: the scheduler does not rebalance the
# shard back there for a while (PolicyConfig.return_cooldown_s).
_DEPARTURE_REASONS = frozenset({MigrationReason.FAILURE, MigrationReason.PROACTIVE})


def _departures(placement: Placement, shard: int) -> tuple[model.Departure, ...]:
    return tuple(
        model.Departure(move.from_cluster, move.time.timestamp())
        for move in placement.spec.migrations
        if move.shard == shard and move.reason in _DEPARTURE_REASONS
    )


def _arrival(placement: Placement, shard: int, cluster: str) -> float | None:
    """When the shard's newest move brought it to `cluster`, if one did."""
    newest = next((move for move in reversed(placement.spec.migrations) if move.shard == shard),
                  None)  # fmt: skip
    if newest is None or newest.to_cluster != cluster:
        return None
    return newest.time.timestamp()


# A Placement's running shards, per version of it (and of its job's shard count): most
# Placements are the same from one cycle to the next.
_running: Memo[tuple[model.RunningShard, ...]] = Memo()


def _running_shards(
    key: str, placement: Placement, count: int, as_stored: bool
) -> tuple[model.RunningShard, ...]:
    """`as_stored`: the Placement is the stored version its metadata names. A decision not
    written yet keeps the metadata of the version it replaces, so it is converted afresh."""
    uid, version = placement.metadata.uid, placement.metadata.resource_version
    memo_key = (uid, version, key, count) if uid and version and as_stored else None
    return _running.get(memo_key, lambda: _convert_running(key, placement, count))


def _convert_running(key: str, placement: Placement, count: int) -> tuple[model.RunningShard, ...]:
    return tuple(
        model.RunningShard(
            key,
            decision.shard,
            decision.cluster,
            _departures(placement, decision.shard),
            _arrival(placement, decision.shard, decision.cluster),
        )
        for decision in placement.spec.decisions
        if decision.shard < count  # scaled down since: the placement plan drops it
    )


def build_snapshot(
    members: Sequence[MemberCluster],
    tenants: Sequence[Tenant],
    jobs: Sequence[MLJob],
    placements: Mapping[JobKey, Placement],
    links: Sequence[model.Link] = (),
    now_s: float = 0.0,
    unwritten: Collection[JobKey] = (),
) -> model.Snapshot:
    """`jobs` are the admitted MLJobs; `placements` their Placements by job key, of which
    those of `unwritten` are decisions not written yet (as PlacementWriteQueue.pending).

    Shards already placed count as running where their Placement puts them, and their demand
    is held on that cluster, so a cycle only decides what changed.
    """
    schedulable = _keyed_jobs(jobs)
    selectors = _selector_labels(schedulable, members)
    converted: list[model.Job] = []
    running: list[model.RunningShard] = []
    held: dict[str, list[model.Resources]] = {}
    # Job by job in key order, which is the order of their Placements' keys.
    for scheduler_key, key, job in schedulable:
        scheduler_job = _job(job, selectors.per_job.get(scheduler_key, {}))
        converted.append(scheduler_job)
        placement = placements.get(key)
        if placement is None:
            continue
        shards = _running_shards(
            scheduler_key, placement, scheduler_job.shards, key not in unwritten
        )
        for shard in shards:
            held.setdefault(shard.cluster, []).append(scheduler_job.demand)
        running.extend(shards)
    # Only members say where a site is. A data site no member is at stays unlisted: the
    # scheduler takes it for a region of its own and says it is in no known region.
    sites = {member.spec.site: member.spec.region for member in members}
    return model.Snapshot(
        sites=tuple(model.Site(name, region) for name, region in sorted(sites.items())),
        clusters=tuple(
            _cluster(
                member,
                _sum(held.get(member.metadata.name or "", [])),
                selectors.per_cluster.get(member.metadata.name or "", {}),
            )
            for member in sorted(members, key=lambda member: member.metadata.name or "")
        ),
        jobs=tuple(converted),
        tenants=tuple(
            model.Tenant(
                tenant.metadata.name or "",
                tenant.spec.weight,
                _amounts(tenant.spec.nominal_quota, absent=math.inf)
                if tenant.spec.nominal_quota
                else None,
            )
            for tenant in sorted(tenants, key=lambda tenant: tenant.metadata.name or "")
        ),
        running=tuple(running),
        network=model.Network(links=tuple(links)),
        now_s=now_s,
    )
