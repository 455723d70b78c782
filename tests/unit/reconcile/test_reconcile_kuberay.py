"""KubeRay manifests built from MLJobs, and KubeRay's status read back as shard states."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from continuum.operator.api import JobMode, MLJob, ShardState, validate_resource
from continuum.operator.api.shard_resources import (
    MANAGED_SELECTOR,
    MAX_NAME_LENGTH,
    RAY_JOB,
    RAY_SERVICE,
    SHARD_LABELS,
    job_label_value,
    job_selector,
    resource_kind_for,
    shard_resource_name,
)
from continuum.operator.reconcile.kuberay import (
    GPU_RESOURCE,
    EnvVar,
    ShardObservation,
    build_shard_resource,
    needs_update,
    observe_shard,
)

pytestmark = pytest.mark.unit

KUBERAY_CRDS = Path("/work/shared/kuberay/v1.7.0")
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
UID = "0b6f7d1e-5d7a-4c3e-9f00-3a2b1c0d9e8f"


def mljob(name: str = "job", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "mode": "Training",
        "tenant": "team-a",
        "shards": {"count": 2, "resources": {"cpu": "1500m", "memory": "4Gi"}},
        "ray": {"image": "rayproject/ray:2.50.0", "entrypoint": "python train.py"},
    }
    return {
        "apiVersion": "continuum.dev/v1alpha1",
        "kind": "MLJob",
        "metadata": {"name": name, "namespace": "team-a", "uid": UID},
        "spec": {**base, **spec},
    }


TRAINING = mljob(
    "train",
    shards={"count": 2, "resources": {"cpu": "1500m", "memory": "4Gi", "gpu": "1"}},
    ray={
        "image": "rayproject/ray:2.50.0",
        "entrypoint": "python train.py --epochs 3",
        "runtimeEnv": {"pip": ["torch==2.5"], "env_vars": {"ROUNDS": "5"}},
        "workersPerShard": 2,
    },
    faultTolerance={
        "checkpoint": {"uri": "s3://ckpt/train", "intervalSeconds": 60},
        "maxRestarts": 5,
    },
)
FEDERATED = mljob(
    "fed",
    mode="Federated",
    shards={"count": 4, "resources": {"cpu": "2", "memory": "2Gi", "gpu": "0.5"}},
    ray={"image": "rayproject/ray:2.50.0", "entrypoint": "python fedavg.py"},
    data=[
        {"name": "cam-a", "site": "edge-a", "rateMbps": 12.5, "residency": "Site"},
        {"name": "cam-b", "site": "edge-b", "residency": "Region"},
        {"name": "cam-c", "site": "edge-c", "residency": "Site"},
    ],
)
INFERENCE = mljob(
    "serve",
    mode="Inference",
    shards={"count": 1, "resources": {"cpu": "500m", "memory": "1Gi"}},
    ray={
        "image": "rayproject/ray:2.50.0",
        "entrypoint": "app.model:deployment",
        "runtimeEnv": {"working_dir": "https://example.com/app.zip"},
        "workersPerShard": 1,
    },
    objectives={"latencyP99Ms": 50},
)


def job_of(raw: dict[str, Any]) -> MLJob:
    job = validate_resource(raw)
    assert isinstance(job, MLJob), job
    return job


def containers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = manifest["spec"].get("rayClusterSpec") or manifest["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [c for group in groups for c in group["template"]["spec"]["containers"]]


def env_of(manifest: dict[str, Any]) -> dict[str, str]:
    head, *workers = containers(manifest)
    for worker in workers:
        assert worker["env"] == head["env"]
    return {variable["name"]: variable["value"] for variable in head["env"]}


# -- the CRD schemas, checked offline (the integration tests ask a real kube-apiserver) ---------


@cache
def crd_schema(plural: str) -> dict[str, Any]:
    # The C loader: the CRDs are some 20,000 lines each, seconds for the pure-Python one.
    crd = yaml.load((KUBERAY_CRDS / f"ray.io_{plural}.yaml").read_text(), Loader=yaml.CSafeLoader)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def schema_violations(value: Any, schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """Unknown fields, wrong types and missing required fields, as strict validation sees them."""
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, int | str) or isinstance(value, bool):
            yield f"{path}: {value!r} is neither integer nor string"
        return
    expected = schema.get("type")
    python_types = {"object": dict, "array": list, "string": str, "boolean": bool}
    if expected in python_types and not isinstance(value, python_types[expected]):
        yield f"{path}: {value!r} is not {expected}"
        return
    if expected == "integer" and (not isinstance(value, int) or isinstance(value, bool)):
        yield f"{path}: {value!r} is not integer"
    if expected == "array":
        for index, item in enumerate(value):
            yield from schema_violations(item, schema.get("items", {}), f"{path}[{index}]")
    if expected == "object":
        for key in schema.get("required", []):
            if key not in value:
                yield f"{path}.{key}: required"
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                yield from schema_violations(item, properties[key], f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                yield from schema_violations(item, schema["additionalProperties"], f"{path}.{key}")
            elif not schema.get("x-kubernetes-preserve-unknown-fields") and path != ".metadata":
                yield f"{path}.{key}: unknown field"


# -- kinds and names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "kind"),
    [(JobMode.TRAINING, RAY_JOB), (JobMode.FEDERATED, RAY_JOB), (JobMode.INFERENCE, RAY_SERVICE)],
)
def test_resource_kind_for_each_mode(mode: JobMode, kind: Any) -> None:
    assert resource_kind_for(mode) == kind
    assert kind.api_version == "ray.io/v1"


def test_short_job_names_are_kept_readable() -> None:
    assert shard_resource_name("fed", 0) == "fed-0"
    assert shard_resource_name("fed", 255) == "fed-255"


@pytest.mark.parametrize(
    "job_name",
    ["a" * 253, "x" * 43, "x" * 44, "9lives", "a.b.c", "job-", "train.v2-final." + "z" * 200],
)
def test_awkward_job_names_give_dns_1035_labels_that_kuberay_accepts(job_name: str) -> None:
    name = shard_resource_name(job_name, 255)
    assert DNS_1035.match(name), name
    assert len(name) <= MAX_NAME_LENGTH <= 63
    assert name.endswith("-255")


def test_names_that_differ_only_in_what_was_cut_or_replaced_stay_distinct() -> None:
    long_a, long_b = "a" * 60 + "-one", "a" * 60 + "-two"
    assert shard_resource_name(long_a, 0) != shard_resource_name(long_b, 0)
    assert shard_resource_name("a.b", 0) != shard_resource_name("a-b", 0)
    assert shard_resource_name(long_a, 0) == shard_resource_name(long_a, 0)


DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?){0,4}"


@given(st.from_regex(DNS_SUBDOMAIN, fullmatch=True), st.integers(0, 255))
def test_every_dns_subdomain_job_name_gives_a_valid_shard_name(job_name: str, index: int) -> None:
    name = shard_resource_name(job_name, index)
    assert DNS_1035.match(name) and len(name) <= MAX_NAME_LENGTH, name
    assert name.endswith(f"-{index}")


def test_long_job_names_are_shortened_in_the_label_and_kept_whole_in_an_annotation() -> None:
    long_name = "f" * 200
    manifest = build_shard_resource(job_of(mljob(long_name)), 0, epoch=1)
    label = manifest["metadata"]["labels"][SHARD_LABELS.job]
    assert len(label) <= 63 and label == job_label_value(long_name)
    assert manifest["metadata"]["annotations"][SHARD_LABELS.job_name_annotation] == long_name
    assert job_label_value("fed") == "fed"


# -- manifests ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shard"), [(TRAINING, 1), (FEDERATED, 0), (FEDERATED, 3), (INFERENCE, 0)]
)
def test_manifests_pass_the_kuberay_crd_schema(raw: dict[str, Any], shard: int) -> None:
    manifest = build_shard_resource(job_of(raw), shard, epoch=7)
    kind = resource_kind_for(JobMode(raw["spec"]["mode"]))
    assert list(schema_violations(manifest, crd_schema(kind.plural))) == []


def test_the_schema_check_itself_finds_unknown_and_wrong_typed_fields() -> None:
    manifest = build_shard_resource(job_of(TRAINING), 0, epoch=1)
    manifest["spec"]["shutdownAfterJobFinishes"] = "yes"
    manifest["spec"]["rayClusterSpec"]["headGroupSpec"]["replicas"] = 1
    assert sorted(schema_violations(manifest, crd_schema("rayjobs"))) == [
        ".spec.rayClusterSpec.headGroupSpec.replicas: unknown field",
        ".spec.shutdownAfterJobFinishes: 'yes' is not boolean",
    ]


def test_labels_identify_job_incarnation_shard_and_epoch() -> None:
    manifest = build_shard_resource(job_of(TRAINING), 1, epoch=7)
    assert manifest["metadata"]["name"] == "train-1"
    assert manifest["metadata"]["namespace"] == "team-a"
    assert manifest["metadata"]["labels"] == {
        "continuum.dev/managed-by": "continuum",
        "continuum.dev/job": "train",
        "continuum.dev/job-uid": UID,
        "continuum.dev/shard": "1",
        "continuum.dev/epoch": "7",
        "continuum.dev/role": "trainer",
    }
    for group_labels in (
        manifest["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["metadata"]["labels"],
        manifest["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["metadata"]["labels"],
    ):
        assert group_labels == manifest["metadata"]["labels"]
    assert MANAGED_SELECTOR == "continuum.dev/managed-by=continuum"
    assert job_selector("train", UID) == (
        f"continuum.dev/managed-by=continuum,continuum.dev/job=train,continuum.dev/job-uid={UID}"
    )


def test_training_shard_is_a_rayjob_that_runs_the_entrypoint_and_retries_as_allowed() -> None:
    manifest = build_shard_resource(job_of(TRAINING), 1, epoch=7)
    spec = manifest["spec"]
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayJob")
    assert spec["entrypoint"] == "python train.py --epochs 3"
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["backoffLimit"] == 5
    assert yaml.safe_load(spec["runtimeEnvYAML"]) == {
        "pip": ["torch==2.5"],
        "env_vars": {"ROUNDS": "5"},
    }
    cluster = spec["rayClusterSpec"]
    assert cluster["headGroupSpec"]["rayStartParams"] == {"dashboard-host": "0.0.0.0"}
    workers = cluster["workerGroupSpecs"]
    assert [(w["replicas"], w["minReplicas"], w["maxReplicas"]) for w in workers] == [(2, 2, 2)]
    assert {c["image"] for c in containers(manifest)} == {"rayproject/ray:2.50.0"}


def test_a_job_without_fault_tolerance_or_runtime_env_gets_the_defaults() -> None:
    manifest = build_shard_resource(job_of(mljob()), 0, epoch=0)
    assert manifest["spec"]["backoffLimit"] == 3
    assert "runtimeEnvYAML" not in manifest["spec"]
    assert manifest["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] == 1
    env = env_of(manifest)
    assert EnvVar.CHECKPOINT_URI not in env and EnvVar.DATA_NAME not in env


def test_training_environment_tells_the_program_its_part() -> None:
    assert env_of(build_shard_resource(job_of(TRAINING), 1, epoch=7)) == {
        "CONTINUUM_JOB_NAME": "train",
        "CONTINUUM_JOB_NAMESPACE": "team-a",
        "CONTINUUM_JOB_UID": UID,
        "CONTINUUM_MODE": "Training",
        "CONTINUUM_SHARD_INDEX": "1",
        "CONTINUUM_SHARD_COUNT": "2",
        "CONTINUUM_EPOCH": "7",
        "CONTINUUM_ROLE": "trainer",
        "CONTINUUM_CHECKPOINT_URI": "s3://ckpt/train",
        "CONTINUUM_CHECKPOINT_INTERVAL_SECONDS": "60",
    }


def test_pod_resources_are_the_users_own_strings_on_head_and_workers() -> None:
    manifest = build_shard_resource(job_of(TRAINING), 0, epoch=1)
    expected = {"cpu": "1500m", "memory": "4Gi", GPU_RESOURCE: "1"}
    for container in containers(manifest):
        assert container["resources"] == {"requests": expected, "limits": expected}


def test_integer_quantities_and_absent_gpus() -> None:
    raw = mljob(shards={"count": 1, "resources": {"cpu": 2, "memory": "512Mi", "gpu": 0}})
    resources = containers(build_shard_resource(job_of(raw), 0, epoch=1))[0]["resources"]
    assert resources["requests"] == {"cpu": "2", "memory": "512Mi"}


def test_a_fractional_gpu_asks_kubernetes_for_a_whole_device() -> None:
    resources = containers(build_shard_resource(job_of(FEDERATED), 0, epoch=1))[0]["resources"]
    assert resources["limits"] == {"cpu": "2", "memory": "2Gi", GPU_RESOURCE: "1"}


@pytest.mark.parametrize(
    ("shard", "source", "site", "residency"),
    [
        (0, "cam-a", "edge-a", "Site"),
        (1, "cam-b", "edge-b", "Region"),
        (2, "cam-c", "edge-c", "Site"),
    ],
)
def test_federated_participant_i_reads_data_source_i(
    shard: int, source: str, site: str, residency: str
) -> None:
    manifest = build_shard_resource(job_of(FEDERATED), shard, epoch=2)
    env = env_of(manifest)
    assert env[EnvVar.DATA_NAME] == source
    assert env[EnvVar.DATA_SITE] == site
    assert env[EnvVar.DATA_RESIDENCY] == residency
    assert env[EnvVar.ROLE] == "participant"
    assert env[EnvVar.SHARD_COUNT] == "4"
    assert manifest["metadata"]["labels"][SHARD_LABELS.role] == "participant"


def test_the_last_federated_shard_is_the_aggregator_and_reads_no_data() -> None:
    manifest = build_shard_resource(job_of(FEDERATED), 3, epoch=2)
    env = env_of(manifest)
    assert env[EnvVar.ROLE] == "aggregator"
    assert env[EnvVar.SHARD_INDEX] == "3"
    assert not {EnvVar.DATA_NAME, EnvVar.DATA_SITE, EnvVar.DATA_RESIDENCY} & env.keys()
    assert manifest["kind"] == "RayJob"
    assert manifest["metadata"]["labels"][SHARD_LABELS.role] == "aggregator"


def test_an_explicit_role_overrides_the_default() -> None:
    manifest = build_shard_resource(job_of(TRAINING), 0, epoch=1, role="evaluator")
    assert manifest["metadata"]["labels"][SHARD_LABELS.role] == "evaluator"
    assert env_of(manifest)[EnvVar.ROLE] == "evaluator"
    with pytest.raises(ValueError, match="label value"):
        build_shard_resource(job_of(TRAINING), 0, epoch=1, role="not a label")


@pytest.mark.parametrize(
    ("raw", "shard", "epoch", "message"),
    [
        (TRAINING, 2, 1, "outside 0..1"),
        (TRAINING, -1, 1, "outside 0..1"),
        (TRAINING, 0, -1, "epoch"),
        (FEDERATED, 4, 1, "outside 0..3"),
    ],
)
def test_impossible_shards_are_refused(
    raw: dict[str, Any], shard: int, epoch: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build_shard_resource(job_of(raw), shard, epoch)


def test_federated_shards_beyond_the_aggregator_are_refused() -> None:
    # The API refuses such a job; a model built in code skips that check, the builder does not.
    job = job_of(FEDERATED)
    shards = job.spec.shards.model_copy(update={"count": 6})
    job = job.model_copy(update={"spec": job.spec.model_copy(update={"shards": shards})})
    with pytest.raises(ValueError, match="aggregates; there is no shard 4"):
        build_shard_resource(job, 4, epoch=1)


def test_a_job_without_namespace_is_refused() -> None:
    raw = copy.deepcopy(TRAINING)
    del raw["metadata"]["namespace"]
    with pytest.raises(ValueError, match="namespace"):
        build_shard_resource(job_of(raw), 0, epoch=1)


def test_inference_shard_is_a_rayservice_serving_the_import_path() -> None:
    manifest = build_shard_resource(job_of(INFERENCE), 0, epoch=4)
    assert (manifest["kind"], manifest["metadata"]["name"]) == ("RayService", "serve-0")
    assert set(manifest["spec"]) == {"serveConfigV2", "rayClusterConfig"}
    assert yaml.safe_load(manifest["spec"]["serveConfigV2"]) == {
        "applications": [
            {
                "name": "serve",
                "import_path": "app.model:deployment",
                "route_prefix": "/",
                "runtime_env": {"working_dir": "https://example.com/app.zip"},
            }
        ]
    }
    env = env_of(manifest)
    assert (env[EnvVar.MODE], env[EnvVar.ROLE], env[EnvVar.EPOCH]) == ("Inference", "server", "4")
    resources = containers(manifest)[0]["resources"]["requests"]
    assert resources == {"cpu": "500m", "memory": "1Gi"}


@pytest.mark.parametrize("raw", [TRAINING, FEDERATED, INFERENCE])
def test_the_same_inputs_give_the_same_manifest(raw: dict[str, Any]) -> None:
    first = build_shard_resource(job_of(raw), 0, epoch=3)
    again = build_shard_resource(job_of(copy.deepcopy(raw)), 0, epoch=3)
    assert first == again
    assert json.dumps(first) == json.dumps(again)  # the same key order, too
    assert build_shard_resource(job_of(raw), 0, epoch=4) != first


def test_runtime_env_key_order_does_not_change_the_manifest() -> None:
    reordered = copy.deepcopy(TRAINING)
    reordered["spec"]["ray"]["runtimeEnv"] = {"env_vars": {"ROUNDS": "5"}, "pip": ["torch==2.5"]}
    assert build_shard_resource(job_of(reordered), 0, 1) == build_shard_resource(
        job_of(TRAINING), 0, 1
    )


# -- status -------------------------------------------------------------------------------------


def ray_job(status: dict[str, Any] | None, **metadata: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": metadata}
    if status is not None:
        resource["status"] = status
    return resource


def ray_service(status: dict[str, Any] | None) -> dict[str, Any]:
    resource = ray_job(status)
    resource["kind"] = "RayService"
    return resource


def ready(status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {"type": "Ready", "status": status, "reason": reason, "message": message}


@pytest.mark.parametrize(
    ("status", "state", "says"),
    [
        (None, ShardState.PENDING, "not reported"),
        ({}, ShardState.PENDING, "not reported"),
        ({"jobDeploymentStatus": ""}, ShardState.PENDING, "not started"),
        ({"jobDeploymentStatus": "Waiting"}, ShardState.PENDING, "waiting"),
        ({"jobDeploymentStatus": "Initializing"}, ShardState.STARTING, "creating"),
        ({"jobDeploymentStatus": "Running", "jobStatus": "PENDING"}, ShardState.STARTING, "waits"),
        ({"jobDeploymentStatus": "Running", "jobStatus": ""}, ShardState.STARTING, "waits"),
        ({"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}, ShardState.RUNNING, "running"),
        (
            {"jobDeploymentStatus": "Running", "jobStatus": "SUCCEEDED"},
            ShardState.SUCCEEDED,
            "succeeded",
        ),
        (
            {"jobDeploymentStatus": "Running", "jobStatus": "FAILED", "message": "exit 1"},
            ShardState.RUNNING,
            "not yet retried or failed it: exit 1",
        ),
        (
            {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"},
            ShardState.SUCCEEDED,
            "succeeded",
        ),
        ({"jobDeploymentStatus": "Complete", "jobStatus": "FAILED"}, ShardState.FAILED, "FAILED"),
        ({"jobDeploymentStatus": "Complete", "jobStatus": "STOPPED"}, ShardState.FAILED, "STOPPED"),
        ({"jobDeploymentStatus": "Complete"}, ShardState.UNKNOWN, "jobStatus ''"),
        (
            {"jobDeploymentStatus": "Failed", "reason": "DeadlineExceeded", "message": "late"},
            ShardState.FAILED,
            "failed: DeadlineExceeded; late",
        ),
        (
            {"jobDeploymentStatus": "ValidationFailed", "message": "name too long"},
            ShardState.FAILED,
            "refused the RayJob: name too long",
        ),
        ({"jobDeploymentStatus": "Suspending"}, ShardState.PENDING, "suspending"),
        ({"jobDeploymentStatus": "Suspended"}, ShardState.PENDING, "suspended"),
        ({"jobDeploymentStatus": "Retrying", "failed": 2}, ShardState.STARTING, "2 failed"),
        ({"jobDeploymentStatus": "Exploding"}, ShardState.UNKNOWN, "'Exploding'"),
        (
            {"jobDeploymentStatus": "Running", "jobStatus": "LOST"},
            ShardState.UNKNOWN,
            "jobStatus 'LOST'",
        ),
    ],
)
def test_ray_job_status_maps_to_shard_state(
    status: dict[str, Any] | None, state: ShardState, says: str
) -> None:
    observation = observe_shard(ray_job(status))
    assert observation.state == state
    assert says in observation.message


@pytest.mark.parametrize(
    ("status", "state", "says"),
    [
        (None, ShardState.PENDING, "not reported"),
        ({"serviceStatus": "Running"}, ShardState.RUNNING, "serving"),
        ({"serviceStatus": ""}, ShardState.STARTING, "starting"),
        ({"numServeEndpoints": 0}, ShardState.STARTING, "starting"),
        ({"serviceStatus": "WaitForServeDeploymentReady"}, ShardState.UNKNOWN, "'WaitFor"),
        ({"conditions": [ready("True", "NonZeroServeEndpoints")]}, ShardState.RUNNING, "serving"),
        (
            {
                "conditions": [
                    ready("True", "NonZeroServeEndpoints"),
                    {"type": "UpgradeInProgress", "status": "True", "reason": "Both"},
                ]
            },
            ShardState.RUNNING,
            "upgrades",
        ),
        ({"conditions": [ready("False", "Initializing")]}, ShardState.STARTING, "Initializing"),
        (
            {"conditions": [ready("False", "ZeroServeEndpoints")]},
            ShardState.STARTING,
            "ZeroServeEndpoints",
        ),
        (
            {"conditions": [ready("False", "InitializingTimeout", "gave up")]},
            ShardState.FAILED,
            "did not become ready: gave up",
        ),
        (
            {
                "conditions": [ready("False", "Initializing")],
                "pendingServiceStatus": {
                    "applicationStatuses": {
                        "serve": {"status": "DEPLOY_FAILED", "message": "ImportError"}
                    }
                },
            },
            ShardState.FAILED,
            "serve failed to deploy: ImportError",
        ),
        ({"conditions": [ready("False", "Mystery")]}, ShardState.UNKNOWN, "'Mystery'"),
        ({"conditions": [ready("Unknown", "Initializing")]}, ShardState.UNKNOWN, "'Unknown'"),
        # The deprecated serviceStatus yields to the condition that replaced it.
        (
            {"serviceStatus": "Running", "conditions": [ready("False", "ZeroServeEndpoints")]},
            ShardState.STARTING,
            "ZeroServeEndpoints",
        ),
    ],
)
def test_ray_service_status_maps_to_shard_state(
    status: dict[str, Any] | None, state: ShardState, says: str
) -> None:
    observation = observe_shard(ray_service(status))
    assert observation.state == state
    assert says in observation.message


def test_other_kinds_are_unknown_and_named() -> None:
    observation = observe_shard({"kind": "RayCluster", "status": {"state": "ready"}})
    assert observation == ShardObservation(
        ShardState.UNKNOWN, "not a KubeRay shard resource: 'RayCluster'"
    )


def test_restarts_and_checkpoints_are_reported() -> None:
    annotations = {SHARD_LABELS.last_checkpoint_annotation: "2026-03-01T10:00:00Z"}
    observation = observe_shard(
        ray_job(
            {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING", "failed": 2},
            annotations=annotations,
        )
    )
    assert (observation.restarts, observation.last_checkpoint) == (2, "2026-03-01T10:00:00Z")
    for bad in ("yesterday", "2026-03-01T10:00:00"):  # unparseable, or without a zone
        annotations = {SHARD_LABELS.last_checkpoint_annotation: bad}
        assert observe_shard(ray_job(None, annotations=annotations)).last_checkpoint is None


def test_a_status_older_than_the_spec_says_so() -> None:
    status = {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING", "observedGeneration": 1}
    observation = observe_shard(ray_job(status, generation=2))
    assert observation.state == ShardState.RUNNING
    assert "observed generation 1 of 2" in observation.message


# -- drift ----------------------------------------------------------------------------------------


def as_served(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as a kube-apiserver and KubeRay hand it back: defaults, metadata, status."""
    served = copy.deepcopy(manifest)
    served["metadata"].update(
        uid="f00", resourceVersion="42", generation=1, creationTimestamp="2026-03-01T10:00:00Z"
    )
    served["metadata"]["labels"]["team"] = "a"
    served["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied"] = "{}"
    spec = served["spec"]
    cluster = spec.get("rayClusterSpec") or spec["rayClusterConfig"]
    for group in cluster["workerGroupSpecs"]:
        group.update(numOfHosts=1, priority=0)
    if "rayClusterSpec" in spec:
        spec.update(submissionMode="K8sJobMode", ttlSecondsAfterFinished=0)
    served["status"] = {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}
    return served


@pytest.mark.parametrize("raw", [TRAINING, FEDERATED, INFERENCE])
def test_defaults_status_and_foreign_metadata_do_not_need_an_update(raw: dict[str, Any]) -> None:
    manifest = build_shard_resource(job_of(raw), 0, epoch=3)
    assert not needs_update(manifest, manifest)
    assert not needs_update(manifest, as_served(manifest))


def test_a_spec_change_needs_an_update() -> None:
    desired = build_shard_resource(job_of(TRAINING), 0, epoch=3)
    edited = as_served(desired)
    edited["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0][
        "image"
    ] = "rayproject/ray:2.40.0"
    assert needs_update(desired, edited)

    changed_job = copy.deepcopy(TRAINING)
    changed_job["spec"]["ray"]["workersPerShard"] = 3
    assert needs_update(build_shard_resource(job_of(changed_job), 0, epoch=3), as_served(desired))


def test_a_new_epoch_needs_an_update() -> None:
    served = as_served(build_shard_resource(job_of(TRAINING), 0, epoch=3))
    assert needs_update(build_shard_resource(job_of(TRAINING), 0, epoch=4), served)


def test_a_field_we_stopped_setting_needs_an_update() -> None:
    served = as_served(build_shard_resource(job_of(TRAINING), 0, epoch=3))
    without_env = copy.deepcopy(TRAINING)
    del without_env["spec"]["ray"]["runtimeEnv"]
    desired = build_shard_resource(job_of(without_env), 0, epoch=3)
    assert "runtimeEnvYAML" not in desired["spec"] and "runtimeEnvYAML" in served["spec"]
    assert needs_update(desired, served)


def test_removed_labels_and_retyped_values_need_an_update() -> None:
    desired = build_shard_resource(job_of(TRAINING), 0, epoch=3)
    unlabelled = as_served(desired)
    del unlabelled["metadata"]["labels"][SHARD_LABELS.job_uid]
    assert needs_update(desired, unlabelled)
    retyped = as_served(desired)
    retyped["spec"]["shutdownAfterJobFinishes"] = 1
    assert needs_update(desired, retyped)
    other_kind = as_served(desired)
    other_kind["kind"] = "RayService"
    assert needs_update(desired, other_kind)


def test_a_training_or_inference_shard_with_a_data_source_is_told_its_site() -> None:
    data = [{"name": "cams", "site": "delft", "residency": "Site"}]
    ray = {"image": "rayproject/ray:2.50.0", "entrypoint": "serve.app:app"}
    serving = {"mode": "Inference", "objectives": {"latencyP99Ms": 50}, "ray": ray}
    for raw in (mljob(data=data), mljob(data=data, **serving)):
        job = job_of(raw)
        env = env_of(build_shard_resource(job, 0, epoch=1))
        assert (env[EnvVar.DATA_SITE], env[EnvVar.DATA_NAME]) == ("delft", "cams")
        assert EnvVar.DATA_SITE not in env_of(build_shard_resource(job, 1, epoch=1))
