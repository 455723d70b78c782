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

With --preload N, N jobs are created and deployed first, so that the burst meets a hub that
already holds work. With --hang-member NAME, that member's kube-apiserver is stopped (SIGSTOP:
its port accepts connections, nothing answers) after the preload and continued after the
burst's wait, in every case; the report then splits the burst by where each job's shard went
first (e2e/bench_hang.py): a healthy member, or the hung one, whose jobs must be placed again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from math import inf
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import urllib3
from kubernetes import client, config, watch

from e2e.bench_hang import (
    ChangeLog,
    ProbePoller,
    Progress,
    condition_status,
    hang_markdown,
    hang_report,
    healthy_done,
    hung_apiserver,
    hung_done,
    placed_clusters,
    probe_summary,
)
from e2e.bench_stats import summary
from e2e.binaries import kubectl
from e2e.registration import register_members
from e2e.testbed import HUB, ClusterInfo, Testbed, free_port

REPO = Path(__file__).resolve().parent.parent


def job_manifest(index: int, namespace: str, prefix: str = "bench") -> dict[str, Any]:
    return {
        "apiVersion": "continuum.dev/v1alpha1",
        "kind": "MLJob",
        "metadata": {"name": f"{prefix}-{index:04d}", "namespace": namespace},
        "spec": {
            "mode": "Training",
            "tenant": "research" if index % 2 else "production",
            "shards": {"count": 1, "resources": {"cpu": "100m", "memory": "128Mi"}},
            "ray": {"image": "rayproject/ray:2.50.0", "entrypoint": "python t.py",
                    "workersPerShard": 0},
        },
    }  # fmt: skip


Observer = Callable[[str, dict[str, Any], float], None]


class Watcher(threading.Thread):
    """Records, per job, the first time one kind's watch in one cluster shows what `job_of`
    looks for: it takes the event type and the object, and names the job, or None if this
    event is not it."""

    def __init__(self, kubeconfig: Path, namespace: str | None, group: str, version: str,
                 plural: str, job_of: Any, seen: dict[str, float], lock: threading.Lock,
                 where: tuple[str, dict[str, str]] | None = None,
                 observe: Observer | None = None) -> None:  # fmt: skip
        """`namespace` None: a cluster-scoped kind. `where`: this cluster's name, and a map in
        which to note it for each job seen. `observe`: also given every event (its type, the
        object and when), under the lock."""
        super().__init__(daemon=True)
        self.api = config.new_client_from_config(config_file=str(kubeconfig))
        self.namespace = namespace
        self.args = (group, version) + ((namespace,) if namespace else ()) + (plural,)
        self.job_of, self.seen, self.lock, self.where = job_of, seen, lock, where
        self.observe = observe
        self.stream = watch.Watch()

    def run(self) -> None:
        objects = client.CustomObjectsApi(self.api)
        listing = (
            objects.list_namespaced_custom_object
            if self.namespace
            else objects.list_cluster_custom_object
        )
        try:
            for event in self.stream.stream(listing, *self.args, timeout_seconds=900):
                now = time.monotonic()
                if self.observe is not None:
                    with self.lock:
                        self.observe(event["type"], event["object"], now)
                job = self.job_of(event["type"], event["object"])
                if job is None:
                    continue
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
        "continuum_gc_pause_seconds_count",
        "continuum_gc_pause_seconds_sum",
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


@dataclass(frozen=True)
class HangPlan:
    """Stop `member`'s API server after the preload, for the burst; once the jobs sent
    elsewhere are done, wait at most `wait_s` more for those sent to it to be placed again."""

    testbed: Testbed
    member: str
    wait_s: float


def wait_until(done: Callable[[], bool], lock: threading.Lock, deadline: float) -> bool:
    """Checks `done` under the lock every 0.2 s until it holds (True) or the deadline passes."""
    while True:
        with lock:
            if done():
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def preload_jobs(
    objects: client.CustomObjectsApi,
    namespace: str,
    count: int,
    seen: Progress,
    lock: threading.Lock,
    timeout: float,
) -> tuple[list[str], float]:
    """Creates `count` jobs and waits until each is placed and has its shard resources, so
    that the burst meets a hub holding work; returns their names and how long it took."""
    started = time.monotonic()
    names = []
    for index in range(count):
        manifest = job_manifest(index, namespace, prefix="preload")
        objects.create_namespaced_custom_object(
            "continuum.dev", "v1alpha1", namespace, "mljobs", manifest
        )
        names.append(manifest["metadata"]["name"])
    if not wait_until(
        lambda: all(name in seen.placed and name in seen.deployed for name in names),
        lock,
        started + timeout,
    ):
        with lock:
            deployed = sum(1 for name in names if name in seen.deployed)
        raise RuntimeError(f"preload: {deployed} of {count} jobs deployed after {timeout:.0f} s")
    return names, time.monotonic() - started


# How long a hung member may stay stopped beyond the burst's own bounds, should the benchmark
# die without continuing it: then the watchdog does.
HANG_MARGIN_S = 300.0


def run_bench(
    clusters: list[ClusterInfo],
    jobs: int,
    timeout: float,
    log: Path,
    servers: dict[str, dict[str, int]],
    preload: int = 0,
    hang: HangPlan | None = None,
) -> dict[str, Any]:
    """`servers`: per cluster, its servers' pids, whose CPU time over the burst is reported."""
    hub, members = clusters[0], clusters[1:]
    if hang is not None and hang.member not in {member.name for member in members}:
        raise ValueError(f"--hang-member {hang.member} is not one of the members")
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
    placements: ChangeLog[frozenset[str]] = ChangeLog()
    reachable: ChangeLog[str | None] = ChangeLog()
    live = Progress(placed, deployed, member_of, reported, placements)

    def note_placement(event: str, obj: dict[str, Any], at: float) -> None:
        if event in ("ADDED", "MODIFIED"):
            placements.note(obj["spec"]["jobRef"]["name"], at, placed_clusters(obj))

    def note_reachable(event: str, obj: dict[str, Any], at: float) -> None:
        if event in ("ADDED", "MODIFIED"):
            reachable.note(obj["metadata"]["name"], at, condition_status(obj, "Reachable"))

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
            observe=note_placement,
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
    if hang is not None:
        members_watch = Watcher(
            hub.kubeconfig, None, "continuum.dev", "v1alpha1", "memberclusters",
            lambda event, obj: None, {}, lock, observe=note_reachable,
        )  # fmt: skip
        watchers.append(members_watch)
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
    preloaded: list[str] = []
    hung: dict[str, Any] = {}
    try:
        ready_s = wait_ready(metrics_port, operator, READY_TIMEOUT_S) - launched
        if preload:
            preloaded, preload_s = preload_jobs(objects, namespace, preload, live, lock, timeout)
        hanging = (
            hung_apiserver(hang.testbed, hang.member, timeout + hang.wait_s + HANG_MARGIN_S)
            if hang is not None
            else contextlib.nullcontext(None)
        )
        with hanging as stopped_at:
            probes = ProbePoller(metrics_port) if hang is not None else None
            if probes is not None:
                probes.start()
            submitted: dict[str, float] = {}
            # Who spends the two cores during the burst: the operator, the API servers, or
            # this benchmark's own client (its creates and watches).
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
            hung_member = hang.member if hang is not None else None
            healthy_in_time = wait_until(
                lambda: healthy_done(submitted, live, hung_member),
                lock,
                time.monotonic() + timeout,
            )
            healthy_done_s = time.monotonic() - started
            if hang is not None:
                wait_until(
                    lambda: hung_done(submitted, live, hang.member),
                    lock,
                    time.monotonic() + hang.wait_s,
                )
            drained_s = time.monotonic() - started
            cpu_s = {
                name: round(_cpu_s(pid) - cpu_before[name], 2) for name, pid in counted.items()
            }
            cpu_s["benchmark client"] = round(time.process_time() - client_cpu_before, 2)
            writes = hub_writes(hub.kubeconfig) - writes_before
            rss_mb = _rss_peak_mb(operator.pid)
            counters = operator_counters(metrics_port)
            # What was seen by the end of the wait: once the member is continued, its shards
            # may still appear, after the measurement.
            with lock:
                seen = Progress(
                    dict(placed), dict(deployed), dict(member_of), dict(reported),
                    placements.copy(),
                )  # fmt: skip
                reachable_seen = reachable.copy()
            if hang is not None and probes is not None and stopped_at is not None:
                samples = probes.stop()
                hung = hang_report(
                    hang.member, submitted, preloaded, seen, reachable_seen, stopped_at
                ) | {
                    "stopped_at_s": round(stopped_at - launched, 2),
                    "burst_after_stop_s": round(started - stopped_at, 2),
                    "healthy_done": healthy_in_time,
                    "healthy_done_after_s": round(healthy_done_s, 2),
                    "wait_for_hung_s": hang.wait_s,
                    "readyz": probe_summary(samples, "/readyz", stopped_at),
                    "healthz": probe_summary(samples, "/healthz", stopped_at),
                }
    finally:
        try:
            # The jobs go while the operator runs, so that their finalizers are released.
            kubectl(hub.kubeconfig, "delete", "mljobs", "--all", "-n", namespace,
                    "--timeout=120s", check=False)  # fmt: skip
        finally:
            # Even when a signal cuts the deletion short: the operator runs in a session of its
            # own, and nothing else would stop it.
            operator.terminate()
            operator.wait(timeout=60)
            for watcher in watchers:
                watcher.stop()
        kubectl(hub.kubeconfig, "delete", "namespace", namespace, "--wait=false", check=False)
    to_placement = [seen.placed[name] - t for name, t in submitted.items() if name in seen.placed]
    to_shards = [seen.deployed[name] - t for name, t in submitted.items() if name in seen.deployed]
    to_status = [seen.reported[name] - t for name, t in submitted.items() if name in seen.reported]

    # Which jobs make the tail, and when in the burst they came: the start-up, the burst's
    # first seconds, or a stall later on. A job never seen counts as slowest.
    def worst_s(name: str) -> float:
        return max(seen.placed.get(name, inf), seen.deployed.get(name, inf)) - submitted[name]

    def seen_after(times: Mapping[str, float], name: str) -> float | None:
        return round(times[name] - submitted[name], 3) if name in times else None

    slowest = [
        {"job": name, "submitted_after_s": round(submitted[name] - started, 3),
         "to_placement_s": seen_after(seen.placed, name),
         "to_shards_s": seen_after(seen.deployed, name), "member": seen.member_of.get(name)}
        for name in sorted(submitted, key=worst_s, reverse=True)[:5]
    ]  # fmt: skip
    # The MemberClusters' heartbeats and the like make the rows under 0.05 per job.
    writes_per_job = {
        kind: round(count / jobs, 2)
        for kind, count in sorted(writes.items())
        if count >= 0.05 * jobs
    }
    result: dict[str, Any] = {
        "jobs": jobs,
        "members": len(members),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "operator_ready_after_s": round(ready_s, 2),
        "submit_s": round(submit_s, 2),
        "all_deployed_after_s": round(drained_s, 2),
        "placed": len(to_placement),
        "deployed": len(to_shards),
        "backlog": jobs - len(to_shards),
        "apply_to_placement": summary(to_placement),
        "apply_to_shard_resources": summary(to_shards),
        "apply_to_status_placed": summary(to_status),
        "operator_peak_rss_mb": round(rss_mb, 1),
        "cpu_s_during_burst": cpu_s,
        "hub_writes_per_job": writes_per_job,
        "slowest_jobs": slowest,
        "operator_counters": counters,
    }
    if preload:
        result["preload"] = {
            "jobs": preload,
            "deployed_after_s": round(preload_s, 2),
            "per_member": dict(sorted(Counter(seen.member_of[name] for name in preloaded).items())),
        }
    if hung:
        result["hang"] = hung
    return result


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
        *(
            [f"- preloaded {preload['jobs']} jobs, deployed after {preload['deployed_after_s']}"
             " s, per member: " + ", ".join(f"{name} {count}"
                                            for name, count in preload["per_member"].items())]
            if (preload := result.get("preload"))
            else []
        ),
        "",
        *(hang_markdown(result["hang"]) if "hang" in result else []),
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
    parser.add_argument(
        "--preload",
        type=int,
        default=0,
        help="jobs created and deployed before the burst (and before --hang-member stops its "
        "member), so that the burst meets a hub already holding work",
    )
    parser.add_argument(
        "--hang-member",
        metavar="NAME",
        help="stop this member's kube-apiserver (SIGSTOP) for the burst, e.g. member-3, and "
        "report the jobs sent to healthy members apart from those sent to it",
    )
    parser.add_argument(
        "--hang-wait",
        type=float,
        default=60.0,
        help="once the jobs sent to healthy members are done, how long more to wait for those "
        "sent to the hung member to be placed again and deployed elsewhere",
    )
    args = parser.parse_args(argv)
    member_names = [f"member-{index}" for index in range(1, args.members + 1)]
    if args.hang_member is not None and args.hang_member not in member_names:
        parser.error(f"--hang-member must be one of {', '.join(member_names)}")
    state = args.dir or Path("/tmp") / f"continuum-bench-{int(time.time())}"
    testbed = Testbed(state)
    clusters = testbed.up(args.members)
    assert clusters[0].name == HUB
    servers = testbed.process_ids()
    try:
        with cpu_limit(args.cpus, [pid for pids in servers.values() for pid in pids.values()]):
            result = run_bench(
                clusters,
                args.jobs,
                args.timeout,
                state / "operator.log",
                servers,
                preload=args.preload,
                hang=HangPlan(testbed, args.hang_member, args.hang_wait)
                if args.hang_member
                else None,
            )
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
