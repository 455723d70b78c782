"""A stand-in for KubeRay on the testbed: it writes the status KubeRay would write.

The testbed's member clusters run kube-apiserver with the KubeRay CRDs but no kubelet, so no pod
and hence no Ray cluster can ever start there, and a real KubeRay would leave every RayJob
initializing for ever. This test controller moves the status subresource of Continuum's shard
resources (those labelled continuum.dev/managed-by=continuum) through the states KubeRay uses:

- RayJob: jobDeploymentStatus Initializing, then Running with jobStatus RUNNING, then Complete
  with SUCCEEDED (on request), or Failed with FAILED.
- RayService: the Ready condition False (Initializing), then True with serviceStatus Running; or
  False with reason InitializingTimeout for a failure. A RayService never completes.

Use the functions from a test (`advance(api_client, namespace, to=Target.RUNNING)`), or run it as
a controller beside the operator, which starts every new shard resource up to Running:

    python e2e/kuberay_sim.py --kubeconfig member-1.kubeconfig [--namespace NS] [--to Running]
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

from kubernetes import client, config

from continuum.operator.api.shard_resources import (
    MANAGED_SELECTOR,
    RAY_JOB,
    RAY_SERVICE,
    SHARD_LABELS,
    ResourceKind,
)

log = logging.getLogger("kuberay-sim")


class Target(StrEnum):
    """Where to take a shard resource's status."""

    INITIALIZING = "Initializing"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    """RayJob only: Complete with SUCCEEDED. RayServices are left as they are."""
    FAILED = "Failed"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ray_job_status(resource: Mapping[str, Any], target: Target) -> dict[str, Any] | None:
    name = resource["metadata"]["name"]
    previous = resource.get("status") or {}
    started = previous.get("startTime") or _now()
    common = {
        "rayClusterName": f"{name}-sim",
        "jobId": previous.get("jobId") or f"{name}-job",
        "observedGeneration": resource["metadata"].get("generation", 1),
    }
    match target:
        case Target.INITIALIZING:
            return {**common, "jobDeploymentStatus": "Initializing", "startTime": started}
        case Target.RUNNING:
            return {
                **common,
                "jobDeploymentStatus": "Running",
                "jobStatus": "RUNNING",
                "startTime": started,
                "message": "Job is currently running (kuberay-sim)",
            }
        case Target.SUCCEEDED:
            return {
                **common,
                "jobDeploymentStatus": "Complete",
                "jobStatus": "SUCCEEDED",
                "startTime": started,
                "endTime": _now(),
                "succeeded": 1,
                "message": "Job finished successfully (kuberay-sim)",
            }
        case Target.FAILED:
            return {
                **common,
                "jobDeploymentStatus": "Failed",
                "jobStatus": "FAILED",
                "reason": "AppFailed",
                "startTime": started,
                "endTime": _now(),
                "failed": 1,
                "message": "Job entrypoint exited with code 1 (kuberay-sim)",
            }


def _ready_condition(status: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": _now(),
    }


def _ray_service_status(resource: Mapping[str, Any], target: Target) -> dict[str, Any] | None:
    generation = resource["metadata"].get("generation", 1)
    match target:
        case Target.INITIALIZING:
            ready = _ready_condition("False", "Initializing", "RayService is initializing")
            return {"conditions": [ready], "observedGeneration": generation}
        case Target.RUNNING:
            ready = _ready_condition("True", "NonZeroServeEndpoints", "Number of serve endpoints")
            return {
                "conditions": [ready],
                "serviceStatus": "Running",
                "numServeEndpoints": 1,
                "observedGeneration": generation,
            }
        case Target.SUCCEEDED:
            return None
        case Target.FAILED:
            ready = _ready_condition(
                "False", "InitializingTimeout", "RayService did not become ready in time"
            )
            return {"conditions": [ready], "observedGeneration": generation}


def _managed(
    api: client.CustomObjectsApi, kind: ResourceKind, namespace: str | None, selector: str
) -> Iterator[dict[str, Any]]:
    if namespace is None:
        listing = api.list_cluster_custom_object(
            kind.group, kind.version, kind.plural, label_selector=selector
        )
    else:
        listing = api.list_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, label_selector=selector
        )
    # The client declares the listing as a bare object; it is the decoded JSON list.
    yield from cast("dict[str, list[dict[str, Any]]]", listing)["items"]


def _patch_status(
    api: client.CustomObjectsApi, kind: ResourceKind, resource: Mapping[str, Any], status: Any
) -> None:
    metadata = resource["metadata"]
    # A merge patch of the whole status: fields of an earlier state (jobStatus, reason) that the
    # new one lacks are set to null, i.e. removed, as KubeRay's full status update would do.
    cleared = {key: None for key in resource.get("status") or {} if key not in status}
    api.patch_namespaced_custom_object_status(
        kind.group,
        kind.version,
        metadata["namespace"],
        kind.plural,
        metadata["name"],
        {"status": {**cleared, **status}},
        _content_type="application/merge-patch+json",
    )


def advance(
    api_client: client.ApiClient,
    namespace: str | None,
    to: Target | str = Target.RUNNING,
    selector: str | None = None,
) -> list[str]:
    """Sets the status of every managed RayJob and RayService in `namespace` (None: all) to `to`,
    as KubeRay would; `selector` narrows the choice further. Returns "Kind/namespace/name" of each
    resource changed."""
    target = Target(to)
    label_selector = MANAGED_SELECTOR if selector is None else f"{MANAGED_SELECTOR},{selector}"
    api = client.CustomObjectsApi(api_client)
    changed = []
    for kind in (RAY_JOB, RAY_SERVICE):
        build = _ray_job_status if kind == RAY_JOB else _ray_service_status
        for resource in _managed(api, kind, namespace, label_selector):
            status = build(resource, target)
            if status is None:
                continue
            _patch_status(api, kind, resource, status)
            metadata = resource["metadata"]
            changed.append(f"{kind.kind}/{metadata['namespace']}/{metadata['name']}")
    return changed


def start(api_client: client.ApiClient, namespace: str | None = None) -> list[str]:
    """Moves managed resources that have no status yet to Initializing, and those Initializing to
    Running: one step of a real KubeRay's progress. Returns the resources changed."""
    api = client.CustomObjectsApi(api_client)
    changed = []
    for kind in (RAY_JOB, RAY_SERVICE):
        build = _ray_job_status if kind == RAY_JOB else _ray_service_status
        for resource in _managed(api, kind, namespace, MANAGED_SELECTOR):
            target = _next_step(kind, resource.get("status") or {})
            if target is None:
                continue
            status = build(resource, target)
            if status is not None:
                _patch_status(api, kind, resource, status)
                metadata = resource["metadata"]
                changed.append(f"{kind.kind}/{metadata['namespace']}/{metadata['name']}")
    return changed


def _next_step(kind: ResourceKind, status: Mapping[str, Any]) -> Target | None:
    if not status:
        return Target.INITIALIZING
    if kind == RAY_JOB:
        return Target.RUNNING if status.get("jobDeploymentStatus") == "Initializing" else None
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is not None and ready.get("reason") == "Initializing":
        return Target.RUNNING
    return None


def record_checkpoint(
    api_client: client.ApiClient, kind: ResourceKind, namespace: str, name: str, at: datetime
) -> None:
    """Annotates a shard resource with its newest checkpoint time, as the workload reports it."""
    client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        kind.group,
        kind.version,
        namespace,
        kind.plural,
        name,
        {
            "metadata": {
                "annotations": {
                    SHARD_LABELS.last_checkpoint_annotation: at.astimezone(UTC).strftime(
                        "%Y-%m-%dT%H:%M:%SZ"
                    )
                }
            }
        },
        _content_type="application/merge-patch+json",
    )


def run(
    api_client: client.ApiClient,
    stop: threading.Event,
    namespace: str | None = None,
    interval_s: float = 0.2,
) -> None:
    """Starts shard resources up to Running, as they appear, until `stop` is set."""
    while not stop.is_set():
        try:
            for changed in start(api_client, namespace):
                log.info("advanced %s", changed)
        except client.ApiException as error:
            log.warning("listing or patching failed: %s", error.reason)
        stop.wait(interval_s)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kubeconfig", required=True, help="the member cluster's kubeconfig")
    parser.add_argument("--namespace", help="only this namespace (default: all)")
    parser.add_argument(
        "--to",
        choices=[target.value for target in Target],
        help="set every managed resource to this state once, then exit; "
        "without it, run as a controller that starts new resources up to Running",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    api_client = config.new_client_from_config(config_file=args.kubeconfig)
    try:
        if args.to:
            for changed in advance(api_client, args.namespace, args.to):
                print(changed)
            return
        stop = threading.Event()
        try:
            run(api_client, stop, args.namespace)
        except KeyboardInterrupt:
            stop.set()
    finally:
        api_client.close()


if __name__ == "__main__":
    main()
