"""Shard manifests as the operator builds them, and what checks that a KubeRay CRD accepts one
whole: created with strict field validation, read back, nothing dropped or changed.

Shared by the tests against the KubeRay v1.7.0 CRDs (test_kuberay_manifests) and against the
real KubeRay operator and its own CRDs (test_kuberay_operator)."""

from __future__ import annotations

import copy
import uuid
from typing import Any, cast

from kubernetes import client

from continuum.operator.api import MLJob, validate_resource
from continuum.operator.api.shard_resources import RAY_JOB, RAY_SERVICE, ResourceKind
from continuum.operator.reconcile.kuberay import needs_update

IMAGE = "rayproject/ray:2.50.0"


def example_job(namespace: str, mode: str) -> MLJob:
    specs: dict[str, dict[str, Any]] = {
        "Training": {
            "shards": {"count": 2, "resources": {"cpu": "1500m", "memory": "4Gi", "gpu": "1"}},
            "ray": {
                "image": IMAGE,
                "entrypoint": "python train.py",
                "runtimeEnv": {"pip": ["torch"], "env_vars": {"ROUNDS": "5"}},
                "workersPerShard": 2,
            },
            "faultTolerance": {"checkpoint": {"uri": "s3://ckpt/train"}, "maxRestarts": 2},
        },
        "Federated": {
            "shards": {"count": 4, "resources": {"cpu": "2", "memory": "2Gi"}},
            "ray": {"image": IMAGE, "entrypoint": "python fedavg.py"},
            "data": [
                {"name": f"cam-{site}", "site": f"edge-{site}", "residency": "Site"}
                for site in "abc"
            ],
        },
        "Inference": {
            "shards": {"count": 1, "resources": {"cpu": "500m", "memory": "1Gi"}},
            "ray": {
                "image": IMAGE,
                "entrypoint": "app.model:deployment",
                "runtimeEnv": {"working_dir": "https://example.com/app.zip"},
            },
            "objectives": {"latencyP99Ms": 50},
        },
    }
    job = validate_resource(
        {
            "apiVersion": "continuum.dev/v1alpha1",
            "kind": "MLJob",
            "metadata": {"name": mode.lower(), "namespace": namespace, "uid": str(uuid.uuid4())},
            "spec": {"mode": mode, "tenant": "team-a", **specs[mode]},
        }
    )
    assert isinstance(job, MLJob), job
    return job


def create_strictly(api: client.ApiClient, manifest: dict[str, Any]) -> dict[str, Any]:
    kind = _kind_of(manifest)
    created = client.CustomObjectsApi(api).create_namespaced_custom_object(
        kind.group,
        kind.version,
        manifest["metadata"]["namespace"],
        kind.plural,
        copy.deepcopy(manifest),
        field_validation="Strict",
    )
    # The client declares custom objects as bare objects; they are the decoded JSON.
    return cast("dict[str, Any]", created)


def read_back(api: client.ApiClient, manifest: dict[str, Any]) -> dict[str, Any]:
    kind = _kind_of(manifest)
    found = client.CustomObjectsApi(api).get_namespaced_custom_object(
        kind.group,
        kind.version,
        manifest["metadata"]["namespace"],
        kind.plural,
        manifest["metadata"]["name"],
    )
    return cast("dict[str, Any]", found)


def _kind_of(manifest: dict[str, Any]) -> ResourceKind:
    return RAY_JOB if manifest["kind"] == RAY_JOB.kind else RAY_SERVICE


def lost_fields(sent: Any, kept: Any, path: str = "") -> list[str]:
    """Paths of what we sent that the server did not keep as sent."""
    if isinstance(sent, dict):
        if not isinstance(kept, dict):
            return [f"{path}: became {kept!r}"]
        return [
            lost
            for key, value in sent.items()
            for lost in (
                lost_fields(value, kept[key], f"{path}.{key}")
                if key in kept
                else [f"{path}.{key}: dropped"]
            )
        ]
    if isinstance(sent, list):
        if not isinstance(kept, list) or len(kept) != len(sent):
            return [f"{path}: became {kept!r}"]
        return [
            lost
            for index, (one, other) in enumerate(zip(sent, kept, strict=True))
            for lost in lost_fields(one, other, f"{path}[{index}]")
        ]
    same = sent == kept and type(sent) is type(kept)
    return [] if same else [f"{path}: {sent!r} became {kept!r}"]


def assert_kept_whole(manifest: dict[str, Any], served: dict[str, Any]) -> None:
    assert lost_fields(manifest["spec"], served["spec"]) == []
    assert lost_fields(manifest["metadata"]["labels"], served["metadata"]["labels"]) == []
    assert lost_fields(manifest["metadata"]["annotations"], served["metadata"]["annotations"]) == []
    assert not needs_update(manifest, served), "the server's defaults must not look like drift"
