"""The testbed: real Kubernetes control planes on 127.0.0.1, one hub and N member clusters.

Each cluster is an etcd, a kube-apiserver and a kube-controller-manager (for garbage collection,
namespace deletion and default service accounts), with its own CA, serving certificate, admin
client certificate, service-account signing key and ephemeral ports. No kubelets run, so nothing
executes in a member: tests drive the state of what the operator creates there.

    python e2e/testbed.py up --members 3 --dir DIR [--register] [--sites [--prometheus]]
                                                   [--kuberay] [--topology FILE]
    python e2e/testbed.py status --dir DIR
    python e2e/testbed.py down --dir DIR

`up` is idempotent: clusters that are already healthy are kept as they are. `down` stops only
the processes this testbed started, identified by pid and executable. The script needs only the
standard library and the openssl command, so it runs before any virtualenv exists.

With `--sites` (root only; it reads the topology, so it needs PyYAML), each member lives at its
topology site (e2e/sites.py): its etcd, kube-apiserver and kube-controller-manager run in the
site's network namespace, the API server serves on the site's address, and the hub, in the root
namespace, reaches it through the link emulator, whose links `python -m e2e.sites ... --dir
DIR/sites` shapes, partitions, takes down and restores. The hub's API server then serves at the
hub's address in the network (10.77.0.1), so a process at a site (a Pull member's agent)
reaches it over the site's link. With `--prometheus` as well, a Prometheus and a blackbox
exporter per place measure RTT and loss between the places (e2e/monitoring.py); `up` prints its
URL last (`prometheus URL`), and `status` reports it.

With `--kuberay`, each member also runs what makes its shards real: kube-scheduler, the job,
endpointslice and node-lifecycle controllers, and the real KubeRay operator (built from the Go
module proxy at binaries.KUBERAY_VERSION), with that version's CRDs instead of ../shared's.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from e2e import binaries, pki, registration
from e2e.binaries import kubectl
from e2e.monitoring import Monitoring
from e2e.pids import has_exited, reap, write_json
from e2e.sites import HUB_ADDRESS, Sites

REPO = Path(__file__).resolve().parent.parent
HUB = "hub"
ADMIN_USER = ("continuum-admin", "system:masters")
# The controller manager is made a superuser: its controllers then need no per-controller
# service accounts, which the testbed has no use for.
CONTROLLER_MANAGER_USER = ("system:kube-controller-manager", "system:masters")
CONTROLLERS = "garbage-collector-controller,namespace-controller,serviceaccount-controller"
# What a member that runs its shards needs besides: the job controller for RayJob's submitter
# Job, endpointslices for the head Service, and node lifecycle to lift a new node's not-ready
# taint once its agent reports it Ready.
SHARD_CONTROLLERS = (
    "job-controller,endpointslice-controller,node-lifecycle-controller,"
    # kube-root-ca.crt in every namespace: the CA a pod's service account volume holds.
    "root-ca-certificate-publisher-controller"
)
# What a hub with a node (`up(hub_node=True)`) needs besides, to run the chart's Deployment.
HUB_NODE_CONTROLLERS = "deployment-controller,replicaset-controller"
# The pseudo-site in the sites network where the hub's node agent runs the hub's pods (the
# operator's, as `helm install` makes them): they reach the hub at its address, 10.77.0.1, and
# the members at theirs, over the emulated links, as an operator in a hub cluster does.
CONTROL_SITE = "control"
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager")
SHARD_SERVERS = ("kube-scheduler", "ray-operator")
# At a site, a member that runs its shards also has a node, whose agent runs its pods.
NODE_AGENT = "node-agent"
NODE_CPU, NODE_MEMORY = "8", "32Gi"
READY_TIMEOUT_S = 120.0
# A port chosen free can still be taken by another process before our server binds it.
PORT_ATTEMPTS = 3
STOP_TIMEOUT_S = 15.0
LOOPBACK = "127.0.0.1"
# How long `ip netns exec` may take to become the program it runs.
EXEC_TIMEOUT_S = 10.0


def shared_dir() -> Path:
    """../shared beside the repository, as laid out for developers and CI."""
    configured = os.environ.get("CONTINUUM_SHARED")
    return Path(configured) if configured else REPO.parent / "shared"


def crd_dirs(cluster: str, kuberay: bool = False) -> list[Path]:
    """The hub gets Continuum's CRDs, which it serves to users; a member gets KubeRay's, which
    hold the shards: the version its KubeRay operator was built at when it runs one
    (`kuberay`), else the v1.7.0 ones in ../shared. KubeRay's are megabytes of schema each,
    and installing them only where they are used keeps the hub's start-up and memory down."""
    if cluster == HUB:
        return [REPO / "crds"] if any((REPO / "crds").glob("*.yaml")) else []
    if kuberay:
        return [binaries.kuberay_crds()]
    shared = shared_dir() / "kuberay" / "v1.7.0"
    if not any(shared.glob("*.yaml")):
        raise FileNotFoundError(
            f"KubeRay's CRDs are not at {shared}: shared/ must sit beside the repository "
            "(or set CONTINUUM_SHARED to its path)"
        )
    return [shared]


@dataclass
class Process:
    pid: int
    executable: str

    def is_running(self) -> bool:
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
            executable = str(Path(f"/proc/{self.pid}/exe").readlink())
        except OSError:
            return False
        # A zombie (Z) has exited but was not reaped yet; a recycled pid runs another program.
        state = stat.rsplit(")", 1)[1].split()[0]
        return state != "Z" and executable == self.executable

    def stop(self) -> None:
        if not self.is_running():
            return
        # From here on the pid is known to be ours; wait for it to be gone, not merely for its
        # /proc/<pid>/exe to stop resolving, which happens early in a process's exit.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while not has_exited(self.pid) and time.monotonic() < deadline:
            reap(self.pid)
            time.sleep(0.05)
        if not has_exited(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            while not has_exited(self.pid):
                reap(self.pid)
                time.sleep(0.05)
        reap(self.pid)


def _process_state(pid: int) -> str | None:
    """The kernel's one-letter state of `pid` (R, S, T, Z, ...), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


class PortTakenError(RuntimeError):
    """A server could not bind its port: another process took it after it was chosen."""


@dataclass
class Cluster:
    name: str
    etcd_client_port: int
    etcd_peer_port: int
    apiserver_port: int
    processes: dict[str, Process] = field(default_factory=dict)
    # The topology site whose network namespace the cluster's servers run in (None: the root
    # namespace), and the address its API server serves on.
    site: str | None = None
    host: str = LOOPBACK
    # A member that runs its shards: kube-scheduler and the real KubeRay operator as well.
    kuberay: bool = False
    # The site where the cluster's node agent runs its pods, if it has a node: a member's own
    # site, or CONTROL_SITE for the hub.
    node_site: str | None = None

    @property
    def server(self) -> str:
        return f"https://{self.host}:{self.apiserver_port}"

    def servers(self) -> tuple[str, ...]:
        """The names of the cluster's server processes, in the order they start."""
        servers = CONTROL_PLANE + (SHARD_SERVERS if self.kuberay else ())
        if self.node_site is None:
            return servers
        return servers + (() if self.kuberay else ("kube-scheduler",)) + (NODE_AGENT,)

    def is_running(self) -> bool:
        return all(
            name in self.processes and self.processes[name].is_running() for name in self.servers()
        )


@dataclass(frozen=True)
class ClusterInfo:
    """What a test or a user needs to reach one cluster."""

    name: str
    kubeconfig: Path
    server: str


_handed_out_ports: set[int] = set()
_handed_out_lock = threading.Lock()


def _free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that this process has not handed out before.

    The probe sockets stay bound until all are chosen: closed one by one, the kernel may give
    the same ephemeral port twice (it once gave etcd's client and peer ports the same number,
    and etcd died on "address already in use"). Clusters start in parallel threads, so the
    record of handed-out ports is shared under a lock.
    """
    with _handed_out_lock, contextlib.ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            probe = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
            if port not in _handed_out_ports:
                ports.append(port)
                _handed_out_ports.add(port)
        return ports


def free_port() -> int:
    """One loopback port for a server of the caller's (an operator's webhook or metrics)."""
    return _free_ports(1)[0]


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(
    path: Path, cluster: str, server: str, ca: Path, client: pki.ClientCert
) -> None:
    """A self-contained kubeconfig (certificates inline), so it can be stored in a Secret."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": cluster, "cluster": {"server": server, "certificate-authority-data": _b64(ca)}}
        ],
        "users": [
            {
                "name": f"{cluster}-admin",
                "user": {
                    "client-certificate-data": _b64(client.cert),
                    "client-key-data": _b64(client.key),
                },
            }
        ],
        "contexts": [
            {"name": cluster, "context": {"cluster": cluster, "user": f"{cluster}-admin"}}
        ],
        "current-context": cluster,
    }
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(config, indent=2) + "\n")
    temporary.chmod(0o600)
    temporary.replace(path)


class Testbed:
    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.state_file = self.directory / "state.json"
        self.sites = Sites(self.directory / "sites")
        self.monitoring = Monitoring(self.directory / "monitoring", self.sites)

    # --- state --------------------------------------------------------------------------------

    def _load(self) -> dict[str, Cluster]:
        if not self.state_file.exists():
            return {}
        raw = json.loads(self.state_file.read_text())
        clusters = {}
        for name, entry in raw["clusters"].items():
            processes = {key: Process(**value) for key, value in entry.pop("processes").items()}
            clusters[name] = Cluster(**entry, processes=processes)
            self._site_processes(clusters[name])
        return clusters

    def _site_processes(self, cluster: Cluster) -> None:
        """A site's processes are started again, with new pids, when the site is restored
        after `down`: the sites' state has their pids now."""
        if not self.sites.state_file.exists():
            return
        for site in {cluster.site, cluster.node_site} - {None}:
            assert site is not None
            for process in self.sites.processes(site):
                owner, _, key = process.name.partition("/")
                if owner == cluster.name and key in cluster.processes:
                    cluster.processes[key] = Process(process.pid, os.path.realpath(process.argv[0]))

    def _save(self, clusters: dict[str, Cluster]) -> None:
        state = {"clusters": {name: asdict(cluster) for name, cluster in clusters.items()}}
        write_json(self.state_file, state)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def cluster_dir(self, name: str) -> Path:
        return self.directory / "clusters" / name

    def kubeconfig(self, name: str) -> Path:
        return self.directory / f"{name}.kubeconfig"

    def process_ids(self) -> dict[str, dict[str, int]]:
        """Per cluster, the pid of each of its servers: for benchmarks that count their CPU."""
        return {
            name: {server: process.pid for server, process in cluster.processes.items()}
            for name, cluster in self._load().items()
        }

    def pause(self, name: str) -> int:
        """Stops cluster `name`'s kube-apiserver with SIGSTOP: its port still accepts
        connections, but nothing answers, as with a hung server. Returns its pid once the
        kernel shows it stopped. The caller must `resume` it."""
        process = self._apiserver(name)
        os.kill(process.pid, signal.SIGSTOP)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _process_state(process.pid) != "T" and time.monotonic() < deadline:
            time.sleep(0.01)
        return process.pid

    def resume(self, name: str) -> None:
        """Continues cluster `name`'s kube-apiserver (SIGCONT); harmless if it was not paused."""
        process = self._apiserver(name)
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)

    def _apiserver(self, name: str) -> Process:
        cluster = self._load().get(name)
        process = cluster.processes.get("kube-apiserver") if cluster else None
        if process is None or not process.is_running():
            raise RuntimeError(f"{name}: no kube-apiserver of this testbed is running")
        return process

    def info(self, cluster: Cluster) -> ClusterInfo:
        return ClusterInfo(cluster.name, self.kubeconfig(cluster.name), cluster.server)

    # --- lifecycle ----------------------------------------------------------------------------

    def up(
        self,
        members: int,
        sites: Sequence[str] | None = None,
        prometheus: bool = False,
        kuberay: bool = False,
        hub_node: bool = False,
    ) -> list[ClusterInfo]:
        """Starts (or keeps) the hub and `members` members. With `sites` (one per member,
        member-1 first), each member runs in its site's network namespace; with `prometheus`
        too, Prometheus and the exporters of e2e/monitoring.py run (`prometheus_url()`). With
        `kuberay`, each member runs kube-scheduler and the real KubeRay operator as well. With
        `hub_node`, the hub has a node too, at CONTROL_SITE, which runs the pods of the hub's
        Deployments (the operator's, as the chart makes it)."""
        if members < 0:
            raise ValueError("--members must be 0 or more")
        if prometheus and not sites:
            raise ValueError("--prometheus measures the links between sites: it needs --sites")
        if hub_node and not sites:
            raise ValueError("--hub-node runs the hub's pods at a site: it needs --sites")
        if sites is not None and len(sites) != members:
            raise ValueError(f"{members} members need {members} sites, not {len(sites)}")
        if sites is not None and CONTROL_SITE in sites:
            raise ValueError(f"{CONTROL_SITE!r} is the hub's pseudo-site, not a member's site")
        wanted = [HUB] + [f"member-{index}" for index in range(1, members + 1)]
        site_of: dict[str, str | None] = dict(
            zip(wanted[1:], list(sites) if sites else [None] * members, strict=True)
        )
        for build in (binaries.KUBE, binaries.KUBERAY) if kuberay else (binaries.KUBE,):
            binaries.ensure_built(build)
        with self._locked():
            clusters = self._load()
            for name in [name for name in clusters if name not in wanted]:
                self._stop(clusters.pop(name))
            # A network of other sites is made anew, and the members that were in it with it.
            network = list(dict.fromkeys(sites)) if sites else None
            if network is not None and hub_node:
                network.append(CONTROL_SITE)
            hub_node_site = CONTROL_SITE if hub_node else None
            remade = network is not None and self._network_sites() != network
            # With a network, the hub serves at its address in it, which the sites reach over
            # their links (a Pull member's agent dials the hub from its site).
            hub_host = HUB_ADDRESS if network else LOOPBACK
            to_start = [
                name
                for name in wanted
                if not self._healthy(clusters.get(name))
                or clusters[name].site != site_of.get(name)
                or (name != HUB and clusters[name].kuberay != kuberay)
                or (remade and clusters[name].site is not None)
                or (name == HUB and (clusters[name].host != hub_host or remade))
                or (name == HUB and clusters[name].node_site != hub_node_site)
            ]
            for name in to_start:
                if name in clusters:
                    self._stop(clusters.pop(name))
            if self.monitoring.exists() and (not prometheus or remade):
                self.monitoring.down()
            if network:
                self.sites.create(network)
            elif self.sites.state_file.exists():
                self.sites.destroy()
            with ThreadPoolExecutor(max_workers=max(1, len(to_start))) as pool:
                started = list(
                    pool.map(
                        lambda name: self._start(
                            name,
                            site_of.get(name),
                            hub_host if name == HUB else None,
                            kuberay=kuberay and name != HUB,
                            node_site=hub_node_site if name == HUB else None,
                        ),
                        to_start,
                    )
                )
            clusters.update({cluster.name: cluster for cluster in started})
            self._save({name: clusters[name] for name in wanted})
            if prometheus:
                self.monitoring.up(free_port)
            return [self.info(clusters[name]) for name in wanted]

    def prometheus_url(self) -> str | None:
        """The testbed's Prometheus (`up(..., prometheus=True)`), or None."""
        return self.monitoring.url()

    def _network_sites(self) -> list[str] | None:
        return self.sites.sites() if self.sites.state_file.exists() else None

    def down(self) -> list[str]:
        with self._locked():
            clusters = self._load()
            for cluster in clusters.values():
                self._stop(cluster)
            if self.monitoring.exists():
                self.monitoring.down()
            if self.sites.state_file.exists():
                self.sites.destroy()
            self.state_file.unlink(missing_ok=True)
            return list(clusters)

    def status(self) -> list[tuple[ClusterInfo, dict[str, bool], bool]]:
        rows = []
        for cluster in self._load().values():
            alive = {name: process.is_running() for name, process in cluster.processes.items()}
            rows.append((self.info(cluster), alive, self._healthy(cluster)))
        return rows

    def clusters(self) -> list[ClusterInfo]:
        return [self.info(cluster) for cluster in self._load().values()]

    # --- one cluster --------------------------------------------------------------------------

    def _healthy(self, cluster: Cluster | None) -> bool:
        if cluster is None or not cluster.is_running():
            return False
        return _readyz(cluster, pki.ClusterPki(self.cluster_dir(cluster.name) / "pki")) is None

    def _start(
        self,
        name: str,
        site: str | None = None,
        host: str | None = None,
        kuberay: bool = False,
        node_site: str | None = None,
    ) -> Cluster:
        """Starts one cluster (in the root namespace at `host`, if given); a server that lost
        its port to another process starts again. A member with `kuberay` at a site has a node
        there; the hub has one at `node_site`, if given."""
        if kuberay and site is not None:
            node_site = site
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                etcd_client, etcd_peer, apiserver = _free_ports(3)
                return self._start_on(
                    name, etcd_client, etcd_peer, apiserver, site, host, kuberay, node_site
                )
            except PortTakenError:
                if attempt == PORT_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _start_on(
        self,
        name: str,
        etcd_client_port: int,
        etcd_peer_port: int,
        apiserver_port: int,
        site: str | None = None,
        host: str | None = None,
        kuberay: bool = False,
        node_site: str | None = None,
    ) -> Cluster:
        directory = self.cluster_dir(name)
        logs = directory / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        host = host or (self.sites.address(site) if site else LOOPBACK)
        cluster_pki = pki.create_cluster_pki(
            directory / "pki",
            name,
            {"admin": ADMIN_USER, "controller-manager": CONTROLLER_MANAGER_USER},
            addresses=list(dict.fromkeys([LOOPBACK, host])),
        )
        cluster = Cluster(
            name, etcd_client_port, etcd_peer_port, apiserver_port, {}, site, host, kuberay,
            node_site,
        )  # fmt: skip
        etcd_data = directory / "etcd"
        shutil.rmtree(etcd_data, ignore_errors=True)

        def _spawn(executable: Path, args: Sequence[str], log: Path) -> Process:
            if site is None:
                return _spawn_here(executable, args, log)
            return self._spawn_at(site, f"{name}/{executable.name}", executable, args, log)

        try:
            cluster.processes["etcd"] = _spawn(
                binaries.binary("etcd"), _etcd_args(cluster, etcd_data), logs / "etcd.log"
            )
            _wait_for(lambda: _etcd_health(cluster), f"{name}: etcd", logs / "etcd.log", cluster)
            cluster.processes["kube-apiserver"] = _spawn(
                binaries.binary("kube-apiserver"),
                _apiserver_args(cluster, cluster_pki),
                logs / "kube-apiserver.log",
            )
            _wait_for(
                lambda: _readyz(cluster, cluster_pki),
                f"{name}: kube-apiserver /readyz",
                logs / "kube-apiserver.log",
                cluster,
            )
            write_kubeconfig(
                self.kubeconfig(name),
                name,
                cluster.server,
                cluster_pki.ca_cert,
                cluster_pki.client("admin"),
            )
            manager_kubeconfig = directory / "controller-manager.kubeconfig"
            write_kubeconfig(
                manager_kubeconfig,
                name,
                cluster.server,
                cluster_pki.ca_cert,
                cluster_pki.client("controller-manager"),
            )
            cluster.processes["kube-controller-manager"] = _spawn(
                binaries.binary("kube-controller-manager"),
                [
                    f"--kubeconfig={manager_kubeconfig}",
                    "--leader-elect=false",
                    "--controllers=" + ",".join(_controllers(kuberay, node_site is not None)),
                    "--secure-port=0",
                    f"--root-ca-file={cluster_pki.ca_cert}",
                ],
                logs / "kube-controller-manager.log",
            )
            install_crds(cluster, cluster_pki, self.kubeconfig(name))
            if kuberay or node_site is not None:
                # As a superuser, as the controller manager is: the testbed has no use for its
                # service account's roles.
                cluster.processes["kube-scheduler"] = _spawn(
                    binaries.binary("kube-scheduler"),
                    [
                        f"--kubeconfig={manager_kubeconfig}",
                        "--leader-elect=false",
                        "--secure-port=0",
                    ],
                    logs / "kube-scheduler.log",
                )
            if kuberay:
                # As a superuser too: KubeRay's own roles (its chart's) are not under test.
                # KubeRay exits when its API server does not answer, as when a site is restored
                # and all its servers start at once: e2e/respawn.py starts it again.
                cluster.processes["ray-operator"] = _spawn(
                    Path(sys.executable),
                    [
                        str(REPO / "e2e" / "respawn.py"),
                        "--",
                        str(binaries.binary("ray-operator")),
                        f"--kubeconfig={manager_kubeconfig}",
                        "--enable-leader-election=false",
                        # No metrics or health servers: their fixed ports would collide between
                        # members in one network namespace, and nothing scrapes them here.
                        "--metrics-addr=0",
                        "--health-probe-bind-address=0",
                        "--log-stdout-encoder=console",
                        # The head's dashboard through the API server's service proxy: this
                        # process resolves no cluster names, and the API server reaches pods.
                        "--use-kubernetes-proxy",
                    ],
                    logs / "ray-operator.log",
                )
            if node_site is not None:
                cluster.processes[NODE_AGENT] = self._spawn_at(
                    node_site,
                    f"{name}/{NODE_AGENT}",
                    agent_python(),
                    [
                        str(REPO / "e2e" / "node_agent.py"),
                        f"--kubeconfig={self.kubeconfig(name)}",
                        f"--node={name}-node", f"--site={node_site}",
                        f"--site-address={self.sites.address(node_site)}",
                        f"--dir={directory / 'node'}", f"--cpu={NODE_CPU}",
                        f"--memory={NODE_MEMORY}",
                    ],
                    logs / "node-agent.log",
                    host_mounts=True,
                )  # fmt: skip
                _wait_for(
                    lambda: _node_not_schedulable(cluster, cluster_pki, f"{name}-node"),
                    f"{name}: its node Ready and schedulable",
                    logs / "node-agent.log",
                    cluster,
                )
        except BaseException:
            for process in reversed(cluster.processes.values()):
                process.stop()
            raise
        return cluster

    def _stop(self, cluster: Cluster) -> None:
        for name in reversed(cluster.servers()):
            if name in cluster.processes:
                cluster.processes[name].stop()
                site = cluster.node_site if name == NODE_AGENT else cluster.site
                if site is not None and self.sites.state_file.exists():
                    self.sites.forget_process(site, f"{cluster.name}/{name}")
        shutil.rmtree(self.cluster_dir(cluster.name) / "etcd", ignore_errors=True)

    def _spawn_at(
        self,
        site: str,
        key: str,
        executable: Path,
        args: Sequence[str],
        log: Path,
        host_mounts: bool = False,
    ) -> Process:
        """Starts a server in the site's namespace, recorded there so that restoring the site
        after `down` starts it again; returns once `ip netns exec` has become the server."""
        pid = self.sites.start_process(site, key, [str(executable), *args], log, host_mounts)
        # /proc/<pid>/exe names the file a symlink (a virtualenv's python) points at.
        process = Process(pid, os.path.realpath(executable))
        deadline = time.monotonic() + EXEC_TIMEOUT_S
        while not process.is_running() and not has_exited(pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{key}: `ip netns exec` did not run {executable}")
            time.sleep(0.01)
        return process


def agent_python() -> Path:
    """The Python that runs the node agent: the repository's virtualenv, which has the
    Kubernetes client and Ray (the testbed itself may run on the system's Python)."""
    venv = REPO / ".venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


def _spawn_here(executable: Path, args: Sequence[str], log: Path) -> Process:
    with log.open("ab") as output:
        child = subprocess.Popen(
            [str(executable), *args],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            # Its own session: the servers outlive this command and ignore the terminal's ^C.
            start_new_session=True,
        )
    return Process(child.pid, os.path.realpath(executable))


def _controllers(kuberay: bool, node: bool) -> list[str]:
    """The controller manager's controllers: a member's shards and the hub's node (the chart's
    Deployment) need some besides the ones every cluster runs."""
    return (
        [CONTROLLERS]
        + ([SHARD_CONTROLLERS] if kuberay or node else [])
        + ([HUB_NODE_CONTROLLERS] if node and not kuberay else [])
    )


def _etcd_args(cluster: Cluster, data_dir: Path) -> list[str]:
    # At a site, etcd also listens on the site's address, for the testbed's health check from
    # the root namespace; its API server uses the namespace's own loopback.
    clients = [f"http://{host}:{cluster.etcd_client_port}" for host in {LOOPBACK, cluster.host}]
    client = f"http://{cluster.host}:{cluster.etcd_client_port}"
    peer = f"http://127.0.0.1:{cluster.etcd_peer_port}"
    return [
        f"--name={cluster.name}",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={','.join(sorted(clients))}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={cluster.name}={peer}",
        # Test data is thrown away on down; skipping fsync keeps etcd from stalling the disk.
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def _apiserver_args(cluster: Cluster, cluster_pki: pki.ClusterPki) -> list[str]:
    return [
        f"--etcd-servers=http://127.0.0.1:{cluster.etcd_client_port}",
        f"--bind-address={cluster.host}",
        f"--advertise-address={cluster.host}",
        f"--secure-port={cluster.apiserver_port}",
        f"--cert-dir={cluster_pki.directory}",
        f"--tls-cert-file={cluster_pki.serving_cert}",
        f"--tls-private-key-file={cluster_pki.serving_key}",
        f"--client-ca-file={cluster_pki.ca_cert}",
        "--authorization-mode=RBAC",
        f"--service-account-issuer={cluster.server}",
        f"--service-account-key-file={cluster_pki.service_account_pub}",
        f"--service-account-signing-key-file={cluster_pki.service_account_key}",
        # Addresses allocated to Service objects; no traffic goes to them, there is no proxy.
        "--service-cluster-ip-range=10.96.0.0/24",
        # The kubernetes Service's endpoints may not be loopback, and nothing routes to them here.
        "--endpoint-reconciler-type=none",
        # A webhook behind a Service (the chart's) is called at one of its endpoints' pod IPs,
        # as with aggregated APIs: there is no proxy to make a ClusterIP work.
        "--enable-aggregator-routing=true",
        "--profiling=false",
    ]


def _etcd_health(cluster: Cluster) -> str | None:
    try:
        with urllib.request.urlopen(
            f"http://{cluster.host}:{cluster.etcd_client_port}/health", timeout=2
        ) as response:
            body = json.loads(response.read())
    except (OSError, ValueError) as error:
        return str(error)
    return None if body.get("health") == "true" else f"unhealthy: {body}"


def _client_context(cluster_pki: pki.ClusterPki) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cluster_pki.ca_cert))
    admin = cluster_pki.client("admin")
    context.load_cert_chain(str(admin.cert), str(admin.key))
    return context


def _readyz(cluster: Cluster, cluster_pki: pki.ClusterPki) -> str | None:
    """None when /readyz answers ok, else why not."""
    try:
        with urllib.request.urlopen(
            f"{cluster.server}/readyz", timeout=3, context=_client_context(cluster_pki)
        ) as response:
            body = response.read().decode()
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}: {error.read().decode()[-500:]}"
    except OSError as error:
        return str(error)
    return None if body.strip() == "ok" else body


def _wait_for(check: Callable[[], str | None], what: str, log: Path, cluster: Cluster) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    problem = None
    while time.monotonic() < deadline:
        problem = check()
        if problem is None:
            return
        exited = [name for name, process in cluster.processes.items() if not process.is_running()]
        if exited:
            break
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    failure = PortTakenError if "address already in use" in tail else RuntimeError
    raise failure(f"{what} not ready: {problem}\n--- {log} (tail) ---\n{tail}")


def install_crds(cluster: Cluster, cluster_pki: pki.ClusterPki, kubeconfig: Path) -> None:
    """Installs the cluster's CRDs and waits until the API server says they are Established.

    Server-side apply, because KubeRay's CRDs are larger than the annotation that client-side
    apply keeps of the last applied object. The wait polls the CRDs itself: `kubectl wait` on
    KubeRay's megabyte-sized CRDs was seen to miss the condition for a minute after it was set.
    """
    sources = [arg for path in crd_dirs(cluster.name, cluster.kuberay) for arg in ("-f", str(path))]
    if not sources:
        return
    applied = kubectl(
        kubeconfig, "apply", "--server-side", "--force-conflicts",
        "--field-manager=continuum-testbed", "-o", "name", *sources,
    ).stdout.split()  # fmt: skip
    names = {entry.split("/", 1)[1] for entry in applied}
    _wait_for(
        lambda: _crds_not_established(cluster, cluster_pki, names),
        f"{cluster.name}: CRDs Established",
        kubeconfig,
        cluster,
    )


def _get(cluster: Cluster, cluster_pki: pki.ClusterPki, path: str) -> dict[str, Any] | str:
    """The object at `path` of the cluster's API, read as its admin, or why it could not be."""
    url = f"{cluster.server}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10, context=_client_context(cluster_pki)) as reply:
            found: dict[str, Any] = json.loads(reply.read())
    except (OSError, ValueError) as error:
        return str(error)
    return found


def _crds_not_established(
    cluster: Cluster, cluster_pki: pki.ClusterPki, names: set[str]
) -> str | None:
    """None when every CRD in `names` is Established, else which are not."""
    listed = _get(cluster, cluster_pki, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
    if isinstance(listed, str):
        return listed
    established = {
        crd["metadata"]["name"]
        for crd in listed.get("items", [])
        if any(
            condition.get("type") == "Established" and condition.get("status") == "True"
            for condition in (crd.get("status") or {}).get("conditions") or []
        )
    }
    missing = sorted(names - established)
    return f"not Established yet: {', '.join(missing)}" if missing else None


def _node_not_schedulable(cluster: Cluster, cluster_pki: pki.ClusterPki, node: str) -> str | None:
    """None when the node is Ready and carries no taint (the node-lifecycle controller lifts
    the not-ready one a new node gets), else why not."""
    found = _get(cluster, cluster_pki, f"/api/v1/nodes/{node}")
    if isinstance(found, str):
        return found
    conditions = (found.get("status") or {}).get("conditions") or []
    if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
        return "not Ready yet"
    taints = (found.get("spec") or {}).get("taints") or []
    return f"tainted: {taints}" if taints else None


def member_sites(members: int, topology_file: Path | None) -> list[str]:
    """The site of each member, member-1 first, as registration assigns them the topology's
    clusters: the edge clusters in order, then the first cloud cluster."""
    source = topology_file or registration.DEFAULT_TOPOLOGY
    assigned = registration.assign_clusters(registration.load_topology(source), members, source)
    return [str(cluster["site"]) for cluster in assigned]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="testbed", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start (or keep) a hub and N member clusters")
    up.add_argument("--members", type=int, default=3)
    up.add_argument("--register", action="store_true", help="register the members in the hub")
    up.add_argument("--topology", type=Path, help="topology YAML giving the members' tier and site")
    up.add_argument(
        "--sites",
        action="store_true",
        help="run each member in its topology site's network namespace (root only)",
    )
    up.add_argument(
        "--prometheus",
        action="store_true",
        help="with --sites: Prometheus and blackbox exporters measure RTT and loss between sites",
    )
    up.add_argument(
        "--kuberay",
        action="store_true",
        help="members run kube-scheduler and the real KubeRay operator, with its CRDs",
    )
    up.add_argument(
        "--hub-node",
        action="store_true",
        help=f"with --sites: the hub has a node at the pseudo-site {CONTROL_SITE!r} that runs "
        "its pods (`helm install` the operator there)",
    )
    for command in (up, commands.add_parser("down"), commands.add_parser("status")):
        command.add_argument("--dir", type=Path, required=True, help="the testbed's state folder")
    commands.add_parser("build", help="build or reuse the cached binaries, and print their folders")
    args = parser.parse_args(argv)

    if args.command == "build":
        for build in binaries.BUILDS:
            print(binaries.ensure_built(build))
        return 0
    testbed = Testbed(args.dir)
    if args.command == "up":
        started = time.monotonic()
        if args.prometheus and not args.sites:
            parser.error("--prometheus needs --sites")
        if args.hub_node and not args.sites:
            parser.error("--hub-node needs --sites")
        clusters = testbed.up(
            args.members,
            member_sites(args.members, args.topology) if args.sites else None,
            prometheus=args.prometheus,
            kuberay=args.kuberay,
            hub_node=args.hub_node,
        )
        if args.register:
            registration.register_members(clusters, args.topology)
        for cluster in clusters:
            print(f"{cluster.name} {cluster.kubeconfig} {cluster.server}")
        if args.prometheus:
            print(f"prometheus {testbed.prometheus_url()}")
        print(f"ready in {time.monotonic() - started:.1f} s", file=sys.stderr)
        return 0
    if args.command == "down":
        for name in testbed.down():
            print(f"{name} stopped")
        return 0
    all_ready = True
    for info, alive, ready in testbed.status():
        processes = " ".join(f"{name}={'up' if up else 'DOWN'}" for name, up in alive.items())
        print(f"{info.name} {info.server} {'ready' if ready else 'NOT READY'} {processes}")
        all_ready = all_ready and ready
    if testbed.monitoring.exists():
        alive = testbed.monitoring.status()
        processes = " ".join(f"{name}={'up' if up else 'DOWN'}" for name, up in alive.items())
        ready = alive.get("prometheus", False)
        # A site's exporter is down with its site: only Prometheus decides readiness here.
        print(f"prometheus {testbed.prometheus_url()} {'ready' if ready else 'NOT READY'} "
              f"{processes}")  # fmt: skip
        all_ready = all_ready and ready
    return 0 if all_ready else 1


if __name__ == "__main__":
    sys.exit(main())
