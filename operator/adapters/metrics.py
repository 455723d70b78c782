"""The operator's Prometheus metrics."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "continuum_reconciles_total", "Reconciles by the operator, by resource kind", ["kind"]
)
RECONCILE_ERRORS = Counter(
    "continuum_reconcile_errors_total", "Reconciles that failed, by resource kind", ["kind"]
)
CYCLE_SECONDS = Histogram(
    "continuum_scheduling_cycle_seconds",
    "Wall time of one scheduling cycle: snapshot, decision and writes",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
PENDING_SHARDS = Gauge("continuum_pending_shards", "Shards of admitted jobs not yet placed")
PLACED_SHARDS = Gauge("continuum_placed_shards", "Shards with a placement decision")
TENANT_SHARDS = Gauge(
    "continuum_tenant_shards",
    "Shards of each tenant's admitted jobs, by state: Pending (not placed yet) or Placed",
    ["tenant", "state"],
)
LEADER = Gauge(
    "continuum_leader", "1 while this replica holds the leader Lease (or runs without election)"
)
WRITE_CONFLICTS = Counter(
    "continuum_write_conflicts_total",
    "Writes to the hub refused with 409 (someone wrote first); the next pass writes again",
    ["kind"],
)
EVENTS_DROPPED = Counter(
    "continuum_events_dropped_total",
    "Events not written because the operator's Event queue was full",
)
MEMBER_ANSWERING = Gauge(
    "continuum_member_answering",
    "1 when the member's API server answered its last probe, else 0",
    ["member"],
)
WRITES_REFUSED = Counter(
    "continuum_writes_refused_total",
    "Writes the hub refused for good (400, 403, 422), retried only after a backoff",
    ["kind"],
)
SIGNALS_UP = Gauge(
    "continuum_signals_up",
    "1 when the last read of the link signals from Prometheus succeeded, else 0 (the operator "
    "then schedules on the last known risk and latencies)",
)
SIGNALS_READ_SECONDS = Histogram(
    "continuum_signals_read_seconds",
    "Wall time of one read of the link signals from Prometheus (four queries)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
MEMBER_RISK = Gauge(
    "continuum_member_risk",
    "The member's failure risk (0..1) from its link signals, as published in status.risk",
    ["member"],
)
MEMBER_DEGRADED = Gauge(
    "continuum_member_degraded",
    "1 when the member's Degraded condition is True, 0 when False, -1 when Unknown",
    ["member"],
)
MIGRATIONS = Counter(
    "continuum_migrations_total",
    "Shard moves decided by the scheduler and written to Placements, by reason",
    ["reason"],
)
HANDOFFS = Counter(
    "continuum_handoffs_total",
    "Make-before-break moves whose old copy was removed: outcome ReplacementRunning, or "
    "TimedOut when the replacement did not run within the handoff timeout",
    ["reason", "outcome"],
)
HANDOFF_SECONDS = Histogram(
    "continuum_handoff_seconds",
    "From a make-before-break move's decision to the removal of the shard's old copy",
    buckets=(1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0),
)
MEMBER_MISSED_PROBES = Gauge(
    "continuum_member_missed_probes",
    "Probes in a row the member has not answered (its status.missedProbes)",
    ["member"],
)
MEMBER_EVICTION_HELD = Gauge(
    "continuum_member_eviction_held",
    "1 while the member is declared failed but its shards stay on it (eviction held), else 0",
    ["member"],
)
MEMBER_FAILOVERS = Counter(
    "continuum_member_failovers_total",
    "Failed members, by what was decided: Evicted (shards moved elsewhere), or the reason the "
    "eviction was held (FailoverDisabled, FleetDisrupted, RegionDisrupted, EvictionRateLimited)",
    ["outcome"],
)


_tenants_shown: set[str] = set()


def show_tenant_shards(counts: Mapping[str, tuple[int, int]]) -> None:
    """Sets continuum_tenant_shards from tenant -> (pending, placed), and drops the series of
    tenants that have no admitted job any more."""
    for tenant, (pending, placed) in counts.items():
        TENANT_SHARDS.labels(tenant, "Pending").set(pending)
        TENANT_SHARDS.labels(tenant, "Placed").set(placed)
    for tenant in _tenants_shown - set(counts):
        for state in ("Pending", "Placed"):
            TENANT_SHARDS.remove(tenant, state)
    _tenants_shown.clear()
    _tenants_shown.update(counts)
