"""The testbed's members as Pull members: each admitted with `continuum member join`, as an admin
admits one, and its agent (`continuum agent`) run AT its site.

Join gives each member what push registration (e2e/registration.py) gives it: the topology
cluster's site, region, tier and capacity, and then its cost and the label naming the topology
cluster, which join has no arguments for. The agent runs in the site's network namespace
(`Sites.start_process`) and dials the hub at the hub's address in the sites network, so it
reaches the hub over the site's link: a partition cuts it off (it fences), `down` kills it with
the site, and `restore` starts it again (without the hub, a restarted agent fences at once).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from e2e import registration, sites
from e2e.binaries import kubectl
from e2e.pids import stop_pid
from e2e.testbed import REPO, ClusterInfo

AGENT_PROCESS = "bench/agent"
# Beside the site's blackbox exporter (9115), on the site's own address.
AGENT_METRICS_PORT = 9116
JOIN_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
TOPOLOGY_LABEL = "continuum.dev/topology-cluster"


def join_command(
    member: str, cluster: Mapping[str, Any], region: str, server: str, hub_kubeconfig: Path
) -> list[str]:
    """`continuum member join` for `member` standing for the topology cluster `cluster`, its
    agent dialling the hub at `server`; it prints the agent's hub kubeconfig."""
    capacity = (
        f"cpu={cluster.get('cpu', 0)},memory={cluster.get('memoryGiB', 0)}Gi,"
        f"gpu={cluster.get('gpu', 0)}"
    )
    return [
        sys.executable, "-m", "continuum.operator.cli", "member", "join", member,
        "--site", str(cluster["site"]), "--region", region, "--tier", str(cluster["tier"]),
        "--capacity", capacity, "--server", server, "--output", "kubeconfig",
        "--kubeconfig", str(hub_kubeconfig),
    ]  # fmt: skip


def join_members(
    hub: ClusterInfo,
    members: Sequence[ClusterInfo],
    folder: Path,
    server: str,
    topology_file: Path | None = None,
) -> dict[str, Path]:
    """Joins `members` (member-1 first) as Pull members, with the topology clusters push
    registration would give them; returns each one's agent hub kubeconfig, written to
    `folder`."""
    source = topology_file or registration.DEFAULT_TOPOLOGY
    topology = registration.load_topology(source)
    region_of = registration.regions(topology)
    registration.apply(hub, registration.network_objects(source))
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    assigned = registration.assign_clusters(topology, len(members), source)
    for member, cluster in zip(members, assigned, strict=True):
        region = region_of.get(str(cluster["site"]), "")
        joined = subprocess.run(
            join_command(member.name, cluster, region, server, hub.kubeconfig),
            cwd=REPO, capture_output=True, text=True, timeout=JOIN_TIMEOUT_S, check=False,
        )  # fmt: skip
        if joined.returncode != 0:
            raise RuntimeError(f"continuum member join {member.name}: {joined.stderr.strip()}")
        path = folder / f"{member.name}.hub.kubeconfig"
        path.write_text(joined.stdout)
        path.chmod(0o600)
        # What push registration sets and join does not: the cost the scheduler weighs, and
        # the topology cluster the member stands for.
        patch = {
            "metadata": {"labels": {TOPOLOGY_LABEL: str(cluster["name"])}},
            "spec": {"costPerHour": float(cluster.get("costPerHour", 0.0))},
        }
        patched = kubectl(hub.kubeconfig, "patch", "membercluster", member.name,
                          "--type=merge", "-p", json.dumps(patch), check=False)  # fmt: skip
        if patched.returncode != 0:
            raise RuntimeError(f"patching MemberCluster {member.name}: {patched.stderr.strip()}")
        written[member.name] = path
    return written


def hub_reachable_from_sites(hub: ClusterInfo) -> bool:
    """Whether the hub serves at its sites address (the testbed does so with a network)."""
    return urlsplit(hub.server).hostname == sites.HUB_ADDRESS


class PullAgents:
    """Each Pull member's agent, run at its member's site. Each serves its metrics and its
    site's link probes on the site's address (`AGENT_METRICS_PORT` for the first member of a
    site, the next ports for the others): `probers()` names, per site, the agent that probes
    the site's link to the hub for Prometheus (e2e/monitoring.py)."""

    def __init__(self, network: sites.Sites, placed: Mapping[str, str], lifetime_s: float):
        self.network, self.placed, self.lifetime_s = network, dict(placed), lifetime_s
        self.endpoints: dict[str, str] = {}
        """member: the `address:port` its agent serves on"""

    def start(
        self, members: Sequence[ClusterInfo], hub_kubeconfigs: Mapping[str, Path], folder: Path
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        per_site: dict[str, int] = {}
        for member in members:
            site = self.placed[member.name]
            port = AGENT_METRICS_PORT + per_site.get(site, 0)
            per_site[site] = per_site.get(site, 0) + 1
            address = self.network.address(site)
            self.endpoints[member.name] = f"{address}:{port}"
            # `timeout` bounds the agent's life if the benchmark is killed before it stops it.
            self.network.start_process(site, AGENT_PROCESS, [
                "timeout", "--kill-after=15", f"{int(self.lifetime_s)}s",
                sys.executable, "-m", "continuum.operator.cli", "agent",
                "--member", member.name, "--kubeconfig", str(member.kubeconfig),
                "--hub-kubeconfig", str(hub_kubeconfigs[member.name]),
                "--metrics-address", address, "--metrics-port", str(port),
            ], folder / f"agent-{member.name}.log")  # fmt: skip

    def probers(self) -> dict[str, str]:
        """Per site, the `address:port` of the agent that probes its link to the hub: the
        first started there."""
        found: dict[str, str] = {}
        for member, endpoint in self.endpoints.items():
            found.setdefault(self.placed[member], endpoint)
        return found

    def stop(self) -> None:
        """Stops the agents (SIGTERM, then SIGKILL), by the pids the sites hold now: `restore`
        starts an agent again with a new one."""
        for site in dict.fromkeys(self.placed.values()):
            for process in self.network.processes(site):
                if process.name == AGENT_PROCESS:
                    stop_pid(process.pid, STOP_TIMEOUT_S)
                    self.network.forget_process(site, process.name)
