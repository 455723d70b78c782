"""KubeRay manifests for MLJob shards, and what KubeRay's status says about a shard. Pure.

Each shard of an MLJob runs as its own Ray cluster in one member cluster: a RayJob for Training and
Federated jobs, a RayService for Inference. `build_shard_resource` writes the manifest (it passes
the KubeRay v1.7.0 CRD schemas under strict field validation), `observe_shard` maps the status
KubeRay writes back to a `ShardState`, and `needs_update` tells whether an object in a member
cluster differs from the manifest in what Continuum owns.

The Ray head and worker containers get these environment variables, so the program knows its part:

- `CONTINUUM_JOB_NAME`, `CONTINUUM_JOB_NAMESPACE`, `CONTINUUM_JOB_UID` (when known): the MLJob.
- `CONTINUUM_MODE`: Training, Inference or Federated.
- `CONTINUUM_SHARD_INDEX` (0-based) and `CONTINUUM_SHARD_COUNT` (spec.shards.count).
- `CONTINUUM_EPOCH`: the Placement epoch of the decision that put the shard where it runs.
- `CONTINUUM_ROLE`: trainer (Training), server (Inference), participant or aggregator (Federated).
- `CONTINUUM_CHECKPOINT_URI` and `CONTINUUM_CHECKPOINT_INTERVAL_SECONDS`, when the job sets
  spec.faultTolerance.checkpoint. The URI is the job's; shard i writes beneath it at
  `<uri>/shard-<i>` (also in the resource's continuum.dev/checkpoint-uri annotation), the same
  wherever it runs, so a moved shard finds its own checkpoints again.
- `CONTINUUM_EPOCH` is also the shard's resume marker (annotation continuum.dev/resume-epoch): a
  copy started at epoch E resumes from the newest checkpoint under its URI. A copy the operator
  creates for a shard that had reported a checkpoint carries that checkpoint's time in the
  annotation continuum.dev/resume-checkpoint. The workload reports each new checkpoint by
  setting continuum.dev/last-checkpoint on its resource; no write of the operator removes it.
- Shard i of a job with a data source i (spec.data[i]; a Federated job's participants, and
  the first shards of a Training or Inference job with data): `CONTINUUM_DATA_NAME`,
  `CONTINUUM_DATA_RESIDENCY`, and `CONTINUUM_DATA_SITE` when the source names a site. Federated
  participants also get `CONTINUUM_AGGREGATOR_ADDRESS`, the `host:port` they dial to reach
  their aggregator (see reconcile.federation). The last shard, index len(spec.data), is the
  aggregator and reads no data source: it gets `CONTINUUM_FEDERATION_PORT`, the port to listen
  on, and `CONTINUUM_FEDERATION_SITES`, the data sources' sites (comma-separated), to score on.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import yaml

from continuum.operator.api import JobMode, MLJob, ShardState
from continuum.operator.api.mljob import DataSource, FaultTolerance, ShardResources
from continuum.operator.api.shard_resources import (
    FEDERATION_PORT,
    MANAGED_BY,
    RAY_JOB,
    RAY_SERVICE,
    SHARD_LABELS,
    is_label_value,
    job_label_value,
    resource_kind_for,
    shard_checkpoint_uri,
    shard_resource_name,
)

GPU_RESOURCE: Final = "nvidia.com/gpu"

HEAD_CONTAINER: Final = "ray-head"
WORKER_CONTAINER: Final = "ray-worker"
WORKER_GROUP: Final = "workers"


class EnvVar(StrEnum):
    JOB_NAME = "CONTINUUM_JOB_NAME"
    JOB_NAMESPACE = "CONTINUUM_JOB_NAMESPACE"
    JOB_UID = "CONTINUUM_JOB_UID"
    MODE = "CONTINUUM_MODE"
    SHARD_INDEX = "CONTINUUM_SHARD_INDEX"
    SHARD_COUNT = "CONTINUUM_SHARD_COUNT"
    EPOCH = "CONTINUUM_EPOCH"
    ROLE = "CONTINUUM_ROLE"
    CHECKPOINT_URI = "CONTINUUM_CHECKPOINT_URI"
    CHECKPOINT_INTERVAL_SECONDS = "CONTINUUM_CHECKPOINT_INTERVAL_SECONDS"
    DATA_NAME = "CONTINUUM_DATA_NAME"
    DATA_SITE = "CONTINUUM_DATA_SITE"
    DATA_RESIDENCY = "CONTINUUM_DATA_RESIDENCY"
    AGGREGATOR_ADDRESS = "CONTINUUM_AGGREGATOR_ADDRESS"
    FEDERATION_PORT = "CONTINUUM_FEDERATION_PORT"
    FEDERATION_SITES = "CONTINUUM_FEDERATION_SITES"


class Role(StrEnum):
    TRAINER = "trainer"
    SERVER = "server"
    PARTICIPANT = "participant"
    AGGREGATOR = "aggregator"


# ---------------------------------------------------------------------------------------------
# Manifests


def default_role(job: MLJob, shard_index: int) -> Role:
    """The shard's part in its job; for Federated, the shard after the data sources aggregates."""
    match job.spec.mode:
        case JobMode.TRAINING:
            return Role.TRAINER
        case JobMode.INFERENCE:
            return Role.SERVER
        case JobMode.FEDERATED:
            return Role.AGGREGATOR if shard_index == len(job.spec.data) else Role.PARTICIPANT


def _check_shard(job: MLJob, shard_index: int, epoch: int) -> tuple[str, str]:
    name, namespace = job.metadata.name, job.metadata.namespace
    if not name or not namespace:
        raise ValueError("the MLJob needs metadata.name and metadata.namespace")
    count = job.spec.shards.count
    if not 0 <= shard_index < count:
        raise ValueError(f"shard index {shard_index} is outside 0..{count - 1} of job {name}")
    if epoch < 0:
        raise ValueError(f"epoch must be 0 or more, not {epoch}")
    sources = len(job.spec.data)
    if job.spec.mode == JobMode.FEDERATED and shard_index > sources:
        raise ValueError(
            f"Federated job {name} has {sources} data sources, so shards 0..{sources - 1} read "
            f"them and shard {sources} aggregates; there is no shard {shard_index}"
        )
    return name, namespace


def _data_source(job: MLJob, shard_index: int) -> DataSource | None:
    """Shard i's data source, spec.data[i], if the job has one (a Federated aggregator, the
    shard after the sources, has none)."""
    return job.spec.data[shard_index] if shard_index < len(job.spec.data) else None


def _federation(job: MLJob, shard_index: int, aggregator: str | None) -> list[tuple[EnvVar, str]]:
    if job.spec.mode != JobMode.FEDERATED:
        return []
    if shard_index < len(job.spec.data):
        return [(EnvVar.AGGREGATOR_ADDRESS, aggregator)] if aggregator else []
    sites = sorted({source.site for source in job.spec.data if source.site is not None})
    return [
        (EnvVar.FEDERATION_PORT, str(FEDERATION_PORT)),
        (EnvVar.FEDERATION_SITES, ",".join(sites)),
    ]


def _environment(
    job: MLJob, shard_index: int, epoch: int, role: str, aggregator: str | None
) -> list[dict[str, str]]:
    name, namespace = job.metadata.name or "", job.metadata.namespace or ""
    values: list[tuple[EnvVar, str]] = [
        (EnvVar.JOB_NAME, name),
        (EnvVar.JOB_NAMESPACE, namespace),
    ]
    if job.metadata.uid:
        values.append((EnvVar.JOB_UID, job.metadata.uid))
    values += [
        (EnvVar.MODE, job.spec.mode.value),
        (EnvVar.SHARD_INDEX, str(shard_index)),
        (EnvVar.SHARD_COUNT, str(job.spec.shards.count)),
        (EnvVar.EPOCH, str(epoch)),
        (EnvVar.ROLE, role),
    ]
    checkpoint = job.spec.fault_tolerance.checkpoint if job.spec.fault_tolerance else None
    if checkpoint is not None:
        values += [
            (EnvVar.CHECKPOINT_URI, checkpoint.uri),
            (EnvVar.CHECKPOINT_INTERVAL_SECONDS, str(checkpoint.interval_seconds)),
        ]
    source = _data_source(job, shard_index)
    if source is not None:
        values.append((EnvVar.DATA_NAME, source.name))
        if source.site is not None:
            values.append((EnvVar.DATA_SITE, source.site))
        values.append((EnvVar.DATA_RESIDENCY, source.residency.value))
    values += _federation(job, shard_index, aggregator)
    return [{"name": variable.value, "value": value} for variable, value in values]


def _whole_devices(gpu: str | int, nanos: int) -> str:
    # Kubernetes hands out devices whole; a fractional GPU shard still needs one device, and
    # Ray shares it among the shard's tasks.
    if nanos % 10**9 == 0:
        return str(gpu)
    return str(math.ceil(nanos / 10**9))


def _pod_resources(resources: ShardResources) -> dict[str, dict[str, str]]:
    # Requests equal limits: Ray sizes its node from the limits, and the scheduler counted the
    # shard at exactly these amounts. The strings are the user's, so they read back unchanged.
    amounts = {"cpu": str(resources.cpu.written), "memory": str(resources.memory.written)}
    if resources.gpu.nanos > 0:
        amounts[GPU_RESOURCE] = _whole_devices(resources.gpu.written, resources.gpu.nanos)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _pod_template(
    job: MLJob, container: str, labels: Mapping[str, str], env: list[dict[str, str]]
) -> dict[str, Any]:
    return {
        "metadata": {"labels": dict(labels)},
        "spec": {
            "containers": [
                {
                    "name": container,
                    "image": job.spec.ray.image,
                    "env": [dict(variable) for variable in env],
                    "resources": _pod_resources(job.spec.shards.resources),
                }
            ]
        },
    }


def _ray_cluster_spec(
    job: MLJob, labels: Mapping[str, str], env: list[dict[str, str]]
) -> dict[str, Any]:
    """One head and `workersPerShard` workers, every pod sized at spec.shards.resources."""
    workers = job.spec.ray.workers_per_shard
    return {
        "headGroupSpec": {
            # The dashboard takes job submissions and Serve configs from outside the head pod.
            "rayStartParams": {"dashboard-host": "0.0.0.0"},
            "template": _pod_template(job, HEAD_CONTAINER, labels, env),
        },
        "workerGroupSpecs": [
            {
                "groupName": WORKER_GROUP,
                "replicas": workers,
                "minReplicas": workers,
                "maxReplicas": workers,
                "rayStartParams": {},
                "template": _pod_template(job, WORKER_CONTAINER, labels, env),
            }
        ],
    }


def _yaml(document: Any) -> str:
    return yaml.safe_dump(document, sort_keys=True, default_flow_style=False)


def _max_restarts(fault_tolerance: FaultTolerance | None) -> int:
    return (fault_tolerance or FaultTolerance()).max_restarts


def _ray_job_spec(
    job: MLJob, labels: Mapping[str, str], env: list[dict[str, str]]
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "entrypoint": job.spec.ray.entrypoint,
        "shutdownAfterJobFinishes": True,
        "backoffLimit": _max_restarts(job.spec.fault_tolerance),
        "rayClusterSpec": _ray_cluster_spec(job, labels, env),
    }
    if job.spec.ray.runtime_env is not None:
        spec["runtimeEnvYAML"] = _yaml(job.spec.ray.runtime_env)
    return spec


def _ray_service_spec(
    job: MLJob, labels: Mapping[str, str], env: list[dict[str, str]]
) -> dict[str, Any]:
    application: dict[str, Any] = {
        "name": job_label_value(job.metadata.name or ""),
        "import_path": job.spec.ray.entrypoint,
        "route_prefix": "/",
    }
    if job.spec.ray.runtime_env is not None:
        application["runtime_env"] = job.spec.ray.runtime_env
    return {
        "serveConfigV2": _yaml({"applications": [application]}),
        "rayClusterConfig": _ray_cluster_spec(job, labels, env),
    }


def spec_hash(spec: Mapping[str, Any]) -> str:
    """A digest of a spec, independent of key order."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def build_shard_resource(
    job: MLJob,
    shard_index: int,
    epoch: int,
    role: str | None = None,
    aggregator: str | None = None,
) -> dict[str, Any]:
    """The RayJob or RayService manifest of one shard, in the job's namespace.

    `epoch` is the Placement epoch of the decision that put this shard on its cluster. It goes
    into the labels and into the pods' environment, so pass the epoch at which the shard was
    (re)assigned, not the Placement's current one: a new value changes the pod template, which
    makes a RayService roll to a new Ray cluster.

    `role` overrides the default role (see `default_role`) in the labels and the environment; a
    Federated shard still reads spec.data[shard_index] whatever its role.

    `aggregator` is the address (`host:port`) a Federated participant dials to reach its
    aggregator; it goes into the participant's environment and its aggregator-address
    annotation, and is ignored for other shards.

    The same arguments always give the same manifest.
    """
    name, namespace = _check_shard(job, shard_index, epoch)
    role = role or default_role(job, shard_index).value
    if not is_label_value(role):
        raise ValueError(f"role {role!r} is not a valid label value")
    labels = {
        SHARD_LABELS.managed_by: MANAGED_BY,
        SHARD_LABELS.job: job_label_value(name),
        SHARD_LABELS.shard: str(shard_index),
        SHARD_LABELS.epoch: str(epoch),
        SHARD_LABELS.role: role,
    }
    if job.metadata.uid:
        labels[SHARD_LABELS.job_uid] = job.metadata.uid
    env = _environment(job, shard_index, epoch, role, aggregator)
    kind = resource_kind_for(job.spec.mode)
    if kind == RAY_SERVICE:
        spec = _ray_service_spec(job, labels, env)
    else:
        spec = _ray_job_spec(job, labels, env)
    annotations = {
        SHARD_LABELS.job_name_annotation: name,
        SHARD_LABELS.spec_hash_annotation: spec_hash(spec),
        SHARD_LABELS.resume_epoch_annotation: str(epoch),
    }
    if aggregator and job.spec.mode == JobMode.FEDERATED and _data_source(job, shard_index):
        annotations[SHARD_LABELS.aggregator_address_annotation] = aggregator
    checkpoint = job.spec.fault_tolerance.checkpoint if job.spec.fault_tolerance else None
    if checkpoint is not None:
        annotations[SHARD_LABELS.checkpoint_uri_annotation] = shard_checkpoint_uri(
            checkpoint.uri, shard_index
        )
    return {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "metadata": {
            "name": shard_resource_name(name, shard_index),
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    }


def with_resume_checkpoint(manifest: Mapping[str, Any], checkpoint: str | None) -> dict[str, Any]:
    """The manifest of a copy about to be created, marked with the newest checkpoint the shard
    reported (None: none yet, the manifest as it is). Only a create carries it: a checkpoint
    time in the desired manifest would make every new checkpoint a write."""
    if checkpoint is None:
        return dict(manifest)
    metadata = dict(manifest["metadata"])
    metadata["annotations"] = {
        **metadata.get("annotations", {}),
        SHARD_LABELS.resume_checkpoint_annotation: checkpoint,
    }
    return {**manifest, "metadata": metadata}


# ---------------------------------------------------------------------------------------------
# Status


@dataclass(frozen=True)
class ShardObservation:
    """What a shard resource's status says about the shard."""

    state: ShardState
    message: str
    last_checkpoint: str | None = None
    """RFC 3339 time of the newest checkpoint, when the workload has reported one."""
    restarts: int = 0
    """Failed attempts KubeRay has retried (RayJob status.failed)."""


_RAY_JOB_TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
_RAY_JOB_STATUSES = {"", "PENDING", "RUNNING", *_RAY_JOB_TERMINAL}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def annotation_time(resource: Mapping[str, Any], key: str) -> datetime | None:
    """A time the resource's annotation `key` holds (RFC 3339 with a zone), or None when it
    holds none, or something else."""
    value = ((resource.get("metadata") or {}).get("annotations") or {}).get(key)
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def waits_for_handover(resource: Mapping[str, Any]) -> bool:
    """Whether a copy was made to wait for its old copy's hand-over and has not been let start:
    it may run, but must not work (continuum.dev/handover-from without handover-done)."""
    annotations = (resource.get("metadata") or {}).get("annotations") or {}
    return bool(annotations.get(SHARD_LABELS.handover_from_annotation)) and not annotations.get(
        SHARD_LABELS.handover_done_annotation
    )


def _last_checkpoint(resource: Mapping[str, Any]) -> str | None:
    key = SHARD_LABELS.last_checkpoint_annotation
    if annotation_time(resource, key) is None:
        return None
    return str(resource["metadata"]["annotations"][key])


def _explained(message: str, *details: str) -> str:
    extra = "; ".join(detail for detail in details if detail)
    return f"{message}: {extra}" if extra else message


def _observe_ray_job(status: Mapping[str, Any]) -> tuple[ShardState, str]:
    deployment = _text(status.get("jobDeploymentStatus"))
    job_status = _text(status.get("jobStatus"))
    reason, detail = _text(status.get("reason")), _text(status.get("message"))
    failed = status.get("failed") or 0
    if job_status not in _RAY_JOB_STATUSES:
        return ShardState.UNKNOWN, f"unknown RayJob jobStatus {job_status!r}"
    match deployment:
        case "":
            return ShardState.PENDING, "KubeRay has not started the shard yet"
        case "Waiting":
            return ShardState.PENDING, "KubeRay is waiting before creating the Ray cluster"
        case "Initializing":
            return ShardState.STARTING, "KubeRay is creating the Ray cluster"
        case "Retrying":
            return ShardState.STARTING, f"KubeRay is retrying after {failed} failed attempt(s)"
        case "Suspending" | "Suspended":
            return ShardState.PENDING, f"the RayJob is {deployment.lower()}"
        case "Running":
            if job_status == "RUNNING":
                return ShardState.RUNNING, "the Ray job is running"
            if job_status == "SUCCEEDED":
                return ShardState.SUCCEEDED, "the Ray job succeeded"
            if job_status in _RAY_JOB_TERMINAL:
                # A failed attempt may still be retried; KubeRay decides on its next reconcile.
                return ShardState.RUNNING, _explained(
                    f"the Ray job is {job_status}, KubeRay has not yet retried or failed it",
                    detail,
                )
            return ShardState.STARTING, "the Ray job is submitted and waits to run"
        case "Complete":
            if job_status == "SUCCEEDED":
                return ShardState.SUCCEEDED, "the Ray job succeeded"
            if job_status in {"FAILED", "STOPPED"}:
                return ShardState.FAILED, _explained(f"the Ray job ended {job_status}", detail)
            return ShardState.UNKNOWN, f"the RayJob is Complete with jobStatus {job_status!r}"
        case "Failed":
            return ShardState.FAILED, _explained("the RayJob failed", reason, detail)
        case "ValidationFailed":
            return ShardState.FAILED, _explained("KubeRay refused the RayJob", detail)
        case _:
            return ShardState.UNKNOWN, f"unknown RayJob jobDeploymentStatus {deployment!r}"


def _condition(status: Mapping[str, Any], condition_type: str) -> Mapping[str, Any] | None:
    for condition in status.get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == condition_type:
            return condition
    return None


def _failed_application(status: Mapping[str, Any]) -> str | None:
    for side in ("activeServiceStatus", "pendingServiceStatus"):
        applications = (status.get(side) or {}).get("applicationStatuses") or {}
        for app_name, application in sorted(applications.items()):
            if isinstance(application, Mapping) and application.get("status") == "DEPLOY_FAILED":
                return _explained(
                    f"Serve application {app_name} failed to deploy",
                    _text(application.get("message")),
                )
    return None


def _observe_ray_service(status: Mapping[str, Any]) -> tuple[ShardState, str]:
    ready = _condition(status, "Ready")
    upgrading = _condition(status, "UpgradeInProgress")
    if ready is None:
        # KubeRay before 1.3 wrote only serviceStatus; "Running" means ready there too.
        service_status = _text(status.get("serviceStatus"))
        if service_status == "Running":
            return ShardState.RUNNING, "the RayService is serving"
        if service_status:
            return ShardState.UNKNOWN, f"unknown RayService serviceStatus {service_status!r}"
        return ShardState.STARTING, "the RayService is starting"
    reason, detail = _text(ready.get("reason")), _text(ready.get("message"))
    match ready.get("status"):
        case "True":
            if upgrading is not None and upgrading.get("status") == "True":
                return ShardState.RUNNING, "the RayService is serving while it upgrades"
            return ShardState.RUNNING, "the RayService is serving"
        case "False":
            failed_application = _failed_application(status)
            if failed_application is not None:
                return ShardState.FAILED, failed_application
            if reason == "InitializingTimeout":
                return ShardState.FAILED, _explained("the RayService did not become ready", detail)
            if reason in {"Initializing", "ZeroServeEndpoints", "NoActiveCluster"}:
                return ShardState.STARTING, _explained(
                    f"the RayService is not ready ({reason})", detail
                )
            return ShardState.UNKNOWN, f"the RayService is not ready, for unknown reason {reason!r}"
        case other:
            return ShardState.UNKNOWN, _explained(
                f"the RayService Ready condition is {other!r}", detail
            )


def _stale(resource: Mapping[str, Any], status: Mapping[str, Any]) -> str:
    generation = (resource.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if isinstance(generation, int) and isinstance(observed, int) and observed < generation:
        return f" (KubeRay has observed generation {observed} of {generation})"
    return ""


def observe_shard(resource: Mapping[str, Any]) -> ShardObservation:
    """The shard's state, as KubeRay's status on its RayJob or RayService tells it.

    No status yet means KubeRay has not acted, so the shard is Pending. A value this mapping does
    not know gives Unknown, with a message naming the value, rather than a guess.
    """
    kind = resource.get("kind")
    status = resource.get("status") or {}
    checkpoint = _last_checkpoint(resource)
    if kind not in {RAY_JOB.kind, RAY_SERVICE.kind}:
        return ShardObservation(ShardState.UNKNOWN, f"not a KubeRay shard resource: {kind!r}")
    if not isinstance(status, Mapping) or not status:
        return ShardObservation(
            ShardState.PENDING, f"KubeRay has not reported on the {kind} yet", checkpoint
        )
    if kind == RAY_JOB.kind:
        state, message = _observe_ray_job(status)
        failed = status.get("failed")
        restarts = failed if isinstance(failed, int) and failed > 0 else 0
    else:
        state, message = _observe_ray_service(status)
        restarts = 0
    return ShardObservation(state, message + _stale(resource, status), checkpoint, restarts)


# ---------------------------------------------------------------------------------------------
# Drift


def _contains(held: Any, wanted: Any) -> bool:
    if isinstance(wanted, Mapping):
        return isinstance(held, Mapping) and all(
            key in held and _contains(held[key], value) for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(held, list)
            and len(held) == len(wanted)
            and all(_contains(h, w) for h, w in zip(held, wanted, strict=True))
        )
    # True == 1 in Python, but not in a manifest.
    return bool(held == wanted and isinstance(held, bool) == isinstance(wanted, bool))


def needs_update(desired: Mapping[str, Any], observed: Mapping[str, Any]) -> bool:
    """Whether the object in the member differs from the manifest in what Continuum owns.

    Only our part counts: the labels and annotations we set, and the spec fields we set. The API
    server adds fields (defaults such as submissionMode or a worker group's numOfHosts, the status,
    metadata), and other controllers may add labels; none of those differ from what we want, and
    counting them would patch the object on every reconcile, for ever.

    A field we stopped setting does not show as a difference in the spec, since it is simply
    absent from the manifest; the spec-hash annotation catches it, being one of our annotations.
    """
    if (desired.get("apiVersion"), desired.get("kind")) != (
        observed.get("apiVersion"),
        observed.get("kind"),
    ):
        return True
    desired_meta = desired.get("metadata") or {}
    observed_meta = observed.get("metadata") or {}
    for section in ("labels", "annotations"):
        wanted = desired_meta.get(section) or {}
        held = observed_meta.get(section) or {}
        if any(held.get(key) != value for key, value in wanted.items()):
            return True
    return not _contains(observed.get("spec"), desired.get("spec") or {})
