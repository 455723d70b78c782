"""What the simulator replays: a topology, jobs with durations, and failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from continuum.schedulers.model import Cluster, Job, Network, Site, Tenant


@dataclass(frozen=True)
class Topology:
    sites: tuple[Site, ...]
    clusters: tuple[Cluster, ...]
    tenants: tuple[Tenant, ...] = ()
    network: Network = field(default_factory=Network)


@dataclass(frozen=True)
class TraceJob:
    job: Job
    duration_s: float


class FailureKind(StrEnum):
    DOWN = "down"
    DEGRADE = "degrade"


@dataclass(frozen=True)
class Failure:
    at_s: float
    cluster: str
    kind: FailureKind
    duration_s: float


@dataclass(frozen=True)
class Workload:
    topology: Topology
    jobs: tuple[TraceJob, ...]
    failures: tuple[Failure, ...] = ()
