"""Pure placement policies: no Kubernetes, Kopf, Ray or Prometheus imports (import-linter).

The operator builds a `Snapshot` and calls `schedule(snapshot, policy, config)` once per cycle;
see docs/scheduler.md for the interface and the model behind it.
"""

from continuum.schedulers.config import PolicyConfig
from continuum.schedulers.model import (
    Cluster,
    CycleResult,
    CycleTiming,
    DataSource,
    Decision,
    Departure,
    Job,
    Link,
    Migration,
    MigrationReason,
    Mode,
    Network,
    Preemption,
    Residency,
    Resources,
    RunningShard,
    Site,
    Snapshot,
    Taint,
    Tenant,
    Tier,
    Toleration,
    Unschedulable,
)
from continuum.schedulers.policy import POLICY_NAMES, schedule

__all__ = [
    "POLICY_NAMES",
    "Cluster",
    "CycleResult",
    "CycleTiming",
    "DataSource",
    "Decision",
    "Departure",
    "Job",
    "Link",
    "Migration",
    "MigrationReason",
    "Mode",
    "Network",
    "PolicyConfig",
    "Preemption",
    "Residency",
    "Resources",
    "RunningShard",
    "Site",
    "Snapshot",
    "Taint",
    "Tenant",
    "Tier",
    "Toleration",
    "Unschedulable",
    "schedule",
]
