"""The operator's latency and throughput on the testbed, as a benchmark (not a timed test).

    .venv/bin/python e2e/bench_operator.py --jobs 200 --members 3 --json F --markdown F

It starts (or reuses, with --dir) a testbed, registers the members, runs
`continuum operator run` as a separate process, creates MLJobs in the hub as fast as the API
server takes them, and watches the hub's MLJobs and Placements and the members' RayJobs. Per
job it records the time from its create request to its Placement (ADDED in the hub's watch),
to its shard resources (ADDED in the member's watch), and to a status that says where its
shards went. It also reports the operator's peak resident memory, the CPU time each server
spent in the burst, and whether every job was placed and deployed (no backlog) within
--timeout. The burst starts once the operator's /readyz says it is ready.

With --cpus N (root), the testbed's servers, the operator and the benchmark share N CPUs for
the run, through a cgroup quota: the same benchmark on a slower machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from math import inf
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import urllib3
from kubernetes import client, config, watch

from e2e.binaries import kubectl
from e2e.registration import register_members
from e2e.testbed import HUB, ClusterInfo, Testbed, free_port

REPO = Path(__file__).resolve().parent.parent


def job_manifest(index: int, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "continuum.dev/v1alpha1",
        "kind": "MLJob",
        "metadata": {"name": f"bench-{index:04d}", "namespace": namespace},
        "spec": {
            "mode": "Training",
            "tenant": "research" if index % 2 else "production",
            "shards": {"count": 1, "resources": {"cpu": "100m", "memory": "128Mi"}},
            "ray": {"image": "rayproject/ray:2.50.0", "entrypoint": "python t.py",
                    "workersPerShard": 0},
        },
    }  # fmt: skip


class Watcher(threading.Thread):
    """Records, per job, the first time one kind's watch in one cluster shows what `job_of`
    looks for: it takes the event type and the object, and names the job, or None if this
    event is not it."""

    def __init__(self, kubeconfig: Path, namespace: str, group: str, version: str, plural: str,
                 job_of: Any, seen: dict[str, float], lock: threading.Lock,
                 where: tuple[str, dict[str, str]] | None = None) -> None:  # fmt: skip
        """`where`: this cluster's name, and a map in which to note it for each job seen."""
        super().__init__(daemon=True)
        self.api = config.new_client_from_config(config_file=str(kubeconfig))
        self.args = (group, version, namespace, plural)
        self.job_of, self.seen, self.lock, self.where = job_of, seen, lock, where
        self.stream = watch.Watch()

    def run(self) -> None:
        objects = client.CustomObjectsApi(self.api)
        try:
            for event in self.stream.stream(
                objects.list_namespaced_custom_object, *self.args, timeout_seconds=900
            ):
                job = self.job_of(event["type"], event["object"])
                if job is None:
                    continue
                now = time.monotonic()
                with self.lock:
                    self.seen.setdefault(job, now)
                    if self.where is not None:
                        self.where[1].setdefault(job, self.where[0])
        except urllib3.exceptions.ProtocolError:
            pass  # the API server ended the watch as the benchmark stopped it

    def stop(self) -> None:
        self.stream.stop()


def _reports_placed(job: dict[str, Any]) -> bool:
    """The MLJob's status, as `kubectl get` shows it, says where its shards went."""
    status = job.get("status") or {}
    return status.get("phase") not in (None, "Pending", "Admitted") and bool(status.get("clusters"))


def _rss_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "APPLY")


def hub_writes(kubeconfig: Path) -> Counter[str]:
    """The write requests the hub's API server has served so far, by verb and resource: what
    each job costs the hub, counted by the hub."""
    counts: Counter[str] = Counter()
    for line in kubectl(kubeconfig, "get", "--raw", "/metrics").stdout.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if labels.get("verb") not in WRITE_VERBS:
            continue
        resource = "/".join(part for part in (labels["resource"], labels["subresource"]) if part)
        counts[f"{labels['verb']} {resource}"] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _summary(latencies: Sequence[float]) -> dict[str, float | None]:
    if not latencies:
        return {"p50_s": None, "p99_s": None, "max_s": None}
    return {
        "p50_s": round(statistics.median(latencies), 3),
        "p99_s": round(_percentile(latencies, 0.99), 3),
        "max_s": round(max(latencies), 3),
    }


def operator_counters(port: int) -> dict[str, float]:
    """The operator's own counters at the end of the run: the cycles, passes and conflicts
    behind the latencies."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    wanted = (
        "continuum_reconciles_total",
        "continuum_write_conflicts_total",
        "continuum_scheduling_cycle_seconds_count",
        "continuum_scheduling_cycle_seconds_sum",
    )
    counters: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(wanted):
            name, _, value = line.rpartition(" ")
            counters[name] = round(float(value), 3)
    return counters


READY_TIMEOUT_S = 60.0


def wait_ready(port: int, operator: subprocess.Popen[bytes], timeout: float) -> float:
    """Waits until the operator's /readyz says it acts on a full view (the hub listed, every
    member probed and mirrored), so that the burst does not measure its start-up; returns
    when."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if operator.poll() is not None:
            raise RuntimeError(f"the operator exited with {operator.returncode} before ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
                if reply.status == 200:
                    return time.monotonic()
        except urllib.error.HTTPError as error:
            last = error.read().decode().strip()
        except OSError as error:  # not listening yet
            last = str(error)
        time.sleep(0.1)
    raise RuntimeError(f"the operator was not ready after {timeout:.0f} s: {last}")


CGROUP_ROOT = Path("/sys/fs/cgroup")
# Short quota periods: a throttled server waits milliseconds, not most of a 100 ms period.
CPU_PERIOD_US = 10_000


def _cpu_cgroup(pid: int | str) -> Path:
    """The cgroup whose CPU quota applies to `pid`: cgroup v1's cpu controller, else v2's."""
    v1 = CGROUP_ROOT / "cpu"
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if v1.is_dir() and "cpu" in controllers.split(","):
            return v1 / path.lstrip("/")
        if not v1.is_dir() and controllers == "":
            return CGROUP_ROOT / path.lstrip("/")
    raise RuntimeError(f"no cpu cgroup for process {pid}")


@contextlib.contextmanager
def cpu_limit(cpus: float | None, pids: Sequence[int]) -> Iterator[None]:
    """Holds the servers in `pids`, this process and the operator it starts to `cpus` CPUs, in
    a cgroup of their own, to see how the goals hold on a slower machine; each process goes
    back to its own cgroup afterwards. Needs root, and cgroup v1's cpu controller or cgroup v2
    with cpu enabled."""
    if cpus is None:
        yield
        return
    members = [*pids, os.getpid()]
    origins = {pid: _cpu_cgroup(pid) for pid in members}
    group = _cpu_cgroup("self") / f"continuum-bench-{os.getpid()}"
    group.mkdir()
    quota_us = int(cpus * CPU_PERIOD_US)
    try:
        if (group / "cpu.cfs_quota_us").exists():
            (group / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota_us))
        else:
            (group / "cpu.max").write_text(f"{quota_us} {CPU_PERIOD_US}")
        for pid in members:
            (group / "cgroup.procs").write_text(str(pid))
        yield
    finally:
        for pid, origin in origins.items():
            with contextlib.suppress(OSError):  # the process is gone
                (origin / "cgroup.procs").write_text(str(pid))
        group.rmdir()


def run_bench(
    clusters: list[ClusterInfo],
    jobs: int,
    timeout: float,
    log: Path,
    servers: dict[str, dict[str, int]],
) -> dict[str, Any]:
    """`servers`: per cluster, its servers' pids, whose CPU time over the burst is reported."""
    hub, members = clusters[0], clusters[1:]
    namespace = f"bench-{int(time.time())}"
    register_members(clusters, None)
    hub_api = config.new_client_from_config(config_file=str(hub.kubeconfig))
    core, objects = client.CoreV1Api(hub_api), client.CustomObjectsApi(hub_api)
    tenants = (REPO / "examples" / "tenants.yaml").read_text()
    kubectl(hub.kubeconfig, "apply", "-f", "-", stdin=tenants)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    except client.ApiException as error:
        if error.status != 409:
            raise

    lock = threading.Lock()
    placed: dict[str, float] = {}
    reported: dict[str, float] = {}
    deployed: dict[str, float] = {}
    member_of: dict[str, str] = {}
    watchers = [
        Watcher(
            hub.kubeconfig,
            namespace,
            "continuum.dev",
            "v1alpha1",
            "placements",
            lambda event, obj: obj["spec"]["jobRef"]["name"] if event == "ADDED" else None,
            placed,
            lock,
        ),
        Watcher(
            hub.kubeconfig,
            namespace,
            "continuum.dev",
            "v1alpha1",
            "mljobs",
            lambda event, obj: obj["metadata"]["name"] if _reports_placed(obj) else None,
            reported,
            lock,
        ),
        *(
            Watcher(
                member.kubeconfig,
                namespace,
                "ray.io",
                "v1",
                "rayjobs",
                lambda event, obj: (
                    obj["metadata"]["annotations"]["continuum.dev/job-name"]
                    if event == "ADDED"
                    else None
                ),
                deployed,
                lock,
                (member.name, member_of),
            )
            for member in members
        ),
    ]
    for watcher in watchers:
        watcher.start()
    output = log.open("ab")
    metrics_port = free_port()
    launched = time.monotonic()
    operator = subprocess.Popen(
        [sys.executable, "-m", "continuum.operator.cli", "operator", "run",
         "--kubeconfig", str(hub.kubeconfig), "--cycle-interval", "1",
         "--metrics-port", str(metrics_port)],
        stdout=output, stderr=subprocess.STDOUT, cwd=REPO,
        # A session of its own, as the servers have: with the kernel's autogroup scheduling,
        # the CPU is shared per session, and in a pod the operator does not share its share
        # with this benchmark's client either.
        start_new_session=True,
    )  # fmt: skip
    try:
        ready_s = wait_ready(metrics_port, operator, READY_TIMEOUT_S) - launched
        submitted: dict[str, float] = {}
        # Who spends the two cores during the burst: the operator, the API servers, or this
        # benchmark's own client (its creates and watches).
        counted = {"operator": operator.pid} | {
            f"{cluster} {server}": pid
            for cluster, pids in servers.items()
            for server, pid in pids.items()
        }
        cpu_before = {name: _cpu_s(pid) for name, pid in counted.items()}
        client_cpu_before = time.process_time()
        writes_before = hub_writes(hub.kubeconfig)
        started = time.monotonic()
        for index in range(jobs):
            manifest = job_manifest(index, namespace)
            submitted[manifest["metadata"]["name"]] = time.monotonic()
            objects.create_namespaced_custom_object(
                "continuum.dev", "v1alpha1", namespace, "mljobs", manifest
            )
        submit_s = time.monotonic() - started
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with lock:
                if min(len(deployed), len(placed), len(reported)) >= jobs:
                    break
            time.sleep(0.2)
        drained_s = time.monotonic() - started
        cpu_s = {name: round(_cpu_s(pid) - cpu_before[name], 2) for name, pid in counted.items()}
        cpu_s["benchmark client"] = round(time.process_time() - client_cpu_before, 2)
        writes = hub_writes(hub.kubeconfig) - writes_before
        rss_mb = _rss_peak_mb(operator.pid)
        counters = operator_counters(metrics_port)
    finally:
        # The jobs go while the operator runs, so that their finalizers are released.
        kubectl(hub.kubeconfig, "delete", "mljobs", "--all", "-n", namespace, "--timeout=120s",
                check=False)  # fmt: skip
        operator.terminate()
        operator.wait(timeout=60)
        for watcher in watchers:
            watcher.stop()
        kubectl(hub.kubeconfig, "delete", "namespace", namespace, "--wait=false", check=False)
    with lock:
        to_placement = [placed[name] - t for name, t in submitted.items() if name in placed]
        to_shards = [deployed[name] - t for name, t in submitted.items() if name in deployed]
        to_status = [reported[name] - t for name, t in submitted.items() if name in reported]

        # Which jobs make the tail, and when in the burst they came: the start-up, the
        # burst's first seconds, or a stall later on. A job never seen counts as slowest.
        def worst_s(name: str) -> float:
            return max(placed.get(name, inf), deployed.get(name, inf)) - submitted[name]

        def seen_after(seen: dict[str, float], name: str) -> float | None:
            return round(seen[name] - submitted[name], 3) if name in seen else None

        slowest = [
            {"job": name, "submitted_after_s": round(submitted[name] - started, 3),
             "to_placement_s": seen_after(placed, name), "to_shards_s": seen_after(deployed, name),
             "member": member_of.get(name)}
            for name in sorted(submitted, key=worst_s, reverse=True)[:5]
        ]  # fmt: skip
    # The MemberClusters' heartbeats and the like make the rows under 0.05 per job.
    writes_per_job = {
        kind: round(count / jobs, 2)
        for kind, count in sorted(writes.items())
        if count >= 0.05 * jobs
    }
    return {
        "jobs": jobs,
        "members": len(members),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "operator_ready_after_s": round(ready_s, 2),
        "submit_s": round(submit_s, 2),
        "all_deployed_after_s": round(drained_s, 2),
        "placed": len(to_placement),
        "deployed": len(to_shards),
        "backlog": jobs - len(to_shards),
        "apply_to_placement": _summary(to_placement),
        "apply_to_shard_resources": _summary(to_shards),
        "apply_to_status_placed": _summary(to_status),
        "operator_peak_rss_mb": round(rss_mb, 1),
        "cpu_s_during_burst": cpu_s,
        "hub_writes_per_job": writes_per_job,
        "slowest_jobs": slowest,
        "operator_counters": counters,
    }


def markdown(result: dict[str, Any]) -> str:
    placement, shards = result["apply_to_placement"], result["apply_to_shard_resources"]
    status = result["apply_to_status_placed"]
    return "\n".join([
        f"Operator benchmark: {result['jobs']} MLJobs over {result['members']} members, "
        f"{result['cpus']} CPUs",
        "",
        "| measure | p50 s | p99 s | max s | goal |",
        "|---|---|---|---|---|",
        f"| apply to Placement | {placement['p50_s']} | {placement['p99_s']} | "
        f"{placement['max_s']} | p99 <= 1 s |",
        f"| apply to shard resources | {shards['p50_s']} | {shards['p99_s']} | "
        f"{shards['max_s']} | p99 <= 2 s |",
        f"| apply to status saying where | {status['p50_s']} | {status['p99_s']} | "
        f"{status['max_s']} | none set |",
        "",
        f"- placed {result['placed']}, deployed {result['deployed']}, backlog {result['backlog']}",
        f"- submitted in {result['submit_s']} s; "
        f"all deployed after {result['all_deployed_after_s']} s",
        f"- operator ready {result['operator_ready_after_s']} s after its start; "
        f"peak RSS {result['operator_peak_rss_mb']} MiB",
        "- CPU seconds from the first create until all were deployed: "
        + ", ".join(f"{name} {value}" for name, value in result["cpu_s_during_burst"].items()),
        "- hub writes per job: "
        + ", ".join(f"{kind} {rate}" for kind, rate in result["hub_writes_per_job"].items()),
        *(f"- `{name}` {value}" for name, value in result["operator_counters"].items()),
        "",
    ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    # Stopped from outside, it still deletes its jobs and stops its operator (the finally blocks).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--dir", type=Path, help="a testbed folder to use (kept running)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument(
        "--cpus",
        type=float,
        help="hold the testbed, the operator and the benchmark to this many CPUs (a cgroup "
        "quota; needs root): how the goals hold on a slower machine",
    )
    args = parser.parse_args(argv)
    state = args.dir or Path("/tmp") / f"continuum-bench-{int(time.time())}"
    testbed = Testbed(state)
    clusters = testbed.up(args.members)
    assert clusters[0].name == HUB
    servers = testbed.process_ids()
    try:
        with cpu_limit(args.cpus, [pid for pids in servers.values() for pid in pids.values()]):
            result = run_bench(clusters, args.jobs, args.timeout, state / "operator.log", servers)
        result["cpus"] = args.cpus or os.cpu_count()
    finally:
        if args.dir is None:
            testbed.down()
    text = markdown(result)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(text)
    return 0 if result["backlog"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
