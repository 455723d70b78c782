"""Watches one member's shard resources and writes what it sees, timestamped, as JSON lines.

    python -m e2e.shard_watch --kubeconfig member-1.kubeconfig --member member-1 \\
        --namespace NS --out FILE [--lifetime-s S]

The fault benchmark (e2e/bench_faults.py) runs one per member AT the member's site (in its
network namespace), so that it still sees a partitioned member, and so that a `down` stops it
with the site: what it writes is the ground truth of which copies of which shard ran where.
Per kind (RayJob, RayService), a thread lists the managed resources (a `snapshot` record: what
the member holds then) and watches from there (an `event` record per change), listing again
after any error. Each record has the wall-clock time `t` at which it was seen; items carry the
job, shard, uid, whether it runs (KubeRay's status says Running and, for a RayJob, a Pull
member's agent has not fenced it: `spec.suspend`), and the newest checkpoint time.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO, cast

import urllib3
from kubernetes import client, config, watch

from continuum.operator.api.shard_resources import (
    MANAGED_SELECTOR,
    RESOURCE_KINDS,
    SHARD_LABELS,
    ResourceKind,
)
from continuum.operator.reconcile.kuberay import waits_for_handover
from e2e.fault_metrics import shard_running
from e2e.kuberay_sim import parse_time

RETRY_S = 0.5
WATCH_S = 30


def item(kind: ResourceKind, resource: Mapping[str, Any]) -> dict[str, Any]:
    metadata = resource["metadata"]
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    return {
        "kind": kind.kind,
        "name": metadata["name"],
        "uid": metadata["uid"],
        "job": annotations.get(SHARD_LABELS.job_name_annotation, labels.get(SHARD_LABELS.job)),
        "shard": int(labels.get(SHARD_LABELS.shard, 0)),
        "epoch": labels.get(SHARD_LABELS.epoch),
        "running": shard_running(kind.kind, resource.get("status"), resource.get("spec")),
        "fenced": bool((resource.get("spec") or {}).get("suspend")),
        "deleting": bool(metadata.get("deletionTimestamp")),
        "checkpoint_t": parse_time(annotations.get(SHARD_LABELS.last_checkpoint_annotation)),
        "checkpoint_requested_t": parse_time(
            annotations.get(SHARD_LABELS.checkpoint_request_annotation)
        ),
        "waiting": waits_for_handover(resource),
    }


class Recorder:
    def __init__(self, output: TextIO, member: str) -> None:
        self.output, self.member = output, member
        self.lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        with self.lock:
            self.output.write(json.dumps({"t": time.time(), "member": self.member, **record}))
            self.output.write("\n")
            self.output.flush()


Listing = Callable[..., Any]


def follow(
    listing: Listing,
    arguments: Sequence[str],
    on_snapshot: Callable[[list[dict[str, Any]]], None],
    on_event: Callable[[str, dict[str, Any]], None],
    stop: threading.Event,
    selector: str | None = None,
) -> None:
    """Lists (`on_snapshot` with the items) then watches (`on_event` per change) with the
    custom-objects call `listing`, listing again after any error, until `stop` is set."""
    extra = {} if selector is None else {"label_selector": selector}
    while not stop.is_set():
        stream = watch.Watch()
        try:
            found = cast("dict[str, Any]", listing(*arguments, _request_timeout=10, **extra))
            on_snapshot(found["items"])
            version = found["metadata"]["resourceVersion"]
            for event in stream.stream(
                listing, *arguments, resource_version=version, timeout_seconds=WATCH_S,
                _request_timeout=WATCH_S + 10, **extra,
            ):  # fmt: skip
                if stop.is_set():
                    break
                if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    on_event(event["type"], event["object"])
                elif event["type"] == "ERROR":
                    break
        except (client.ApiException, urllib3.exceptions.HTTPError, OSError, ValueError):
            stop.wait(RETRY_S)
        finally:
            stream.stop()


def watch_kind(
    api: client.CustomObjectsApi,
    kind: ResourceKind,
    namespace: str,
    recorder: Recorder,
    stop: threading.Event,
) -> None:
    follow(
        api.list_namespaced_custom_object,
        (kind.group, kind.version, namespace, kind.plural),
        lambda items: recorder.write({"record": "snapshot", "kind": kind.kind,
                                      "items": [item(kind, found) for found in items]}),
        lambda type_, found: recorder.write({"record": "event", "type": type_,
                                             "item": item(kind, found)}),
        stop,
        MANAGED_SELECTOR,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shard_watch", description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--member", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--lifetime-s", type=float, default=3600.0)
    args = parser.parse_args(argv)
    api = client.CustomObjectsApi(config.new_client_from_config(config_file=args.kubeconfig))
    stop = threading.Event()
    with args.out.open("a") as output:
        recorder = Recorder(output, args.member)
        threads = [
            threading.Thread(
                target=watch_kind, args=(api, kind, args.namespace, recorder, stop), daemon=True
            )
            for kind in RESOURCE_KINDS
        ]
        for thread in threads:
            thread.start()
        stop.wait(args.lifetime_s)
        stop.set()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
