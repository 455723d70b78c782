"""The fault benchmark: recovery (none, reactive, proactive) measured on fault scripts played on
the testbed's sites, with its real Prometheus.

    python -m e2e.bench_faults [--members 4] [--scripts NAME,...] [--faults FILE ...]
        [--recovery none,reactive,proactive] [--mode push|pull] [--min-failure-s 30]
        [--horizon 120] [--manifests DIR] [--json F] [--markdown F] [--plot F.png]

It brings up a testbed with sites and Prometheus (member-1..N-1 at the default topology's edge
sites, member-N in the cloud), registers the members (`--mode push`, the default: the hub
dials them) or joins them as Pull members (`--mode pull`: `continuum member join`, and each
member's agent runs at its site, dialling the hub over the site's link; e2e/pull_members.py),
and for each fault script and each recovery mode runs: the sites restored and unshaped, the link
signals settled, a fresh namespace, the operator started anew (`--prometheus-url`; with `none`,
also `--no-failover`), a KubeRay stand-in and a shard watcher AT each member's site (in its
network namespace, so a partition cuts them off from the hub but not from their member, and
`down` stops them with it), the jobs applied and Running, the script played (then `--hold-s`),
and the jobs deleted.
What it measures comes from what it saw (e2e/fault_metrics.py says how), not from what the
operator reports: the shard watchers' records, the Placements' migrations and the
MemberClusters' `Reachable` and `risk` as the hub showed them, and the times the script's rows
were applied. docs/testbed.md ("The fault benchmark") explains each figure.

The built-in scripts are e2e/faults/NAME.csv (`--scripts`, default all of those present);
`--faults FILE` adds scripts of your own. Runs as root (the sites network); only one sites
network can exist per machine, and the benchmark refuses to start beside another.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml
from kubernetes import client, config

from e2e import fault_metrics, fault_script, monitoring, pull_members, sites
from e2e.bench_stats import summary as latency_summary
from e2e.binaries import kubectl
from e2e.fault_metrics import (
    Migration,
    ReachableChange,
    Settings,
    SiteChange,
    Timeline,
)
from e2e.operator_process import Operator
from e2e.pids import stop_pid
from e2e.registration import register_members
from e2e.shard_watch import follow
from e2e.testbed import HUB, ClusterInfo, Testbed, free_port, member_sites

REPO = Path(__file__).resolve().parent.parent
FAULTS = REPO / "e2e" / "faults"
BUILT_IN = (
    "slow-degradation-failure",
    "degradation-recovers",
    "sudden-failure",
    "partition",
    "two-sites-fail",
)
MODES = ("none", "reactive", "proactive")
MEMBER_MODES = ("push", "pull")
NO_FAILOVER_FLAG = "--no-failover"
# Risk below this and Degraded False on every member: the links are healthy again.
HEALTHY_RISK = 0.35
SETTLE_LIMIT_S = 420.0
READY_TIMEOUT_S = 120.0
RUNNING_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0
SITE_PROCESS_LIFETIME_S = 3 * 3600.0


def log(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


# --- the jobs ---------------------------------------------------------------------------------


def job_manifests(
    edge_sites: Sequence[str],
    namespace: str,
    mode: str,
    per_site: int,
    checkpoint_interval_s: int,
    risk_threshold: float,
) -> list[dict[str, Any]]:
    """Training shards that may move: data at each edge site (residency Region: the shard may
    run anywhere in the site's region), a latency objective that keeps them near it, a
    checkpoint interval, and proactive recovery on only in mode `proactive`."""
    jobs = []
    for site in edge_sites:
        for index in range(per_site):
            name = f"{site}-train-{index}"
            jobs.append({
                "apiVersion": "continuum.dev/v1alpha1",
                "kind": "MLJob",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "mode": "Training",
                    "tenant": "research",
                    "shards": {"count": 1, "resources": {"cpu": "500m", "memory": "1Gi"}},
                    "ray": {"image": "rayproject/ray:2.50.0", "entrypoint": "python -m train",
                            "workersPerShard": 0},
                    "data": [{"name": f"{site}-sensors", "site": site, "rateMbps": 20,
                              "residency": "Region"}],
                    "objectives": {"latencyP99Ms": 50},
                    "faultTolerance": {
                        "checkpoint": {"uri": f"s3://continuum-bench/{name}",
                                       "intervalSeconds": checkpoint_interval_s},
                        "proactive": {"enabled": mode == "proactive",
                                      "riskThreshold": risk_threshold},
                    },
                },
            })  # fmt: skip
    return jobs


def manifests_from(
    directory: Path, namespace: str, mode: str, risk_threshold: float
) -> list[dict[str, Any]]:
    """The MLJobs in DIR's YAML files, put in the run's namespace, with proactive recovery on
    only in mode `proactive` (a threshold they set is kept)."""
    jobs = []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        for document in yaml.safe_load_all(path.read_text()):
            if not isinstance(document, dict) or document.get("kind") != "MLJob":
                continue
            document.setdefault("metadata", {})["namespace"] = namespace
            spec = document.setdefault("spec", {})
            proactive = spec.setdefault("faultTolerance", {}).setdefault("proactive", {})
            proactive["enabled"] = mode == "proactive"
            proactive.setdefault("riskThreshold", risk_threshold)
            jobs.append(document)
    if not jobs:
        raise SystemExit(f"--manifests {directory}: no MLJob found in its YAML files")
    return jobs


def expected_shards(jobs: Sequence[dict[str, Any]]) -> int:
    return sum(int(job["spec"]["shards"]["count"]) for job in jobs)


# --- the checkpoint store ---------------------------------------------------------------------


class CheckpointStore(threading.Thread):
    """A TCP listener at the hub's address: the stand-ins at the sites checkpoint only when
    they can connect to it, so a cut-off site checkpoints nothing."""

    def __init__(self, address: str) -> None:
        super().__init__(daemon=True)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((address, 0))
        self.socket.listen(64)
        self.socket.settimeout(0.5)
        self.address = f"{address}:{self.socket.getsockname()[1]}"
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                connection, _ = self.socket.accept()
                connection.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)
        self.socket.close()


# --- what the hub shows -----------------------------------------------------------------------


def _condition(obj: dict[str, Any], kind: str) -> str | None:
    for entry in (obj.get("status") or {}).get("conditions") or []:
        if entry.get("type") == kind:
            return str(entry.get("status"))
    return None


def _condition_and_reason(obj: dict[str, Any], kind: str) -> tuple[str, str]:
    for entry in (obj.get("status") or {}).get("conditions") or []:
        if entry.get("type") == kind:
            return str(entry.get("status")), str(entry.get("reason") or "")
    return "Unknown", ""


@dataclass
class HubRecord:
    """The MemberClusters' Reachable, risk and RTT, and the Placements' migrations, with the
    wall-clock time the hub's watch showed each."""

    reachable: list[tuple[float, str, str]] = field(default_factory=list)
    risk: list[tuple[float, str, float | None, float | None, str | None]] = field(
        default_factory=list
    )
    migrations: dict[tuple[str, int, str, str, str], tuple[float, str]] = field(
        default_factory=dict
    )
    readiness: list[tuple[float, str, str, str]] = field(default_factory=list)
    """Each change of a member's Ready condition (status, reason): why an eviction waited."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_reachable: dict[str, str] = field(default_factory=dict)
    last_ready: dict[str, tuple[str, str]] = field(default_factory=dict)

    def members(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            self.member(item)

    def placements(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            self.placement(item)

    def member(self, obj: dict[str, Any]) -> None:
        now = time.time()
        name = obj["metadata"]["name"]
        status = obj.get("status") or {}
        reachable = _condition(obj, "Reachable") or "Unknown"
        risk = (status.get("risk") or {}).get("score")
        rtt = (status.get("latencyToSites") or {}).get("hub")
        with self.lock:
            if self.last_reachable.get(name) != reachable:
                self.last_reachable[name] = reachable
                self.reachable.append((now, name, reachable))
            self.risk.append((now, name, risk, rtt, _condition(obj, "Degraded")))
            ready = _condition_and_reason(obj, "Ready")
            if self.last_ready.get(name) != ready:
                self.last_ready[name] = ready
                self.readiness.append((now, name, *ready))

    def placement(self, obj: dict[str, Any]) -> None:
        now = time.time()
        job = obj["spec"]["jobRef"]["name"]
        with self.lock:
            for migration in obj["spec"].get("migrations") or []:
                key = (job, int(migration["shard"]), migration["from"], migration["to"],
                       str(migration["time"]))  # fmt: skip
                self.migrations.setdefault(key, (now, str(migration["reason"])))


@contextlib.contextmanager
def watching_hub(hub: ClusterInfo, namespace: str, record: HubRecord) -> Iterator[None]:
    api = client.CustomObjectsApi(config.new_client_from_config(config_file=str(hub.kubeconfig)))
    stop = threading.Event()
    threads = [
        threading.Thread(target=follow, daemon=True, args=(
            api.list_cluster_custom_object,
            ("continuum.dev", "v1alpha1", "memberclusters"),
            record.members,
            lambda _, obj: record.member(obj),
            stop,
        )),
        threading.Thread(target=follow, daemon=True, args=(
            api.list_namespaced_custom_object,
            ("continuum.dev", "v1alpha1", namespace, "placements"),
            record.placements,
            lambda _, obj: record.placement(obj),
            stop,
        )),
    ]  # fmt: skip
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()


def members_healthy(hub: ClusterInfo) -> str | None:
    """None when every member is Reachable, Degraded False and below HEALTHY_RISK; else why
    not."""
    listed = kubectl(hub.kubeconfig, "get", "memberclusters", "-o", "json", check=False)
    if listed.returncode != 0:
        return listed.stderr.strip()
    waiting = []
    for item in json.loads(listed.stdout)["items"]:
        name = item["metadata"]["name"]
        score = ((item.get("status") or {}).get("risk") or {}).get("score")
        if _condition(item, "Reachable") != "True":
            waiting.append(f"{name} not Reachable")
        elif _condition(item, "Degraded") != "False":
            waiting.append(f"{name} Degraded {_condition(item, 'Degraded')}")
        elif score is None or score >= HEALTHY_RISK:
            waiting.append(f"{name} risk {score}")
    return "; ".join(waiting) or None


# --- processes at the sites -------------------------------------------------------------------


@dataclass(frozen=True)
class SiteAgents:
    """The KubeRay stand-in and the shard watcher of each member, run at its site."""

    network: sites.Sites
    placed: dict[str, str]  # member -> site
    names: tuple[str, ...] = ("bench/kuberay-sim", "bench/shard-watch")

    def start(
        self, members: Sequence[ClusterInfo], namespace: str, store: str, folder: Path
    ) -> dict[str, Path]:
        outputs = {}
        for member in members:
            site = self.placed[member.name]
            out = folder / f"watch-{member.name}.jsonl"
            outputs[member.name] = out
            python = [sys.executable, "-m"]
            self.network.start_process(site, self.names[0], [
                *python, "e2e.kuberay_sim", "--kubeconfig", str(member.kubeconfig),
                "--namespace", namespace, "--checkpoints", "--checkpoint-store", store,
                "--interval", "0.5", "--lifetime-s", str(SITE_PROCESS_LIFETIME_S),
            ], folder / f"kuberay-sim-{member.name}.log")  # fmt: skip
            self.network.start_process(site, self.names[1], [
                *python, "e2e.shard_watch", "--kubeconfig", str(member.kubeconfig),
                "--member", member.name, "--namespace", namespace, "--out", str(out),
                "--lifetime-s", str(SITE_PROCESS_LIFETIME_S),
            ], folder / f"shard-watch-{member.name}.log")  # fmt: skip
        return outputs

    def stop(self) -> None:
        for site in dict.fromkeys(self.placed.values()):
            for process in self.network.processes(site):
                if process.name in self.names:
                    stop_pid(process.pid, STOP_TIMEOUT_S)
                    self.network.forget_process(site, process.name)


# --- the script's player ----------------------------------------------------------------------


class RecordingSites:
    """The player's target: applies each row to the sites, noting when it was applied."""

    def __init__(self, network: sites.Sites, start: float) -> None:
        self.network, self.start = network, start
        self.changes: list[SiteChange] = []

    def _note(self, site: str, state: str, rtt: float = 0.0, jitter: float = 0.0,
              loss: float = 0.0) -> None:  # fmt: skip
        self.changes.append(SiteChange(time.time() - self.start, site, state, rtt, jitter, loss))

    def shape(
        self, site: str, rtt_ms: float, jitter_ms: float = 0.0, loss_pct: float = 0.0
    ) -> None:
        self._note(site, "up", rtt_ms, jitter_ms, loss_pct)
        self.network.shape(site, rtt_ms, jitter_ms, loss_pct)

    def partition(self, site: str) -> None:
        self._note(site, "partition")
        self.network.partition(site)

    def down(self, site: str) -> None:
        self._note(site, "down")
        self.network.down(site)

    def restore(self, site: str) -> None:
        self._note(site, "restore")
        self.network.restore(site)


def starting_links(rows: Sequence[fault_script.Row]) -> dict[str, tuple[float, float, float]]:
    """Each site's link as the script starts it: its first row at time 0, if that is `up`
    (rtt, jitter, loss); a site the script does not set there starts clean."""
    found: dict[str, tuple[float, float, float]] = {}
    for row in rows:
        if row.at_s == 0 and row.state == "up" and row.site not in found:
            found[row.site] = (row.rtt_ms, row.jitter_ms, row.loss_pct)
    return found


def reset_sites(network: sites.Sites, rows: Sequence[fault_script.Row] = ()) -> bool:
    """Every site back up, shaped as the script starts it; returns whether a site's shaping
    changed (its link then needs time to become the detector's baseline)."""
    starting = starting_links(rows)
    changed = False
    for site, link in network.links().items():
        now = (link.get("rtt_ms", 0.0), link.get("jitter_ms", 0.0), link.get("loss_pct", 0.0))
        if link["state"] != "up":
            network.restore(site)
            now = (0.0, 0.0, 0.0)
        wanted = starting.get(site, (0.0, 0.0, 0.0))
        changed = changed or tuple(map(float, now)) != wanted
        network.shape(site, *wanted)
    return changed


# --- one run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bench:
    testbed: Testbed
    hub: ClusterInfo
    members: tuple[ClusterInfo, ...]
    member_site: dict[str, str]
    prometheus_url: str
    store: str
    folder: Path
    args: argparse.Namespace
    no_failover: bool


def wait_for(check: Callable[[], str | None], what: str, timeout_s: float) -> float:
    """Polls `check` (None: done) every second up to `timeout_s`; returns the seconds waited."""
    started = time.monotonic()
    last: str | None = "not checked"
    while time.monotonic() - started < timeout_s:
        last = check()
        if last is None:
            return time.monotonic() - started
        time.sleep(1.0)
    raise RuntimeError(f"{what}: not after {timeout_s:.0f} s ({last})")


def running_shards(bench: Bench, namespace: str) -> int:
    count = 0
    for member in bench.members:
        listed = kubectl(member.kubeconfig, "get", "rayjobs,rayservices", "-n", namespace,
                         "-o", "json", check=False)  # fmt: skip
        if listed.returncode != 0:
            continue
        for item in json.loads(listed.stdout)["items"]:
            count += fault_metrics.shard_running(item["kind"], item.get("status"))
    return count


def operator_args(bench: Bench, mode: str, namespace: str) -> list[str]:
    extra = ["--namespace", namespace, "--prometheus-url", bench.prometheus_url,
             "--signals-interval", str(bench.args.signals_interval)]  # fmt: skip
    if mode == "none" and bench.no_failover:
        extra.append(bench.args.no_failover_flag)
    return extra + list(bench.args.operator_arg or [])


def run_once(
    bench: Bench, script_name: str, rows: Sequence[fault_script.Row], mode: str, index: int
) -> dict[str, Any]:
    started = time.monotonic()
    network = bench.testbed.sites
    folder = bench.folder / f"{index:02d}-{script_name}-{mode}"
    folder.mkdir(parents=True, exist_ok=True)
    # A script's links start as its first rows set them (a WAN's tens of milliseconds, say),
    # not as the testbed's bare loopback: the risk detector's baseline (the 10th percentile of
    # its last `--risk-history` of probes) must have learnt them before the script plays, or
    # the script's first second would read as a rise. Runs of one script follow each other, so
    # only its first waits that long.
    changed = reset_sites(network, rows)
    wait_s = max(bench.args.settle_s, bench.args.baseline_s if changed else 0.0)
    log(f"{script_name} / {mode}: links as the script starts them; {wait_s:.0f} s to settle")
    time.sleep(wait_s)
    namespace = f"bf-{index:02d}-{mode}"
    kubectl(bench.hub.kubeconfig, "create", "namespace", namespace)
    agents = SiteAgents(network, bench.member_site)
    operator = Operator(bench.hub.kubeconfig, folder / "operator.log",
                        operator_args(bench, mode, namespace))  # fmt: skip
    record = HubRecord()
    outputs: dict[str, Path] = {}
    script_start = time.time()
    player = RecordingSites(network, script_start)
    end_t = 0.0
    try:
        outputs = agents.start(bench.members, namespace, bench.store, folder)
        operator.start()
        wait_for(
            lambda: None if operator.probe("/readyz")[0] == 200 else "not ready",
            "operator ready", READY_TIMEOUT_S,
        )  # fmt: skip
        # The operator replays the last minutes of probes from Prometheus at every read, so
        # it judges the links at once: healthy means the previous run's faults have left the
        # detector's window.
        settled = wait_for(lambda: members_healthy(bench.hub), "links healthy", SETTLE_LIMIT_S)
        log(f"{script_name} / {mode}: links healthy {settled:.0f} s after the operator's start")
        if bench.args.manifests:
            jobs = manifests_from(bench.args.manifests, namespace, mode, bench.args.risk_threshold)
        else:
            cloud = bench.members[-1].name
            edges = [site for name, site in bench.member_site.items() if name != cloud]
            jobs = job_manifests(
                edges, namespace, mode, bench.args.jobs_per_site,
                bench.args.checkpoint_interval, bench.args.risk_threshold,
            )  # fmt: skip
        with watching_hub(bench.hub, namespace, record):
            document = json.dumps({"apiVersion": "v1", "kind": "List", "items": jobs})
            kubectl(bench.hub.kubeconfig, "apply", "-f", "-", stdin=document)
            wanted = expected_shards(jobs)
            waited = wait_for(
                lambda: None if (n := running_shards(bench, namespace)) >= wanted
                else f"{n}/{wanted} shards Running",
                "every shard Running", RUNNING_TIMEOUT_S,
            )  # fmt: skip
            log(f"{script_name} / {mode}: {wanted} shards Running after {waited:.0f} s; playing")
            # One checkpoint interval first, so that every shard has a checkpoint of its own.
            time.sleep(bench.args.warmup_s)
            script_start = time.time()
            player = RecordingSites(network, script_start)
            for line in fault_script.play(rows, player, hold_s=bench.args.hold_s):
                log(f"{script_name} / {mode}: {line}")
            end_t = time.time() - script_start
    finally:
        with contextlib.suppress(Exception):
            reset_sites(network, rows)  # the next run of this script starts from the same
        if operator.is_running():
            kubectl(bench.hub.kubeconfig, "delete", "mljobs", "--all", "-n", namespace,
                    "--timeout=90s", check=False)  # fmt: skip
            operator.stop()
        agents.stop()
        kubectl(bench.hub.kubeconfig, "delete", "namespace", namespace, "--wait=false",
                check=False)  # fmt: skip
    records = [
        json.loads(line)
        for path in outputs.values() if path.exists()
        for line in path.read_text().splitlines() if line.strip()
    ]  # fmt: skip
    timeline = Timeline(
        member_site=bench.member_site,
        end_t=end_t,
        sites=player.changes,
        copies=fault_metrics.observations_from_records(records, offset=script_start),
        migrations=[
            Migration(t - script_start, job, shard, source, target, reason)
            for (job, shard, source, target, _), (t, reason) in record.migrations.items()
        ],
        reachable=[
            ReachableChange(t - script_start, member, status)
            for t, member, status in record.reachable
        ],
    )
    settings = Settings(min_failure_s=bench.args.min_failure_s, horizon_s=bench.args.horizon)
    result = fault_metrics.summarize(timeline, settings)
    result["series"] = [
        {"t": round(t - script_start, 2), "member": member, "risk": risk, "rtt_ms": rtt,
         "degraded": degraded}
        for t, member, risk, rtt, degraded in record.risk
    ]  # fmt: skip
    result["site_changes"] = [vars(change) for change in player.changes]
    result["readiness"] = [
        {"t": round(t - script_start, 2), "member": member, "ready": ready, "reason": reason}
        for t, member, ready, reason in record.readiness
    ]
    result["runtime_s"] = round(time.monotonic() - started, 1)
    log(f"{script_name} / {mode}: done in {result['runtime_s']} s: {result['summary']}")
    return result


# --- the report -------------------------------------------------------------------------------


LIST_FIELDS = ("proactive_lead_s", "detect_s", "mttr_s", "lost_work_s")


def combine(per_script: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One mode's summary over its scripts: counts added, lists joined."""
    combined: dict[str, Any] = {}
    for result in per_script.values():
        for key, value in result["summary"].items():
            if isinstance(value, list):
                combined.setdefault(key, []).extend(value)
            elif isinstance(value, dict):
                into = combined.setdefault(key, {})
                for name, count in value.items():
                    into[name] = into.get(name, 0) + count
            else:
                combined[key] = round(combined.get(key, 0) + value, 2)
    return combined


def _spread(values: Sequence[float]) -> str:
    if not values:
        return "-"
    figures = latency_summary(values)
    return f"{figures['p50_s']} / {figures['p99_s']} / {figures['max_s']} (n={len(values)})"


def markdown(report: dict[str, Any]) -> str:
    modes = list(report["recovery"])
    rows = [
        ("failures", lambda s: s["failures"]),
        ("shards at failed sites", lambda s: s["shards_at_failed_sites"]),
        ("moved before the failure", lambda s: s["moved_before_failure"]),
        ("unrecovered shards", lambda s: s["unrecovered"]),
        ("proactive lead s (p50 / p99 / max)", lambda s: _spread(s["proactive_lead_s"])),
        ("detection s (p50 / p99 / max)", lambda s: _spread(s["detect_s"])),
        ("MTTR s (p50 / p99 / max)", lambda s: _spread(s["mttr_s"])),
        ("lost work s (p50 / p99 / max)", lambda s: _spread(s["lost_work_s"])),
        ("shard downtime s (p50 / p99 / max)", lambda s: _spread(s["downtime_s"])),
        ("migrations", lambda s: s["migrations"]),
        ("false migrations", lambda s: s["false_migrations"]),
        ("false migrations by reason",
         lambda s: ", ".join(f"{reason} {count}" for reason, count
                             in sorted(s["false_migrations_by_reason"].items())) or "-"),
        ("degradation episodes / without failure",
         lambda s: f"{s['degradation_episodes']} / {s['degradations_without_failure']}"),
        ("duplicate shard-seconds (handoff + split)",
         lambda s: f"{s['duplicate_shard_seconds']} ({s['duplicate_handoff_s']} + "
                   f"{s['duplicate_split_s']})"),
        ("duplicate s by the move that made them",
         lambda s: ", ".join(f"{reason} {seconds}" for reason, seconds
                             in s.get("duplicate_s_by_move_reason", {}).items()) or "-"),
        ("copies coexisting s (working or not)", lambda s: s["copies_coexisting_s"]),
    ]  # fmt: skip
    member_mode = report.get("mode", "push")
    lines = [
        f"Fault benchmark: {', '.join(report['scripts'])}; {report['members']} {member_mode} "
        f"members; min failure {report['settings']['min_failure_s']} s, horizon "
        f"{report['settings']['horizon_s']} s",
        "",
        "| measure | " + " | ".join(f"{mode} ({member_mode})" for mode in modes) + " |",
        "|---|" + "---|" * len(modes),
    ]
    for label, value in rows:
        cells = [str(value(report["recovery"][mode]["summary"])) for mode in modes]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", *report["notes"], ""]
    for mode in modes:
        for script, result in report["recovery"][mode]["scripts"].items():
            lines.append(f"- {script} / {mode} ({member_mode}): {result['runtime_s']} s")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    """Per script and mode: each member's RTT (hub's view) and risk over time, with the
    script's failures shaded and the migrations marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    member_mode = report.get("mode", "push")
    panels = [(f"{mode} ({member_mode})", script, result)
              for mode, entry in report["recovery"].items()
              for script, result in entry["scripts"].items()]  # fmt: skip
    figure, axes = plt.subplots(len(panels), 2, figsize=(14, 3.2 * len(panels)), squeeze=False)
    for row, (mode, script, result) in enumerate(panels):
        rtt_axis, risk_axis = axes[row]
        members = sorted({sample["member"] for sample in result["series"]})
        for member in members:
            samples = [s for s in result["series"] if s["member"] == member]
            site = report["member_site"].get(member, member)
            rtt_axis.plot([s["t"] for s in samples if s["rtt_ms"] is not None],
                          [s["rtt_ms"] for s in samples if s["rtt_ms"] is not None],
                          label=f"{member} ({site})")  # fmt: skip
            risk_axis.plot([s["t"] for s in samples if s["risk"] is not None],
                           [s["risk"] for s in samples if s["risk"] is not None],
                           label=f"{member} ({site})")  # fmt: skip
        for site in sorted({change["site"] for change in result["site_changes"]}):
            shaped = [c for c in result["site_changes"] if c["site"] == site and c["state"] == "up"]
            if shaped:
                rtt_axis.step([c["t"] for c in shaped], [c["rtt_ms"] for c in shaped],
                              where="post", linestyle=":", color="grey",
                              label=f"{site}: RTT set by the script")  # fmt: skip
        for event in result["events"]:
            for axis in (rtt_axis, risk_axis):
                if event["event"] == "failure":
                    axis.axvspan(event["t"], event["end_t"], color="red", alpha=0.12)
                elif event["event"] == "blip":
                    axis.axvspan(event["t"], event["end_t"], color="orange", alpha=0.12)
                elif event["event"] == "migration":
                    axis.axvline(event["t"], color="black" if not event["false"] else "purple",
                                 linestyle="--", linewidth=0.8)  # fmt: skip
        rtt_axis.set_title(f"{script} / {mode}: RTT hub -> site (ms)")
        risk_axis.set_title(f"{script} / {mode}: risk (dashed: migrations, red: failures)")
        risk_axis.set_ylim(-0.05, 1.05)
        for axis in (rtt_axis, risk_axis):
            axis.set_xlabel("s from the script's start")
            axis.grid(alpha=0.3)
        risk_axis.legend(fontsize=7, loc="upper left")
        rtt_axis.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


# --- main -------------------------------------------------------------------------------------


def operator_accepts(flag: str) -> bool:
    """Whether `continuum operator run` knows `flag` (its --help lists it)."""
    shown = subprocess.run(
        [sys.executable, "-m", "continuum.operator.cli", "operator", "run", "--help"],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    return any(word.strip("[],") == flag for word in shown.stdout.split())


def resolve_scripts(args: argparse.Namespace) -> list[tuple[str, Path]]:
    chosen: list[tuple[str, Path]] = []
    names = [name for name in (args.scripts or "").split(",") if name]
    if not names and not args.faults:
        names = [name for name in BUILT_IN if (FAULTS / f"{name}.csv").exists()]
        if not names:
            raise SystemExit(f"no built-in fault scripts in {FAULTS}: give --faults FILE")
    for name in names:
        path = FAULTS / f"{name}.csv"
        if not path.exists():
            known = ", ".join(sorted(p.stem for p in FAULTS.glob("*.csv"))) or "none"
            raise SystemExit(f"--scripts: no built-in script {name!r} ({path}); found: {known}")
        chosen.append((name, path))
    chosen += [(path.stem, path) for path in args.faults or []]
    return chosen


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="bench_faults", description=__doc__.splitlines()[0])
    parse.add_argument(
        "--members",
        type=int,
        default=4,
        help="the first N-1 edge sites of the default topology and the cloud",
    )
    parse.add_argument(
        "--faults", type=Path, action="append", help="a fault script of your own (CSV; repeatable)"
    )
    parse.add_argument(
        "--scripts",
        help="built-in scripts, comma-separated: "
        + ",".join(BUILT_IN)
        + " (default: all present, unless --faults)",
    )
    parse.add_argument(
        "--recovery",
        default=",".join(MODES),
        help="modes to compare, comma-separated: none,reactive,proactive",
    )
    parse.add_argument(
        "--mode",
        choices=MEMBER_MODES,
        default="push",
        help="push: the members are registered and the hub dials them; pull: each joins as a "
        "Pull member and its agent runs at its site, dialling the hub over the site's link",
    )
    parse.add_argument(
        "--min-failure-s",
        type=float,
        default=30.0,
        help="a partition at least this long is a failure; shorter, a blip",
    )
    parse.add_argument(
        "--horizon",
        type=float,
        default=120.0,
        help="a move is justified by a failure of its site within this many s",
    )
    parse.add_argument("--manifests", type=Path, help="apply the MLJobs in DIR instead")
    parse.add_argument("--jobs-per-site", type=int, default=2)
    parse.add_argument(
        "--checkpoint-interval",
        type=int,
        default=20,
        help="the jobs' faultTolerance.checkpoint.intervalSeconds",
    )
    parse.add_argument(
        "--risk-threshold", type=float, default=0.5, help="the jobs' proactive riskThreshold"
    )
    parse.add_argument(
        "--hold-s",
        type=float,
        default=60.0,
        help="keep measuring this long after the script's last row",
    )
    parse.add_argument(
        "--baseline-s",
        type=float,
        default=285.0,
        help="when a script's starting links differ from the current ones, wait this long "
        "before its first run, so that the detector's baseline (the 10th percentile of the "
        "last 300 s of probes) has learnt them",
    )
    parse.add_argument(
        "--settle-s",
        type=float,
        default=30.0,
        help="wait at least this long after restoring the sites before a run "
        "(then until every member is healthy)",
    )
    parse.add_argument(
        "--warmup-s",
        type=float,
        default=25.0,
        help="run the shards this long before the script starts",
    )
    parse.add_argument("--signals-interval", type=float, default=2.0)
    parse.add_argument(
        "--no-failover-flag",
        default=NO_FAILOVER_FLAG,
        help="the operator's flag that keeps shards on an unreachable member",
    )
    parse.add_argument(
        "--operator-arg", action="append", help="one more argument for `operator run` (repeatable)"
    )
    parse.add_argument("--dir", type=Path, help="the testbed's folder (default: a new one)")
    parse.add_argument(
        "--keep",
        action="store_true",
        help="leave the testbed running at the end (default: tear it down)",
    )
    parse.add_argument("--json", type=Path)
    parse.add_argument("--markdown", type=Path)
    parse.add_argument("--plot", type=Path)
    return parse  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    # Stopped from outside, it still stops its operator and tears the testbed down.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))
    args = parser().parse_args(argv)
    for name in ("faults", "manifests", "dir", "json", "markdown", "plot"):
        value = getattr(args, name)
        if isinstance(value, list):
            setattr(args, name, [path.resolve() for path in value])
        elif value is not None:
            setattr(args, name, value.resolve())
    modes = [mode for mode in args.recovery.split(",") if mode]
    if not modes or any(mode not in MODES for mode in modes):
        raise SystemExit(f"--recovery: modes are {', '.join(MODES)}")
    for missing in (sites.requirements_missing(), monitoring.requirements_missing()):
        if missing:
            raise SystemExit(f"bench_faults: {missing}")
    placed_sites = member_sites(args.members, None)
    scripts = [
        (name, fault_script.load(path, placed_sites)) for name, path in resolve_scripts(args)
    ]
    folder = args.dir or Path("/tmp") / f"continuum-bench-faults-{int(time.time())}"
    taken = sites.live_namespaces()
    if taken and not (folder / "sites" / "sites.json").exists():
        raise SystemExit(
            f"another sites network is on this machine ({', '.join(taken)}): only one can be"
        )
    # The processes started at the sites run `python -m e2e...` in this folder (PYTHONPATH
    # would not do: the repository's operator/ would hide the standard library's operator).
    os.chdir(REPO)
    no_failover = operator_accepts(args.no_failover_flag)
    notes = []
    if "none" in modes and not no_failover:
        notes.append(
            f"- `none`: the operator does not accept {args.no_failover_flag} yet, so `none` ran "
            "with the operator's failover on (it measures what `reactive` does)."
        )
    if "reactive" in modes:
        notes.append(
            "- `reactive`: the jobs' faultTolerance.proactive.enabled is false; moves of Reason "
            "Proactive there come from the scheduler, not from the job."
        )
    if args.mode == "pull":
        notes.append(
            "- `pull`: every member joined as a Pull member (`continuum member join`), its agent "
            "at its site; the hub does not probe the Pull sites, their agents probe the hub "
            "(the site's link as the site sees it); a RayJob its agent fenced (`spec.suspend`) "
            "counts as not running."
        )
    testbed = Testbed(folder)
    started = time.monotonic()
    store: CheckpointStore | None = None
    pull_agents: pull_members.PullAgents | None = None
    report: dict[str, Any] = {}
    try:
        log(f"testbed up in {folder} ({args.members} {args.mode} members at "
            f"{', '.join(placed_sites)})")  # fmt: skip
        clusters = testbed.up(args.members, placed_sites, prometheus=True)
        hub = next(cluster for cluster in clusters if cluster.name == HUB)
        members = tuple(cluster for cluster in clusters if cluster.name != HUB)
        member_site = {
            member.name: site for member, site in zip(members, placed_sites, strict=True)
        }
        if args.mode == "pull":
            if not pull_members.hub_reachable_from_sites(hub):
                raise SystemExit(
                    f"bench_faults --mode pull: the hub serves at {hub.server}, not at "
                    f"{sites.HUB_ADDRESS}, where the sites reach it"
                )
            agents_folder = folder / "agents"
            hub_kubeconfigs = pull_members.join_members(hub, members, agents_folder, hub.server)
            pull_agents = pull_members.PullAgents(testbed.sites, member_site,
                                                  SITE_PROCESS_LIFETIME_S)  # fmt: skip
            pull_agents.start(members, hub_kubeconfigs, agents_folder)
            # As behind NAT: the hub does not probe a Pull site; its agent probes the hub.
            testbed.monitoring.up(free_port, agent_probers=pull_agents.probers())
            log(f"joined {len(members)} Pull members; their agents run at their sites and "
                "probe the hub for Prometheus")  # fmt: skip
        else:
            register_members(clusters, None)
        kubectl(hub.kubeconfig, "apply", "-f", str(REPO / "examples" / "tenants.yaml"))
        url = testbed.prometheus_url()
        assert url is not None
        store = CheckpointStore(testbed.sites.address(sites.HUB))
        store.start()
        bench = Bench(
            testbed, hub, members, member_site, url, store.address, folder / "runs", args,
            no_failover,
        )  # fmt: skip
        report = {
            "mode": args.mode,
            "recovery": {mode: {"summary": {}, "events": [], "scripts": {}} for mode in modes},
            "scripts": [name for name, _ in scripts],
            "members": args.members,
            "member_site": bench.member_site,
            "no_failover_supported": no_failover,
            "settings": {"min_failure_s": args.min_failure_s, "horizon_s": args.horizon,
                         "checkpoint_interval_s": args.checkpoint_interval,
                         "risk_threshold": args.risk_threshold, "hold_s": args.hold_s},
            "notes": notes,
        }  # fmt: skip
        index = 0
        for name, rows in scripts:
            for mode in modes:
                index += 1
                log(f"run {index}/{len(scripts) * len(modes)}: {name} / {mode}")
                result = run_once(bench, name, rows, mode, index)
                entry = report["recovery"][mode]
                entry["scripts"][name] = result
                entry["events"] += [{"script": name, **event} for event in result["events"]]
                entry["summary"] = combine(entry["scripts"])
    finally:
        if store is not None:
            store.stop()
        if pull_agents is not None and not args.keep:
            pull_agents.stop()
        if not args.keep:
            log("testbed down")
            testbed.down()
    report["runtime_s"] = round(time.monotonic() - started, 1)
    text = markdown(report)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(text)
    if args.plot:
        plot(report, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
