"""A stand-in for KubeRay on the testbed: it writes the status KubeRay would write.

The testbed's member clusters run kube-apiserver with the KubeRay CRDs but no kubelet, so no pod
and hence no Ray cluster can ever start there, and a real KubeRay would leave every RayJob
initializing for ever. This test controller moves the status subresource of Continuum's shard
resources (those labelled continuum.dev/managed-by=continuum) through the states KubeRay uses:

- RayJob: jobDeploymentStatus Initializing, then Running with jobStatus RUNNING, then Complete
  with SUCCEEDED (on request), or Failed with FAILED. With spec.suspend, Suspending then
  Suspended (its Ray cluster gone); cleared, Initializing again.
- RayService: the Ready condition False (Initializing), then True with serviceStatus Running; or
  False with reason InitializingTimeout for a failure. A RayService never completes.

Use the functions from a test (`advance(api_client, namespace, to=Target.RUNNING)`), or run it as
a controller beside the operator, which starts every new shard resource up to Running:

    python e2e/kuberay_sim.py --kubeconfig member-1.kubeconfig [--namespace NS] [--to Running]
                              [--checkpoints [--checkpoint-store HOST:PORT]] [--lifetime-s S]

With `--checkpoints` the controller also plays the workload's checkpoints: every Running shard
resource is annotated with continuum.dev/last-checkpoint once per checkpoint interval (its
CONTINUUM_CHECKPOINT_INTERVAL_SECONDS, else `--checkpoint-interval`), counted from when it was
first seen Running or from its newest checkpoint and attempted `--checkpoint-lead` seconds
early so that no gap exceeds the interval, and at once when the operator asks the copy
for a last checkpoint (continuum.dev/checkpoint-requested, once its replacement runs) and it has
none as new; the copy then counts its work as handed over. A replacement made to wait for that
hand-over (continuum.dev/handover-from, until handover-done) runs but takes no checkpoint, and
counts its interval from when it is let start. With `--checkpoint-store`, a
checkpoint is taken only when a TCP connection to that address succeeds: run at a site, a
partitioned or unreachable site then checkpoints nothing, as a shard that cannot reach its
checkpoint storage.
"""

from __future__ import annotations

import argparse
import logging
import socket
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

import urllib3
from kubernetes import client, config

from continuum.operator.api.shard_resources import (
    MANAGED_SELECTOR,
    RAY_JOB,
    RAY_SERVICE,
    SHARD_LABELS,
    ResourceKind,
)
from continuum.operator.reconcile.kuberay import waits_for_handover

log = logging.getLogger("kuberay-sim")


class Target(StrEnum):
    """Where to take a shard resource's status."""

    INITIALIZING = "Initializing"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    """RayJob only: Complete with SUCCEEDED. RayServices are left as they are."""
    FAILED = "Failed"
    SUSPENDING = "Suspending"
    """RayJob only, with spec.suspend: its Ray cluster is being deleted."""
    SUSPENDED = "Suspended"
    """RayJob only: its Ray cluster is gone; it starts again once spec.suspend is cleared."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _head(name: str) -> dict[str, Any]:
    """The Ray head KubeRay reports once its pod runs. Its IP is one of TEST-NET-1's, made from
    the name: stable, and never dialled (the sim runs no pods)."""
    host = zlib.crc32(name.encode()) % 254 + 1
    return {"rayClusterStatus": {"head": {"podIP": f"192.0.2.{host}", "podName": f"{name}-head"}}}


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
                **_head(name),
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
        case Target.SUSPENDING:
            return {**common, **_head(name), "jobDeploymentStatus": "Suspending",
                    "jobStatus": "RUNNING", "startTime": started}  # fmt: skip
        case Target.SUSPENDED:
            # As KubeRay: the Ray cluster and its job are gone, the job status back to new.
            return {"observedGeneration": common["observedGeneration"],
                    "jobDeploymentStatus": "Suspended", "jobStatus": ""}  # fmt: skip
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
        case Target.SUCCEEDED | Target.SUSPENDING | Target.SUSPENDED:
            return None  # a RayService neither completes nor suspends
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
            suspend = kind == RAY_JOB and bool((resource.get("spec") or {}).get("suspend"))
            target = next_step(kind, resource.get("status") or {}, suspend)
            if target is None:
                continue
            status = build(resource, target)
            if status is not None:
                _patch_status(api, kind, resource, status)
                metadata = resource["metadata"]
                changed.append(f"{kind.kind}/{metadata['namespace']}/{metadata['name']}")
    return changed


def next_step(
    kind: ResourceKind, status: Mapping[str, Any], suspend: bool = False
) -> Target | None:
    deployment = status.get("jobDeploymentStatus")
    if suspend:
        # KubeRay suspends a RayJob that has not ended: Suspending, then Suspended.
        if deployment in ("Suspended", "Complete", "Failed"):
            return None
        return Target.SUSPENDED if deployment == "Suspending" else Target.SUSPENDING
    if not status or deployment == "Suspended":
        return Target.INITIALIZING
    if kind == RAY_JOB:
        return Target.RUNNING if deployment == "Initializing" else None
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
                    # Milliseconds: the operator compares it with its request for a last
                    # checkpoint, made within the same second.
                    SHARD_LABELS.last_checkpoint_annotation: at.astimezone(UTC).isoformat(
                        timespec="milliseconds"
                    )
                }
            }
        },
        _content_type="application/merge-patch+json",
    )


CHECKPOINT_INTERVAL_ENV = "CONTINUUM_CHECKPOINT_INTERVAL_SECONDS"


def _checkpoint_interval(resource: Mapping[str, Any]) -> float | None:
    """The CONTINUUM_CHECKPOINT_INTERVAL_SECONDS the operator put in the shard's pods, if any."""
    pending: list[Any] = [resource.get("spec")]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if node.get("name") == CHECKPOINT_INTERVAL_ENV and "value" in node:
                try:
                    return float(node["value"])
                except (TypeError, ValueError):
                    return None
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return None


def _running(kind: ResourceKind, status: Mapping[str, Any]) -> bool:
    if kind == RAY_JOB:
        return status.get("jobDeploymentStatus") == "Running"
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    return ready is not None and ready.get("status") == "True"


def parse_time(text: str | None) -> float | None:
    """An annotation's RFC 3339 time as seconds since the epoch; None when absent or not one."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def store_reachable(store: tuple[str, int] | None, timeout_s: float = 2.0) -> bool:
    """Whether a TCP connection to the checkpoint store succeeds (no store: always)."""
    if store is None:
        return True
    try:
        with socket.create_connection(store, timeout=timeout_s):
            return True
    except OSError:
        return False


class Checkpointer:
    """Plays the workload's checkpoints: annotates each Running shard resource with its newest
    checkpoint time once per interval, if the checkpoint store can be reached.

    The interval is the most work a copy may lose, so a checkpoint is attempted from `lead_s`
    before it is over: a pass that comes late, or a store that answers slowly or not at the
    first try (over a lossy link a lost SYN alone costs a second), still lands it in time."""

    def __init__(
        self,
        default_interval_s: float,
        store: tuple[str, int] | None = None,
        clock: Any = time.time,
        lead_s: float = 0.0,
    ) -> None:
        if lead_s < 0:
            raise ValueError("the checkpoint lead must not be negative")
        self.default_interval_s = default_interval_s
        self.store = store
        self.clock = clock
        self.lead_s = lead_s
        self.running_since: dict[str, float] = {}

    def due(self, resource: Mapping[str, Any], kind: ResourceKind, now: float) -> bool:
        if not _running(kind, resource.get("status") or {}):
            return False
        metadata = resource["metadata"]
        if waits_for_handover(resource):
            # Ready to take over, doing no work: its work and its interval start when let start.
            self.running_since.pop(metadata["uid"], None)
            return False
        since = self.running_since.setdefault(metadata["uid"], now)
        annotations = metadata.get("annotations") or {}
        last = parse_time(annotations.get(SHARD_LABELS.last_checkpoint_annotation))
        requested = parse_time(annotations.get(SHARD_LABELS.checkpoint_request_annotation))
        if requested is not None and (last is None or last < requested):
            return True  # its replacement runs: the last checkpoint, now
        # A checkpoint older than this copy (carried over by a move) does not count as its own.
        reference = since if last is None or last < since else last
        interval = _checkpoint_interval(resource) or self.default_interval_s
        return now - reference >= interval - min(self.lead_s, interval / 2)

    def step(self, api_client: client.ApiClient, namespace: str | None) -> list[str]:
        """Checkpoints every Running shard resource that is due; returns those checkpointed."""
        api = client.CustomObjectsApi(api_client)
        done: list[str] = []
        reachable: bool | None = None
        for kind in (RAY_JOB, RAY_SERVICE):
            for resource in _managed(api, kind, namespace, MANAGED_SELECTOR):
                now = self.clock()
                if not self.due(resource, kind, now):
                    continue
                if reachable is None:
                    reachable = store_reachable(self.store)
                if not reachable:
                    return done
                metadata = resource["metadata"]
                record_checkpoint(
                    api_client, kind, metadata["namespace"], metadata["name"],
                    datetime.fromtimestamp(now, UTC),
                )  # fmt: skip
                done.append(f"{kind.kind}/{metadata['namespace']}/{metadata['name']}")
        return done


def run(
    api_client: client.ApiClient,
    stop: threading.Event,
    namespace: str | None = None,
    interval_s: float = 0.2,
    checkpointer: Checkpointer | None = None,
) -> None:
    """Starts shard resources up to Running, as they appear, and (with a checkpointer) plays
    their checkpoints, until `stop` is set."""
    while not stop.is_set():
        try:
            for changed in start(api_client, namespace):
                log.info("advanced %s", changed)
            if checkpointer is not None:
                for changed in checkpointer.step(api_client, namespace):
                    log.info("checkpointed %s", changed)
        except client.ApiException as error:
            log.warning("listing or patching failed: %s", error.reason)
        except urllib3.exceptions.HTTPError as error:
            log.warning("the member did not answer: %s", error)
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
    parser.add_argument(
        "--checkpoints",
        action="store_true",
        help="also play the workload's checkpoints (continuum.dev/last-checkpoint)",
    )
    parser.add_argument(
        "--checkpoint-interval",
        type=float,
        default=60.0,
        help="seconds between checkpoints of a shard whose pods do not say",
    )
    parser.add_argument(
        "--checkpoint-lead",
        type=float,
        default=2.0,
        help="seconds before its interval is over that a checkpoint is attempted, so that a "
        "slow pass or store keeps every gap within the interval",
    )
    parser.add_argument(
        "--checkpoint-store",
        metavar="HOST:PORT",
        help="checkpoint only when a TCP connection to this address succeeds",
    )
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between passes")
    parser.add_argument("--lifetime-s", type=float, help="stop after this many seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    store = None
    if args.checkpoint_store:
        host, _, port = args.checkpoint_store.rpartition(":")
        store = (host, int(port))
    api_client = config.new_client_from_config(config_file=args.kubeconfig)
    try:
        if args.to:
            for changed in advance(api_client, args.namespace, args.to):
                print(changed)
            return
        stop = threading.Event()
        if args.lifetime_s is not None:
            timer = threading.Timer(args.lifetime_s, stop.set)
            timer.daemon = True
            timer.start()
        checkpointer = (
            Checkpointer(args.checkpoint_interval, store, lead_s=args.checkpoint_lead)
            if args.checkpoints
            else None
        )
        try:
            run(api_client, stop, args.namespace, args.interval, checkpointer)
        except KeyboardInterrupt:
            stop.set()
    finally:
        api_client.close()


if __name__ == "__main__":
    main()
