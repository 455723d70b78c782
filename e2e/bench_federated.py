"""What spreading a federated job over the fleet costs: the same FedAvg rounds
(`continuum.workloads.federated`, three participants at delft, eindhoven and ghent and their
aggregator) run on one Ray node, and across four members of the testbed at their sites (three
edge members and the cloud), with real KubeRay and real Ray pods, the participants reaching the
aggregator through the shaped links. Issue 15's goal: a federated round across four members,
and its overhead against the same rounds on one Ray node.

    python -m e2e.bench_federated [--rounds 8] [--edge-rtt-ms 20] [--cloud-rtt-ms 10]
        [--dir DIR] [--json F] [--markdown F]

Root only (sites). A round's time is the time between the aggregator's checkpoints of two
consecutive rounds (each checkpoint is written as the round's average is made), so the first
round, which includes the shards' start, is reported apart: from the start (the processes on
one node; `kubectl apply` on the fleet) to round 1. Memory is read while the fleet's job runs:
each member's servers, and its pods' processes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from e2e import pod_network
from e2e.bench_realray import rss_mib
from e2e.bench_stats import summary
from e2e.binaries import kubectl
from e2e.mljobs import federated_job
from e2e.operator_process import REPO, Operator
from e2e.registration import register_members
from e2e.sites import pod_namespaces
from e2e.testbed import HUB, Testbed, member_sites

EDGE_SITES = ("delft", "eindhoven", "ghent")
RESOURCES = {"cpu": "1", "memory": "2Gi"}
POLL_S = 0.2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def round_times(location: Path) -> list[float]:
    """The checkpoints' times, round 1 first: when each round's average was made."""
    found = sorted(location.glob("round-*.npz"))
    return [path.stat().st_mtime for path in found if ".tmp" not in path.name]


def _durations(started: float, times: list[float]) -> dict[str, Any]:
    rounds = [round(b - a, 3) for a, b in itertools.pairwise(times)]
    return {
        "to_round_1_s": round(times[0] - started, 3) if times else None,
        "rounds": len(times),
        "round_s": summary(rounds),
        "per_round_s": rounds,
    }


def one_node(rounds: int, directory: Path, timeout_s: float) -> dict[str, Any]:
    """The aggregator and three participants as processes of this machine, the participants'
    Ray tasks on one Ray head they share; no link in between."""
    home = directory / "home"
    home.mkdir(parents=True)
    ray_port, port = _free_port(), _free_port()
    # A HOME of its own: Ray turns on token authentication when it finds a token in the user's.
    environment = {**os.environ, "HOME": str(home), "RAY_TMPDIR": tempfile.mkdtemp(prefix="ray-")}
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
         f"--port={ray_port}", "--num-cpus=2", "--include-dashboard=false",
         f"--temp-dir={environment['RAY_TMPDIR']}"],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    checkpoints = directory / "ckpt"
    shard_env = {**environment, "RAY_ADDRESS": f"127.0.0.1:{ray_port}",
                 "CONTINUUM_CHECKPOINT_URI": f"file://{checkpoints}"}  # fmt: skip
    module = [sys.executable, "-m", "continuum.workloads.federated"]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        time.sleep(5.0)  # the head's GCS up before the participants connect; they retry anyway
        started = time.time()
        processes.append(subprocess.Popen(
            [*module, "aggregator", "--rounds", str(rounds), "--port", str(port),
             "--participants", str(len(EDGE_SITES)), "--sites", ",".join(EDGE_SITES)],
            env={**shard_env, "CONTINUUM_SHARD_INDEX": str(len(EDGE_SITES))},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        ))  # fmt: skip
        for index, site in enumerate(EDGE_SITES):
            processes.append(subprocess.Popen(
                [*module, "participant", "--site", site, "--shard", str(index),
                 "--aggregator", f"127.0.0.1:{port}"],
                env=shard_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            ))  # fmt: skip
        codes = [process.wait(timeout=timeout_s) for process in processes]
        result = _durations(started, round_times(checkpoints / f"shard-{len(EDGE_SITES)}"))
        return {**result, "exit_codes": codes}
    finally:
        for process in [*processes, head]:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def fleet(
    rounds: int, directory: Path, edge_rtt_ms: float, cloud_rtt_ms: float, timeout_s: float
) -> dict[str, Any]:
    """The same job as an MLJob on the hub of a four-member testbed, links shaped."""
    sites = member_sites(len(EDGE_SITES) + 1, None)
    testbed = Testbed(directory / "bed")
    clusters = testbed.up(len(sites), sites, kuberay=True)
    hub = next(c for c in clusters if c.name == HUB)
    register_members(clusters, None)
    operator = Operator(hub.kubeconfig, directory / "operator.log")
    checkpoints = directory / "ckpt"
    try:
        for site in sites:
            testbed.sites.shape(site, rtt_ms=cloud_rtt_ms if site == sites[-1] else edge_rtt_ms)
        kubectl(hub.kubeconfig, "apply", "-f", str(REPO / "examples" / "tenants.yaml"))
        operator.start()
        namespace, name = f"bench-{uuid.uuid4().hex[:6]}", "fedavg"
        kubectl(hub.kubeconfig, "create", "namespace", namespace)
        manifest = federated_job(
            name, namespace, list(EDGE_SITES), resources=RESOURCES,
            entrypoint=f"python -m continuum.workloads.federated --rounds {rounds}",
            checkpoint_uri=f"file://{checkpoints}",
        )  # fmt: skip
        started = time.time()
        kubectl(hub.kubeconfig, "apply", "-f", "-", stdin=json.dumps(manifest))
        location = checkpoints / f"shard-{len(EDGE_SITES)}"
        servers = testbed.process_ids()
        memory: dict[str, dict[str, float]] = {}
        phase = None
        while time.time() - started < timeout_s:
            if not memory and len(round_times(location)) >= 2:
                memory = {
                    cluster.name: {
                        "servers": rss_mib(list(servers[cluster.name].values())),
                        "pods": rss_mib([pid for ns in pod_namespaces(site)
                                          for pid in pod_network.pids_in(ns)]),
                    }
                    for cluster, site in zip(
                        [c for c in clusters if c.name != HUB], sites, strict=True
                    )
                }  # fmt: skip
            shown = kubectl(hub.kubeconfig, "get", "mljob", name, "-n", namespace, "-o",
                            "jsonpath={.status.phase}").stdout.strip()  # fmt: skip
            if shown in ("Succeeded", "Failed"):
                phase = shown
                break
            time.sleep(POLL_S * 5)
        return {**_durations(started, round_times(location)), "phase": phase,
                "memory_mib": memory}  # fmt: skip
    finally:
        if operator.process is not None:
            operator.stop()
        testbed.down()


def markdown(report: dict[str, Any]) -> str:
    local, spread = report["one_node"], report["fleet"]
    lines = [
        f"# A federated round across four members against one Ray node ({report['rounds']} rounds)",
        "",
        f"Links: edge sites {report['edge_rtt_ms']:g} ms RTT, cloud {report['cloud_rtt_ms']:g} "
        "ms; a participant's exchange with the aggregator crosses its edge link and the "
        "cloud's.",
        "",
        "| | to round 1 (s) | round p50 (s) | round p99 (s) | rounds |",
        "|---|---|---|---|---|",
    ]
    for label, result in (("one Ray node", local), ("four members", spread)):
        lines.append(
            f"| {label} | {result['to_round_1_s']} | {result['round_s']['p50_s']} | "
            f"{result['round_s']['p99_s']} | {result['rounds']} |"
        )
    lines += [
        "",
        f"Overhead of a round across the fleet: {report['overhead_s']} s "
        f"(x{report['ratio']} the one-node round).",
        "",
        "Memory while it runs (MiB): "
        + ", ".join(
            f"{member}: servers {figures['servers']}, pods {figures['pods']}"
            for member, figures in sorted(spread.get("memory_mib", {}).items())
        ),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_federated", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--edge-rtt-ms", type=float, default=20.0)
    parser.add_argument("--cloud-rtt-ms", type=float, default=10.0)
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    if not 2 <= args.rounds <= 100:
        parser.error("--rounds must be 2..100: a round's time needs two checkpoints")
    directory = args.dir or Path(tempfile.mkdtemp(prefix="bench-federated-"))
    local = one_node(args.rounds, directory / "one-node", args.timeout_s)
    spread = fleet(args.rounds, directory / "fleet", args.edge_rtt_ms, args.cloud_rtt_ms,
                   args.timeout_s)  # fmt: skip
    local_p50, spread_p50 = local["round_s"]["p50_s"], spread["round_s"]["p50_s"]
    both = local_p50 is not None and spread_p50 is not None
    report = {
        "rounds": args.rounds,
        "edge_rtt_ms": args.edge_rtt_ms,
        "cloud_rtt_ms": args.cloud_rtt_ms,
        "one_node": local,
        "fleet": spread,
        "overhead_s": round(spread_p50 - local_p50, 3) if both else None,
        "ratio": round(spread_p50 / local_p50, 2) if both and local_p50 else None,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(report))
    print(markdown(report))
    ok = local["rounds"] == args.rounds and spread["rounds"] == args.rounds
    return 0 if ok and spread["phase"] == "Succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
