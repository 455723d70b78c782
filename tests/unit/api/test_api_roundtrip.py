"""Manifests go through the models unchanged: camelCase in, the same camelCase out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from continuum.operator.api import (
    Condition,
    ConditionStatus,
    JobMode,
    MemberCluster,
    MLJob,
    MLJobSpec,
    MLJobStatus,
    Placement,
    Quantity,
    ShardState,
    ShardStatus,
    Tenant,
    upsert_condition,
    validate_resource,
)

pytestmark = pytest.mark.unit

T0 = "2026-03-01T10:00:00Z"
CONDITION = {
    "type": "Ready",
    "status": "True",
    "reason": "ShardsRunning",
    "message": "3 of 3 shards run",
    "lastTransitionTime": T0,
    "observedGeneration": 2,
}
HEADER = {"apiVersion": "continuum.dev/v1alpha1"}

MLJOB = {
    **HEADER,
    "kind": "MLJob",
    "metadata": {"name": "fed", "namespace": "team-a", "generation": 2},
    "spec": {
        "mode": "Federated",
        "tenant": "team-a",
        "priority": 10,
        "shards": {
            "count": 3,
            "minAvailable": 3,
            "resources": {"cpu": "1500m", "memory": "4Gi", "gpu": "0.5"},
        },
        "ray": {
            "image": "rayproject/ray:2.50.0",
            "entrypoint": "python fedavg.py",
            "runtimeEnv": {"pip": ["torch"], "env_vars": {"ROUNDS": "5"}, "working_dir": None},
            "workersPerShard": 2,
        },
        "data": [
            {"name": "cam-a", "site": "edge-a", "rateMbps": 12.5, "residency": "Site"},
            {"name": "cam-b", "site": "edge-b", "residency": "Region"},
        ],
        "objectives": {"deadlineSeconds": 3600, "maxCostPerHour": 4.0},
        "placement": {
            "allowedTiers": ["Edge", "Cloud"],
            "clusterSelector": {
                "matchLabels": {"continuum.dev/pool": "gpu"},
                "matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}],
            },
            "spread": {"domain": "Site", "maxShardsPerDomain": 1},
            "tolerations": [{"key": "flaky", "operator": "Exists", "effect": "NoSchedule"}],
        },
        "faultTolerance": {
            "checkpoint": {"uri": "s3://ckpt/fed", "intervalSeconds": 60},
            "maxRestarts": 5,
            "proactive": {"enabled": True, "riskThreshold": 0.8},
        },
        "suspend": False,
    },
    "status": {
        "phase": "Running",
        "conditions": [CONDITION],
        "placementRef": {"name": "fed", "epoch": 3},
        "shards": [
            {
                "index": 0,
                "cluster": "edge-a",
                "state": "Running",
                "restarts": 1,
                "lastCheckpoint": T0,
            },
            {"index": 1, "state": "Pending", "restarts": 0},
        ],
        "observedGeneration": 2,
        "readyShards": 1,
        "totalShards": 4,
        "ready": "1/4",
        "clusters": "edge-a",
        "pendingCleanup": ["edge-c"],
    },
}

PLACEMENT = {
    **HEADER,
    "kind": "Placement",
    "metadata": {"name": "fed", "namespace": "team-a"},
    "spec": {
        "jobRef": {"name": "fed", "uid": "0b6e"},
        "epoch": 3,
        "decisions": [
            {"shard": 0, "cluster": "edge-a", "score": 0.91, "reasons": ["data site", "low RTT"]}
        ],
        "migrations": [
            {"shard": 0, "from": "edge-b", "to": "edge-a", "reason": "Proactive", "time": T0}
        ],
    },
    "status": {
        "clusters": [
            {
                "cluster": "edge-a",
                "state": "Applied",
                "appliedEpoch": 3,
                "shards": [0],
                "message": "RayJob fed-0 created",
                "lastUpdateTime": T0,
            }
        ],
        "appliedEpoch": 3,
        "conditions": [{**CONDITION, "type": "Applied"}],
        "observedGeneration": 1,
    },
}

MEMBER = {
    **HEADER,
    "kind": "MemberCluster",
    "metadata": {"name": "member-0"},
    "spec": {
        "tier": "Edge",
        "site": "edge-a",
        "region": "eu-west",
        "kubeconfigSecretRef": {"name": "member-0", "namespace": "continuum-system", "key": "kc"},
        "capacity": {"cpu": 16, "memory": "64Gi", "gpu": 1},
        "costPerHour": 0.4,
        "labels": {"continuum.dev/pool": "gpu"},
        "taints": [{"key": "flaky", "value": "yes", "effect": "NoSchedule"}],
    },
    "status": {
        "conditions": [{**CONDITION, "type": "Reachable"}],
        "allocatable": {"cpu": "15500m", "memory": "60Gi"},
        "allocatableSource": "Nodes",
        "allocated": {"cpu": "3", "memory": "8Gi", "gpu": "0.5"},
        "latencyToSites": {"edge-a": 0.8, "edge-b": 14.0},
        "risk": {"score": 0.2, "signals": {"heartbeatMissRatio": 0.1}},
        "lastHeartbeatTime": T0,
        "kubernetesVersion": "v1.37.2",
        "observedGeneration": 1,
    },
}

TENANT = {
    **HEADER,
    "kind": "Tenant",
    "metadata": {"name": "team-a"},
    "spec": {
        "weight": 2.0,
        "nominalQuota": {"cpu": "64", "memory": "256Gi", "gpu": 4},
        "namespaces": ["team-a", "team-a-dev"],
    },
    "status": {
        "conditions": [CONDITION],
        "allocated": {"cpu": "6"},
        "observedGeneration": 1,
    },
}


@pytest.mark.parametrize("manifest", [MLJOB, PLACEMENT, MEMBER, TENANT], ids=lambda m: m["kind"])
def test_api_roundtrip_full_manifest(manifest: dict[str, Any]) -> None:
    model = validate_resource(manifest)
    assert not isinstance(model, list), model
    assert model.to_dict() == manifest
    assert type(model).model_validate(model.to_dict()) == model


def test_api_roundtrip_minimal_manifest_keeps_only_what_was_written() -> None:
    minimal = {
        **HEADER,
        "kind": "Tenant",
        "metadata": {"name": "t"},
        "spec": {"nominalQuota": {"cpu": 8}},
    }
    tenant = Tenant.model_validate(minimal)
    assert tenant.model_dump(mode="json", exclude_unset=True) == minimal
    assert tenant.spec.weight == 1.0


def test_api_roundtrip_python_names_and_manifest_names() -> None:
    spec = MLJobSpec.model_validate(MLJOB["spec"])
    assert spec.shards.min_available == 3
    assert spec.fault_tolerance is not None
    assert spec.fault_tolerance.proactive.risk_threshold == 0.8
    assert spec.shards.resources.memory.gib == 4.0
    assert spec.shards.resources.cpu == Quantity("1.5")
    built = MLJobSpec(
        mode=JobMode.TRAINING,
        tenant="t",
        shards={"count": 1, "min_available": 1, "resources": {"cpu": 1, "memory": "1Gi"}},
        ray={"image": "ray", "entrypoint": "python x.py"},
    )
    assert built.to_dict()["shards"] == {
        "count": 1,
        "minAvailable": 1,
        "resources": {"cpu": 1, "memory": "1Gi"},
    }
    assert built.shards.resources.gpu == Quantity(0), "the default, as the CRD's"


def test_api_roundtrip_metadata_is_kept_and_not_invented() -> None:
    manifest = {**MLJOB, "metadata": {"name": "x", "managedFields": [{"manager": "kubectl"}]}}
    job = MLJob.model_validate(manifest)
    assert job.to_dict()["metadata"] == manifest["metadata"]


def test_api_roundtrip_times_are_written_as_kubernetes_does() -> None:
    condition = Condition.model_validate(
        {**CONDITION, "lastTransitionTime": "2026-03-01T11:00:00.25+01:00"}
    )
    assert condition.to_dict()["lastTransitionTime"] == T0


def test_api_roundtrip_upsert_condition_moves_time_only_on_change() -> None:
    first = upsert_condition(
        [], "Ready", ConditionStatus.FALSE, "Pending", now=datetime(2026, 1, 1, tzinfo=UTC)
    )
    same = upsert_condition(
        first, "Ready", ConditionStatus.FALSE, "StillPending", now=datetime(2026, 1, 2, tzinfo=UTC)
    )
    moved = upsert_condition(
        same, "Ready", ConditionStatus.TRUE, "Running", now=datetime(2026, 1, 3, tzinfo=UTC)
    )
    assert [c.last_transition_time.day for c in (*first, *same, *moved)] == [1, 1, 3]
    assert same[0].reason == "StillPending"
    assert len(moved) == 1


def test_api_roundtrip_status_summary_for_printer_columns() -> None:
    status = MLJobStatus(
        shards=[
            ShardStatus(index=0, cluster="edge-b", state=ShardState.RUNNING),
            ShardStatus(index=1, cluster="edge-a", state=ShardState.RUNNING),
            ShardStatus(index=2, cluster="edge-a", state=ShardState.STARTING),
        ]
    ).summarized(total_shards=4)
    assert (status.ready_shards, status.total_shards) == (2, 4)
    assert (status.ready, status.clusters) == ("2/4", "edge-a,edge-b")


def test_api_roundtrip_status_ignores_unknown_fields() -> None:
    member = MemberCluster.model_validate({**MEMBER, "status": {"kopf": {"progress": {}}}})
    assert member.status is not None
    assert member.status.conditions == []


def test_api_roundtrip_placement_from_and_to_by_python_name() -> None:
    placement = Placement.model_validate(PLACEMENT)
    assert placement.spec.migrations[0].from_cluster == "edge-b"
    assert placement.to_dict()["spec"]["migrations"][0]["from"] == "edge-b"


def test_api_roundtrip_python_built_object_carries_only_what_was_set() -> None:
    tenant = Tenant(metadata={"name": "t"}, spec={"weight": 3})
    assert tenant.to_dict() == {
        **HEADER,
        "kind": "Tenant",
        "metadata": {"name": "t"},
        "spec": {"weight": 3.0},
    }


def test_api_roundtrip_partial_status_does_not_wipe_lists() -> None:
    patch = MLJobStatus(observed_generation=4).summarized(total_shards=2).to_dict()
    assert patch == {
        "observedGeneration": 4,
        "readyShards": 0,
        "totalShards": 2,
        "ready": "0/2",
        "clusters": "",
    }
