"""The one-shard Training MLJob the operator's tests and benchmarks apply to the hub, with the
knobs they vary."""

from __future__ import annotations

from typing import Any

IMAGE = "rayproject/ray:2.50.0"


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
    return {
        "apiVersion": "continuum.dev/v1alpha1",
        "kind": "MLJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "mode": "Training",
            "tenant": "research",
            "shards": {
                "count": 1,
                "resources": resources or {"cpu": "100m", "memory": "128Mi"},
            },
            "ray": {"image": IMAGE, "entrypoint": entrypoint},
            **data,
            **objectives,
        },
    }
