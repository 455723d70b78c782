"""The MLJobs the operator's tests and benchmarks apply to the hub (a one-shard Training job, a
Federated job across sites), with the knobs they vary."""

from __future__ import annotations

from typing import Any

IMAGE = "rayproject/ray:2.50.0"
SMALL = {"cpu": "100m", "memory": "128Mi"}


def _mljob(
    name: str, namespace: str, mode: str, shards: int, resources: dict[str, str] | None,
    ray: dict[str, Any], **spec: Any,
) -> dict[str, Any]:  # fmt: skip
    return {
        "apiVersion": "continuum.dev/v1alpha1",
        "kind": "MLJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "mode": mode,
            "tenant": "research",
            "shards": {"count": shards, "resources": resources or SMALL},
            "ray": {"image": IMAGE, **ray},
            **spec,
        },
    }


def training_job(
    name: str,
    namespace: str,
    site: str | None,
    residency: str = "Region",
    *,
    latency_p99_ms: float | None = None,
    resources: dict[str, str] | None = None,
    entrypoint: str = "python train.py",
) -> dict[str, Any]:
    """A one-shard training job whose data is at `site` (None: no data): it may move within
    its region (residency Region), anywhere (Any) or not at all (Site); a latency objective
    keeps it near its data."""
    objectives = {"objectives": {"latencyP99Ms": latency_p99_ms}} if latency_p99_ms else {}
    data = (
        {"data": [{"name": f"{site}-data", "site": site, "residency": residency}]} if site else {}
    )
    return _mljob(name, namespace, "Training", 1, resources, {"entrypoint": entrypoint},
                  **data, **objectives)  # fmt: skip


def federated_job(
    name: str,
    namespace: str,
    sites: list[str],
    *,
    entrypoint: str,
    checkpoint_uri: str | None = None,
    resources: dict[str, str] | None = None,
    workers_per_shard: int = 0,
) -> dict[str, Any]:
    """A Federated job over one data source per site, each kept at its site (residency Site),
    and its aggregator, placed where compute is: every shard runs `entrypoint`, which takes its
    part from CONTINUUM_ROLE."""
    fault_tolerance = (
        {"faultTolerance": {"checkpoint": {"uri": checkpoint_uri, "intervalSeconds": 60}}}
        if checkpoint_uri
        else {}
    )
    data = [{"name": f"{site}-data", "site": site, "residency": "Site"} for site in sites]
    ray = {"entrypoint": entrypoint, "workersPerShard": workers_per_shard}
    return _mljob(name, namespace, "Federated", len(sites) + 1, resources, ray, data=data,
                  **fault_tolerance)  # fmt: skip
