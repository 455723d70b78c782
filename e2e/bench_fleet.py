"""The fleet benchmark: N simulated Pull members and M MLJobs on one hub, to see how the hub's
side of pull mode grows with the number of members.

    .venv/bin/python e2e/bench_fleet.py --members 10,100 --jobs 50,500 --json F --markdown F

For each size it starts a testbed of the hub alone (`Testbed.up(0)`: the real kube-apiserver,
etcd and kube-controller-manager), admits N Pull members with the objects `continuum member
join` applies (`api/join.join_objects`, applied by `adapters/join.apply_objects`, with the
admin's credential), starts P processes of simulated agents (e2e/fleet_agents.py: each
renews its member's Lease every --renew s with the agent's own code and reports on its
MemberWorks from a member store in memory), then runs the operator as a separate process, as
e2e/bench_operator.py runs it, and waits until it is ready and every member is Ready. It
measures the fleet idle for --idle-s, then creates M one-shard MLJobs at --rate per second and
waits (at most --timeout s after the last) until each has its Placement and its shard runs in
a member. Every size has a hub of its own, stopped at the end, as are the operator and the
agents (by pid, also on Ctrl-C or SIGTERM).

Per size, the JSON has `members`, `jobs`, `apply_to_placement_s` and `apply_to_shard_s`
(`p50`, `p99`: from each create request to the Placement's ADDED in a hub watch, and to the
moment a simulated agent made the shard, which it runs at once), `operator_peak_rss_mb`
(VmHWM), `operator_cpu_s`, `hub_requests_per_s` and `lease_writes_per_s` (deltas of the hub's
apiserver_request_total: every request, and PUTs of leases), the last three over the jobs
window (the first create until the last shard ran); then `placed` and `shards_ran`, and
`detail`: the same figures for the idle fleet, the requests that make the rates, the agents'
own counts, the operator's RSS over time, start-up times and the load average. The markdown
puts the sizes side by side with the ratio of each figure between consecutive sizes.

With --cpus C (root), the hub's servers, the operator, the agents and the benchmark share C
CPUs (bench_operator's cgroup quota). With --py-spy BINARY, the operator is profiled (py-spy
record, raw collapsed stacks) over the idle and the jobs windows, into the size's folder.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kubernetes import client, config

from continuum.operator.adapters.join import apply_objects
from continuum.operator.adapters.watchcache import WatchCache
from continuum.operator.api import GROUP, VERSION
from continuum.operator.api.join import join_objects
from continuum.operator.api.membercluster import AgentTiming
from e2e import fleet_agents
from e2e.bench_operator import (
    _cpu_s,
    _rss_peak_mb,
    cpu_limit,
    job_manifest,
    operator_counters,
    wait_ready,
    wait_until,
)
from e2e.bench_stats import summary
from e2e.binaries import kubectl
from e2e.testbed import HUB, Testbed, free_port

REPO = Path(__file__).resolve().parent.parent
JOB_NAMESPACE = "fleet"
CREDENTIAL = (
    "admin: every simulated agent uses the hub admin's client certificate (a watch across "
    "the member namespaces needs it), not its member's token"
)
AGENTS_WATCH = (
    "one MemberWork list-and-watch per agent process, across the cluster with the label "
    "selector continuum.dev/member in (its members): the same events as one watch per "
    "agent, without N threads and connections in the simulator; the hub holds P watches, "
    "not N"
)
# No quota: a tenant's nominal quota would hold back a fleet's worth of jobs.
TENANTS = ({"name": "research", "weight": 2}, {"name": "production", "weight": 3})
ADMIT_WORKERS = 4
SAMPLE_S = 1.0
POLL_S = 0.5
STOP_TIMEOUT_S = 30.0
REQUIRED = ("members", "jobs", "apply_to_placement_s", "apply_to_shard_s",
            "operator_peak_rss_mb", "operator_cpu_s", "hub_requests_per_s",
            "lease_writes_per_s")  # fmt: skip
GOALS = {"apply_to_placement_s.p99": "≤ 2 s", "operator_peak_rss_mb": "≤ 1024"}


@dataclass(frozen=True)
class Options:
    processes: int | None = None
    """None: two, or one for a handful of members."""
    cpus: float | None = None
    renew_s: int = 5
    rate: float = 10.0
    idle_s: float = 15.0
    timeout_s: float = 300.0
    py_spy: Path | None = None


def member_names(count: int) -> list[str]:
    return [f"fleet-{index:04d}" for index in range(1, count + 1)]


def agent_timing(renew_s: int) -> AgentTiming:
    """The agent times for a renew interval: the default lease unless it is too short for it
    (the renew interval may be at most half of the lease)."""
    default = AgentTiming()
    lease_s = max(default.lease_duration_seconds, 2 * renew_s)
    return AgentTiming(renew_interval_seconds=renew_s, lease_duration_seconds=lease_s)


def member_objects(name: str, renew_s: int) -> list[dict[str, Any]]:
    """What `continuum member join NAME --site NAME --tier Edge` applies; the MemberCluster
    also names the agent times when --renew is not the default."""
    objects = join_objects(name, site=name, tier="Edge", capacity=fleet_agents.ALLOCATABLE)
    if renew_s != AgentTiming().renew_interval_seconds:
        objects[-1]["spec"]["agent"] = agent_timing(renew_s).to_dict()
    return objects


def admit(api: client.ApiClient, names: Sequence[str], renew_s: int) -> None:
    """Every member's join objects, each member's in join's order, a few members at a time."""
    with ThreadPoolExecutor(ADMIT_WORKERS) as pool:
        list(pool.map(lambda name: apply_objects(api, member_objects(name, renew_s)), names))


def hub_requests(kubeconfig: Path) -> Counter[tuple[str, str]]:
    """The requests the hub's API server has served so far, by verb and resource."""
    counts: Counter[tuple[str, str]] = Counter()
    for line in kubectl(kubeconfig, "get", "--raw", "/metrics").stdout.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        parts = (labels.get("resource", ""), labels.get("subresource", ""))
        counts[(labels.get("verb", ""), "/".join(part for part in parts if part))] += int(
            float(line.rsplit(" ", 1)[1])
        )
    return counts


def lease_writes(counts: Counter[tuple[str, str]]) -> int:
    return sum(count for (verb, resource), count in counts.items()
               if resource == "leases" and verb in ("PUT", "UPDATE"))  # fmt: skip


@dataclass(frozen=True)
class Mark:
    """Where the operator and the hub stood at one moment: the CPU seconds each process of
    the run has used (the operator, the hub's servers, the agent processes) and the requests
    the hub has served."""

    at: float
    cpu_s: dict[str, float]
    requests: Counter[tuple[str, str]]


def mark(processes: dict[str, int], kubeconfig: Path) -> Mark:
    return Mark(
        time.monotonic(),
        {name: _cpu_s(pid) for name, pid in processes.items()},
        hub_requests(kubeconfig),
    )


def window(start: Mark, end: Mark) -> dict[str, Any]:
    """The CPU each process used and the hub's request rates between two marks."""
    seconds = max(end.at - start.at, 1e-9)
    requests = end.requests - start.requests
    top = {f"{verb} {resource}": round(count / seconds, 2)
           for (verb, resource), count in requests.most_common(8)}  # fmt: skip
    cpu_s = {name: end.cpu_s[name] - start.cpu_s[name] for name in start.cpu_s}
    agents_s = sum(value for name, value in cpu_s.items() if name.startswith("agents"))
    return {
        "seconds": round(seconds, 2),
        "operator_cpu_s": round(cpu_s["operator"], 2),
        "operator_cpu_per_s": round(cpu_s["operator"] / seconds, 3),
        "cpu_per_s": {
            **{name: round(value / seconds, 3) for name, value in cpu_s.items()
               if not name.startswith("agents")},
            "agents": round(agents_s / seconds, 3),
        },
        "hub_requests_per_s": round(sum(requests.values()) / seconds, 1),
        "lease_writes_per_s": round(lease_writes(requests) / seconds, 2),
        "top_requests_per_s": top,
    }  # fmt: skip


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Sampler(threading.Thread):
    """The operator's RSS and CPU seconds every SAMPLE_S, until stopped or it exits."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True, name="sampler")
        self.pid = pid
        self.samples: list[tuple[float, float, float]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self._halt.wait(SAMPLE_S):
            try:
                self.samples.append(
                    (round(time.monotonic() - started, 1), round(_rss_mb(self.pid), 1),
                     round(_cpu_s(self.pid), 2))
                )  # fmt: skip
            except OSError:
                return

    def stop(self) -> None:
        self._halt.set()
        self.join(5.0)

    def rss_at(self, offset_s: float) -> float | None:
        """The RSS sampled last at or before `offset_s` after the start."""
        earlier = [rss for at, rss, _ in self.samples if at <= offset_s]
        return earlier[-1] if earlier else None


@dataclass
class AgentProcesses:
    """P processes of simulated agents, and what they report."""

    kubeconfig: Path
    members: Sequence[str]
    processes: int
    renew_s: int
    deadline: float
    lock: threading.Lock
    ready: dict[int, int] = field(default_factory=dict)
    ran: dict[str, float] = field(default_factory=dict)
    reported: dict[str, float] = field(default_factory=dict)
    stats: dict[int, fleet_agents.Stats] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.messages = context.Queue()
        self.stop_event = context.Event()
        lease_s = agent_timing(self.renew_s).lease_duration_seconds
        parts = fleet_agents.split(list(self.members), self.processes)
        specs = [
            fleet_agents.FleetProcess(index, str(self.kubeconfig), part, self.renew_s, lease_s,
                                      self.deadline, self.processes)
            for index, part in enumerate(parts)
        ]  # fmt: skip
        self.started = [
            context.Process(
                target=fleet_agents.run,
                args=(spec, self.messages, self.stop_event, os.getpid()),
                name=f"fleet-agents-{spec.index}",
                daemon=True,
            )
            for spec in specs
        ]
        self._ended = threading.Event()
        self._reader = threading.Thread(target=self._read, name="agents-queue", daemon=True)

    def start(self) -> AgentProcesses:
        self._reader.start()
        for process in self.started:
            process.start()
        return self

    def _read(self) -> None:
        while True:
            try:
                message = self.messages.get(timeout=0.2)
            except queue.Empty:
                if self._ended.is_set():
                    return
                continue
            with self.lock:
                self._note(message)

    def _note(self, message: fleet_agents.Message) -> None:
        match message:
            case fleet_agents.ShardRan():
                self.ran.setdefault(message.job, message.ran_at)
                self.reported.setdefault(message.job, message.reported_at)
            case fleet_agents.Ready():
                self.ready[message.process] = message.members
            case fleet_agents.Stats():
                self.stats[message.process] = message
            case fleet_agents.Failed():
                self.failures.append(message.message)

    def all_ready(self) -> bool:
        if self.failures:
            raise RuntimeError("an agent process failed:\n" + "\n".join(self.failures))
        dead = [process.name for process in self.started if process.exitcode is not None]
        if dead:
            raise RuntimeError(f"agent processes ended before they were ready: {dead}")
        return len(self.ready) == len(self.started)

    def stop(self) -> None:
        """Tells every process to stop, and ends those that do not (by their pids)."""
        self.stop_event.set()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in self.started:
            if process.pid is not None:
                process.join(max(0.1, deadline - time.monotonic()))
        for process in self.started:
            if process.is_alive():
                process.terminate()
                process.join(5.0)
            if process.is_alive():
                process.kill()
                process.join(5.0)
        self._ended.set()
        if self._reader.is_alive():
            self._reader.join(10.0)


def start_operator(kubeconfig: Path, log: Path, metrics_port: int) -> subprocess.Popen[bytes]:
    """`continuum operator run` as e2e/bench_operator.py runs it: in a session of its own."""
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "continuum.operator.cli", "operator", "run",
             "--kubeconfig", str(kubeconfig), "--cycle-interval", "1",
             "--metrics-port", str(metrics_port)],
            stdout=output, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
        )  # fmt: skip


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10.0)


@contextlib.contextmanager
def profiled(py_spy: Path | None, pid: int, output: Path) -> Iterator[None]:
    """py-spy's raw collapsed stacks of process `pid` while the block runs, if asked for."""
    if py_spy is None:
        yield
        return
    recorder = subprocess.Popen(
        [str(py_spy), "record", "--pid", str(pid), "--rate", "50", "--gil", "--format", "raw",
         "--nonblocking", "--output", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        yield
    finally:
        stop_process(recorder, signal.SIGINT)


def condition_status(body: dict[str, Any], kind: str) -> str | None:
    conditions = (body.get("status") or {}).get("conditions") or []
    return next((entry.get("status") for entry in conditions if entry.get("type") == kind), None)


def members_ready(objects: client.CustomObjectsApi) -> int:
    listed: Any = objects.list_cluster_custom_object(GROUP, VERSION, "memberclusters")
    return sum(1 for body in listed["items"] if condition_status(body, "Ready") == "True")


def poll(check: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Checks every POLL_S until `check` holds; returns when, or fails after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not after {timeout_s:.0f} s")
        time.sleep(POLL_S)
    return time.monotonic()


def submit_jobs(objects: client.CustomObjectsApi, count: int, rate: float) -> dict[str, float]:
    """Creates `count` MLJobs, one every 1/rate s; returns when each create was sent."""
    submitted: dict[str, float] = {}
    started = time.monotonic()
    for index in range(count):
        delay = started + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        manifest = job_manifest(index, JOB_NAMESPACE, prefix="fleet")
        submitted[manifest["metadata"]["name"]] = time.monotonic()
        objects.create_namespaced_custom_object(
            GROUP, VERSION, JOB_NAMESPACE, "mljobs", manifest, _request_timeout=30
        )
    return submitted


def latencies(submitted: dict[str, float], seen: dict[str, float]) -> list[float]:
    return [seen[name] - at for name, at in submitted.items() if name in seen]


def by_tenth(submitted: dict[str, float], seen: dict[str, float]) -> list[float | None]:
    """The p99 latency of each tenth of the jobs, in the order they were created: whether the
    tail comes with the number of jobs already there, or from stalls."""
    names = sorted(submitted, key=submitted.__getitem__)
    size = max(1, -(-len(names) // 10))
    return [
        summary([seen[name] - submitted[name] for name in names[start : start + size]
                 if name in seen])["p99_s"]
        for start in range(0, len(names), size)
    ]  # fmt: skip


def count_and_time(
    counters: dict[str, float], histogram: str, labels: str = ""
) -> dict[str, float | None]:
    """A histogram's count, its sum and their mean, from the operator's counters; `labels`
    as the exposition writes them (`{generation="2"}`)."""
    count = counters.get(f"{histogram}_count{labels}")
    total = counters.get(f"{histogram}_sum{labels}")
    mean = round(total / count, 3) if count and total is not None else None
    return {"count": count, "total_s": total, "mean_s": mean}


def p50_p99(values: Sequence[float]) -> dict[str, float | None]:
    figures = summary(values)
    return {"p50": figures["p50_s"], "p99": figures["p99_s"]}


def prepare_hub(api: client.ApiClient) -> None:
    objects = client.CustomObjectsApi(api)
    for tenant in TENANTS:
        objects.create_cluster_custom_object(
            GROUP, VERSION, "tenants",
            {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Tenant",
             "metadata": {"name": tenant["name"]}, "spec": {"weight": tenant["weight"]}},
        )  # fmt: skip
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=JOB_NAMESPACE))
    )


def rounded(values: Sequence[float]) -> list[float]:
    return [round(value, 2) for value in values]


def default_processes(members: int) -> int:
    return 1 if members < 20 else 2


def measure(kubeconfig: Path, folder: Path, servers: dict[str, int], members: int, jobs: int,
            options: Options, stack: contextlib.ExitStack) -> dict[str, Any]:  # fmt: skip
    """One size on a running hub (`servers`: its processes by name); everything it starts is
    stopped by `stack`."""
    load_start = os.getloadavg()
    api = config.new_client_from_config(config_file=str(kubeconfig))
    stack.callback(api.close)
    objects = client.CustomObjectsApi(api)
    prepare_hub(api)
    names = member_names(members)
    began = time.monotonic()
    admit(api, names, options.renew_s)
    admitted_s = time.monotonic() - began

    lock = threading.Lock()
    processes = min(members, options.processes or default_processes(members))
    # Bounded however the run goes: the agents stop by themselves after the longest it can take.
    lifetime_s = 600 + 2 * members + jobs / options.rate + options.idle_s + options.timeout_s
    agents = AgentProcesses(kubeconfig, names, processes, options.renew_s,
                            time.monotonic() + lifetime_s, lock)  # fmt: skip
    stack.callback(agents.stop)
    agents.start()
    agents_ready_s = poll(agents.all_ready, 120 + members, "the agents ready") - began

    placed: dict[str, float] = {}

    def note_placement(event: str, body: dict[str, Any], before: dict[str, Any] | None) -> None:
        if event == "ADDED":
            with lock:
                placed.setdefault(body["metadata"]["name"], time.monotonic())

    placements = WatchCache(
        "placements", objects.list_namespaced_custom_object,
        {"group": GROUP, "version": VERSION, "plural": "placements", "namespace": JOB_NAMESPACE},
        on_change=note_placement,
    )  # fmt: skip
    stack.callback(placements.stop)
    placements.start()
    if not placements.wait_synced(60):
        raise RuntimeError("the watch of Placements did not sync")

    metrics_port = free_port()
    launched = time.monotonic()
    operator = start_operator(kubeconfig, folder / "operator.log", metrics_port)
    stack.callback(stop_process, operator)
    sampler = Sampler(operator.pid)
    sampler.start()
    stack.callback(sampler.stop)
    ready_s = wait_ready(metrics_port, operator, 60 + members) - launched
    members_ready_s = poll(lambda: members_ready(objects) == members, 120 + members,
                           f"{members} members Ready") - launched  # fmt: skip

    counted = {"operator": operator.pid, **servers} | {
        f"agents-{index}": process.pid
        for index, process in enumerate(agents.started)
        if process.pid is not None
    }
    with profiled(options.py_spy, operator.pid, folder / "profile-idle.txt"):
        idle_start = mark(counted, kubeconfig)
        time.sleep(options.idle_s)
        idle_end = mark(counted, kubeconfig)
    idle_rss = _rss_mb(operator.pid)

    with profiled(options.py_spy, operator.pid, folder / "profile-jobs.txt"):
        jobs_start = mark(counted, kubeconfig)
        submitted = submit_jobs(objects, jobs, options.rate)
        done = wait_until(
            lambda: len(placed) >= jobs and len(agents.ran) >= jobs,
            lock,
            time.monotonic() + options.timeout_s,
        )
        jobs_end = mark(counted, kubeconfig)
    peak_rss = _rss_peak_mb(operator.pid)
    counters = operator_counters(metrics_port)
    if operator.poll() is not None:
        raise RuntimeError(f"the operator exited with {operator.returncode} during the run")
    with lock:
        to_placement = latencies(submitted, placed)
        to_shard = latencies(submitted, agents.ran)
        to_report = latencies(submitted, agents.reported)
        tenths = {"apply_to_placement_p99_s": by_tenth(submitted, placed),
                  "apply_to_shard_p99_s": by_tenth(submitted, agents.ran)}  # fmt: skip
    stack.close()  # the agents' stats come as they stop
    jobs_window, idle_window = window(jobs_start, jobs_end), window(idle_start, idle_end)
    # What the jobs cost the operator beyond what the idle fleet costs it in the same time.
    idle_share_s = idle_window["operator_cpu_per_s"] * jobs_window["seconds"]
    beyond_idle_s = jobs_window["operator_cpu_s"] - idle_share_s
    agent_counts = fleet_agents.counts(agents.stats)
    return {
        "members": members,
        "jobs": jobs,
        "apply_to_placement_s": p50_p99(to_placement),
        "apply_to_shard_s": p50_p99(to_shard),
        "operator_peak_rss_mb": round(peak_rss, 1),
        "operator_cpu_s": jobs_window["operator_cpu_s"],
        "hub_requests_per_s": jobs_window["hub_requests_per_s"],
        "lease_writes_per_s": jobs_window["lease_writes_per_s"],
        "placed": len(to_placement),
        "shards_ran": len(to_shard),
        "detail": {
            "all_done": done,
            "credential": CREDENTIAL,
            "agents_watch": AGENTS_WATCH,
            "agent_processes": processes,
            "renew_s": options.renew_s,
            "rate_per_s": options.rate,
            "cpus": options.cpus or os.cpu_count(),
            "load_average": {"start": rounded(load_start), "end": rounded(os.getloadavg())},
            "members_admitted_after_s": round(admitted_s, 2),
            "agents_ready_after_s": round(agents_ready_s, 2),
            "operator_ready_after_s": round(ready_s, 2),
            "members_ready_after_s": round(members_ready_s, 2),
            "apply_to_placement": summary(to_placement),
            "apply_to_shard": summary(to_shard),
            "apply_to_shard_reported": summary(to_report),
            "by_tenth_of_the_jobs": tenths,
            "jobs_window": jobs_window,
            "idle_window": idle_window,
            "operator_cpu_ms_per_member_s_idle": round(
                1000 * idle_window["operator_cpu_per_s"] / members, 2
            ),
            "operator_cpu_ms_per_job": round(1000 * beyond_idle_s / jobs, 1),
            "operator_rss_mb": {
                "members_ready": sampler.rss_at(members_ready_s),
                "idle_end": round(idle_rss, 1),
                "peak": round(peak_rss, 1),
            },
            "operator_samples": sampler.samples,
            "operator_counters": counters,
            "cycles": count_and_time(counters, "continuum_scheduling_cycle_seconds"),
            "full_collections": count_and_time(
                counters, "continuum_gc_pause_seconds", '{generation="2"}'
            ),
            "agents": agent_counts,
        },
    }


def run_size(directory: Path, members: int, jobs: int, options: Options) -> dict[str, Any]:
    """One size on a hub of its own, stopped at the end."""
    folder = directory / f"members-{members}"
    testbed = Testbed(folder)
    with contextlib.ExitStack() as stack:
        stack.callback(testbed.down)
        (hub,) = testbed.up(0)
        assert hub.name == HUB
        servers = {f"hub {name}": pid for name, pid in testbed.process_ids()[HUB].items()}
        stack.enter_context(cpu_limit(options.cpus, list(servers.values())))
        with contextlib.ExitStack() as started:
            result = measure(hub.kubeconfig, folder, servers, members, jobs, options, started)
    return result


def _value(result: dict[str, Any], path: str) -> Any:
    value: Any = result
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


ROWS = (
    ("apply → Placement p50 s", "apply_to_placement_s.p50"),
    ("apply → Placement p99 s", "apply_to_placement_s.p99"),
    ("apply → shard running p50 s", "apply_to_shard_s.p50"),
    ("apply → shard running p99 s", "apply_to_shard_s.p99"),
    ("operator peak RSS MiB", "operator_peak_rss_mb"),
    ("operator RSS, members Ready, MiB", "detail.operator_rss_mb.members_ready"),
    ("operator CPU s, jobs window", "operator_cpu_s"),
    ("operator CPU s per s, jobs window", "detail.jobs_window.operator_cpu_per_s"),
    ("operator CPU s per s, idle fleet", "detail.idle_window.operator_cpu_per_s"),
    ("operator CPU ms per member per s, idle", "detail.operator_cpu_ms_per_member_s_idle"),
    ("operator CPU ms per job, beyond idle", "detail.operator_cpu_ms_per_job"),
    ("scheduling cycles, whole run", "detail.cycles.count"),
    ("scheduling cycle mean s", "detail.cycles.mean_s"),
    ("operator full GC pauses, whole run", "detail.full_collections.count"),
    ("operator full GC pauses, total s", "detail.full_collections.total_s"),
    ("hub API server CPU s per s, jobs window", "detail.jobs_window.cpu_per_s.hub kube-apiserver"),
    ("hub API server CPU s per s, idle fleet", "detail.idle_window.cpu_per_s.hub kube-apiserver"),
    ("hub etcd CPU s per s, idle fleet", "detail.idle_window.cpu_per_s.hub etcd"),
    ("agents' CPU s per s, idle fleet", "detail.idle_window.cpu_per_s.agents"),
    ("hub requests per s, jobs window", "hub_requests_per_s"),
    ("hub requests per s, idle fleet", "detail.idle_window.hub_requests_per_s"),
    ("lease writes per s, jobs window", "lease_writes_per_s"),
    ("jobs window s", "detail.jobs_window.seconds"),
    ("operator ready after s", "detail.operator_ready_after_s"),
    ("members Ready after s", "detail.members_ready_after_s"),
    ("placed", "placed"),
    ("shards ran", "shards_ran"),
)


def _ratio(before: Any, after: Any) -> str:
    if not isinstance(before, int | float) or not isinstance(after, int | float) or not before:
        return ""
    return f"×{after / before:.2f}"


def markdown(results: Sequence[dict[str, Any]]) -> str:
    sizes = [f"{r['members']} members, {r['jobs']} jobs" for r in results]
    ratios = [f"{b['members']} ÷ {a['members']}" for a, b in itertools.pairwise(results)]
    lines = [
        "Fleet benchmark: simulated Pull members on one hub, the operator as a process",
        "",
        "| figure | " + " | ".join(sizes + ratios) + " | goal at 1,000 members |",
        "|---" * (2 + len(sizes) + len(ratios)) + "|",
    ]
    for label, path in ROWS:
        values = [_value(result, path) for result in results]
        cells = ["" if value is None else str(value) for value in values]
        cells += [_ratio(a, b) for a, b in itertools.pairwise(values)]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {GOALS.get(path, '')} |")
    lines.append("")
    for result in results:
        detail = result["detail"]
        loads = detail["load_average"]
        lines.append(
            f"- {result['members']} members: {detail['agent_processes']} agent processes, "
            f"renew every {detail['renew_s']} s, {detail['rate_per_s']} jobs/s, "
            f"{detail['cpus']} CPUs, load average {loads['start']} → {loads['end']}; "
            f"hub requests in the jobs window: "
            + ", ".join(f"{kind} {rate}/s"
                        for kind, rate in detail["jobs_window"]["top_requests_per_s"].items())
        )  # fmt: skip
    lines += ["", f"Credential: {CREDENTIAL}.", f"Watches: {AGENTS_WATCH}.", ""]
    return "\n".join(lines)


def _sizes(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give counts of at least 1, as 10,100")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    # Stopped from outside, it still stops what it started (the exit stacks).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=_sizes, required=True, help="N[,N2,...]")
    parser.add_argument("--jobs", type=_sizes, required=True,
                        help="M, for every size, or one per size: M[,M2,...]")  # fmt: skip
    parser.add_argument("--processes", type=int, help="agent processes (default 2; 1 under 20)")
    parser.add_argument("--cpus", type=float, help="a CPU quota for the run (root)")
    parser.add_argument("--renew", type=int, default=5, help="lease renew interval, s")
    parser.add_argument("--rate", type=float, default=10.0, help="MLJobs created per second")
    parser.add_argument("--idle-s", type=float, default=15.0,
                        help="the idle fleet measured for this long before the jobs")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="how long after the last create to wait for its shard")  # fmt: skip
    parser.add_argument("--py-spy", type=Path, help="profile the operator with this py-spy")
    parser.add_argument("--dir", type=Path, help="the folder for the hubs and the logs")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    if len(args.jobs) not in (1, len(args.members)):
        parser.error("--jobs: give one count, or one per --members size")
    if not 1 <= args.renew <= 60:
        parser.error("--renew: from 1 to 60 s")
    jobs = args.jobs * len(args.members) if len(args.jobs) == 1 else args.jobs
    options = Options(args.processes, args.cpus, args.renew, args.rate, args.idle_s,
                      args.timeout, args.py_spy)  # fmt: skip
    directory = args.dir or Path(tempfile.mkdtemp(prefix="continuum-fleet-"))
    # multiprocessing's resource tracker lives as long as this process: started now, outside
    # any --cpus cgroup, it does not keep that cgroup from being removed after a size.
    resource_tracker.ensure_running()
    results: list[dict[str, Any]] = []
    for members, count in zip(args.members, jobs, strict=True):
        results.append(run_size(directory, members, count, options))
        # Written after each size, so that a later size's failure keeps the earlier ones.
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        if args.markdown:
            args.markdown.write_text(markdown(results))
    print(markdown(results))
    complete = all(r["placed"] == r["jobs"] == r["shards_ran"] for r in results)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
