"""How long an MLJob takes to run on real Ray: from `kubectl apply` on the hub to a RayJob whose
Ray job runs, with the real KubeRay, kube-scheduler and the node agent's pods, in a member at its
site. Issue 15's target: p99 at most 30 s on this machine.

    python -m e2e.bench_realray [--jobs 10] [--dir DIR] [--json F] [--markdown F]

Root only (sites). It brings up a hub and one member (at frankfurt) with `--sites --kuberay`,
registers the member, runs the operator, then, one job at a time so that each is timed alone on
the two cores, applies a one-shard Training MLJob whose entrypoint sleeps, and records from the
apply: the RayJob in the member (placed and deployed), its head pod Ready (Ray's head up), the
RayJob's deployment Running (KubeRay made its submitter Job), its Ray job RUNNING (the submitter
pod ran `ray job submit` and the dashboard says the entrypoint runs), and the shard Running in
the MLJob's status on the hub. Then it deletes the job and waits
until its pods are gone. Memory is read at each job's Running: the member's servers, and the
processes of the job's pods.

The stand-in's figure for the same path (apply to shard Running with e2e/kuberay_sim.py, no
pods) is bench_operator's; the report puts the target beside the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from kubernetes import client, config

from e2e import pod_network
from e2e.bench_stats import summary
from e2e.binaries import kubectl
from e2e.mljobs import training_job
from e2e.operator_process import REPO, Operator
from e2e.registration import register_members
from e2e.sites import pod_namespaces
from e2e.testbed import HUB, Testbed, member_sites

TARGET_P99_S = 30.0
STAGES = ("rayjob_created", "head_ready", "rayjob_running", "ray_job_running", "hub_shard_running")
POLL_S = 0.2
SLEEPER = 'python -c "import time; time.sleep(3600)"'


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


class Run:
    def __init__(self, hub: client.ApiClient, member: client.ApiClient, timeout_s: float) -> None:
        self.hub = client.CustomObjectsApi(hub)
        self.member_objects = client.CustomObjectsApi(member)
        self.member_core = client.CoreV1Api(member)
        self.timeout_s = timeout_s

    def _rayjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        listed = cast(
            "dict[str, Any]",
            self.member_objects.list_namespaced_custom_object(
                "ray.io", "v1", namespace, "rayjobs", label_selector=f"continuum.dev/job={name}"
            ),
        )
        items: list[dict[str, Any]] = listed["items"]
        return items[0] if items else None

    def _status(self, namespace: str, name: str, field: str) -> Any:
        return ((self._rayjob(namespace, name) or {}).get("status") or {}).get(field)

    def _head_ready(self, namespace: str) -> bool:
        pods = self.member_core.list_namespaced_pod(
            namespace, label_selector="ray.io/node-type=head"
        ).items
        return any(
            any(
                c.type == "Ready" and c.status == "True"
                for c in (pod.status.conditions if pod.status else None) or []
            )
            for pod in pods
        )

    def _hub_running(self, namespace: str, name: str) -> bool:
        job = cast(
            "dict[str, Any]",
            self.hub.get_namespaced_custom_object(
                "continuum.dev", "v1alpha1", namespace, "mljobs", name
            ),
        )
        shards = (job.get("status") or {}).get("shards") or []
        return any(shard.get("state") == "Running" for shard in shards)

    def one(
        self, namespace: str, name: str, memory: Callable[[], dict[str, float]]
    ) -> dict[str, Any]:
        self.hub.create_namespaced_custom_object(
            "continuum.dev",
            "v1alpha1",
            namespace,
            "mljobs",
            training_job(
                name, namespace, None, resources={"cpu": "1", "memory": "2Gi"}, entrypoint=SLEEPER
            ),
        )
        started = time.monotonic()
        seen: dict[str, float] = {}
        checks: dict[str, Callable[[], bool]] = {
            "rayjob_created": lambda: self._rayjob(namespace, name) is not None,
            "head_ready": lambda: self._head_ready(namespace),
            "rayjob_running": lambda: (
                self._status(namespace, name, "jobDeploymentStatus") == "Running"
            ),
            "ray_job_running": lambda: self._status(namespace, name, "jobStatus") == "RUNNING",
            "hub_shard_running": lambda: self._hub_running(namespace, name),
        }
        while len(seen) < len(STAGES) and time.monotonic() - started < self.timeout_s:
            for stage, check in checks.items():
                if stage not in seen and check():
                    seen[stage] = round(time.monotonic() - started, 3)
            time.sleep(POLL_S)
        record: dict[str, Any] = {"job": name, **{stage: seen.get(stage) for stage in STAGES}}
        record["memory_mib"] = memory()
        return record

    def delete(self, namespace: str, name: str, pods_left: Callable[[], int]) -> float:
        started = time.monotonic()
        self.hub.delete_namespaced_custom_object(
            "continuum.dev", "v1alpha1", namespace, "mljobs", name
        )
        while pods_left() and time.monotonic() - started < self.timeout_s:
            time.sleep(POLL_S)
        return round(time.monotonic() - started, 3)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Real Ray: from apply to running, one job at a time ({report['jobs']} jobs)",
        "",
        f"Target: RayJob Running p99 at most {TARGET_P99_S:g} s.",
        "",
        "| stage (s from apply) | p50 | p99 | max | missing |",
        "|---|---|---|---|---|",
    ]
    for stage in STAGES:
        figures = report["stages"][stage]
        lines.append(
            f"| {stage} | {figures['p50_s']} | {figures['p99_s']} | {figures['max_s']} "
            f"| {figures['missing']} |"
        )
    lines += [
        "",
        f"Memory at Running (MiB, median over jobs): member servers "
        f"{report['memory_mib']['member_servers']}, the job's pods "
        f"{report['memory_mib']['job_pods']}.",
        f"Delete to pods gone (s): p50 {report['delete_s']['p50_s']}, "
        f"p99 {report['delete_s']['p99_s']}.",
        "",
    ]
    return "\n".join(lines)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_realray", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--dir", type=Path, help="the testbed's folder (default: a new one)")
    parser.add_argument("--timeout-s", type=float, default=180.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    directory = args.dir or Path(tempfile.mkdtemp(prefix="bench-realray-"))
    testbed = Testbed(directory)
    clusters = testbed.up(1, member_sites(1, None), kuberay=True)
    hub_info = next(c for c in clusters if c.name == HUB)
    member_info = next(c for c in clusters if c.name != HUB)
    site = member_sites(1, None)[0]
    register_members(clusters, None)
    hub = config.new_client_from_config(config_file=str(hub_info.kubeconfig))
    member = config.new_client_from_config(config_file=str(member_info.kubeconfig))
    operator = Operator(hub_info.kubeconfig, directory / "operator.log")
    records: list[dict[str, Any]] = []
    deletes: list[float] = []
    try:
        kubectl(hub_info.kubeconfig, "apply", "-f", str(REPO / "examples" / "tenants.yaml"))
        operator.start()
        namespace = f"bench-{uuid.uuid4().hex[:6]}"
        client.CoreV1Api(hub).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
        )
        run = Run(hub, member, args.timeout_s)
        servers = list(testbed.process_ids()[member_info.name].values())

        def memory() -> dict[str, float]:
            pods = [pid for ns in pod_namespaces(site) for pid in pod_network.pids_in(ns)]
            return {"member_servers": rss_mib(servers), "job_pods": rss_mib(pods)}

        for index in range(args.jobs):
            record = run.one(namespace, f"job-{index}", memory)
            records.append(record)
            print(json.dumps(record), flush=True)
            deletes.append(run.delete(namespace, f"job-{index}", lambda: len(pod_namespaces(site))))
    finally:
        if operator.process is not None:
            operator.stop()
        hub.close()
        member.close()
        testbed.down()
    stages = {}
    for stage in STAGES:
        values = [r[stage] for r in records if r[stage] is not None]
        stages[stage] = {**summary(values), "missing": len(records) - len(values)}
    report = {
        "jobs": len(records),
        "target_p99_s": TARGET_P99_S,
        "stages": stages,
        "memory_mib": {
            kind: summary([r["memory_mib"][kind] for r in records])["p50_s"]
            for kind in ("member_servers", "job_pods")
        },
        "delete_s": summary(deletes),
        "per_job": records,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
