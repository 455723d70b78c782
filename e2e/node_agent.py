"""A node agent that runs pods as processes: the testbed's stand-in for a kubelet.

This machine has cgroup v1 only and no container runtime or image registry, so a real kubelet
cannot run here. This agent does what KubeRay and Ray need of one, for real: it registers a
Node with its capacity and keeps its Lease, runs the pods the scheduler binds to it (init
containers in order, then the containers), each pod in its own network namespace at the
member's site (e2e/pod_network.py) with a hostname of its own, and its containers' commands
with the environment Kubernetes would give them (e2e/pod_spec.py); it runs their exec, HTTP
and TCP probes, restarts containers as the pod's restartPolicy says, and reports phase, IP,
conditions and container statuses. When a pod is deleted it stops its processes (SIGTERM, then
SIGKILL of every process in the pod's namespace after the grace period), removes its network
and deletes the pod.

Each container runs in a mount namespace of its own with the pod's volumes mounted where it
asks (e2e/pod_volumes.py: emptyDir, ConfigMaps, Secrets, downward API and the projected service
account token the API server adds), the root read-only and its own user if its securityContext
says so (runAsUser, runAsGroup; runAsNonRoot without a user runs as 65532). Its
KUBERNETES_SERVICE_HOST and _PORT are where this agent reaches the API server (there is no
kube-proxy to make the `kubernetes` Service's ClusterIP work), so in-cluster clients work.

The one stand-in: there are no images. Every image runs from one local environment
(`--image-env`, a virtualenv with Ray and Continuum's workloads; by default the one this agent
runs from), whose `bin` leads the PATH. Each pod gets a HOME and a RAY_TMPDIR of its own (Ray
turns on token authentication when it finds one in a shared HOME, and keeps its sockets under
its temporary folder).

    python e2e/node_agent.py --kubeconfig K --node NAME --site S --dir D
                             [--cpu 8] [--memory 16Gi] [--gpus 0] [--max-pods 16]
                             [--image-env DIR] [--max-lifetime-s S]

It runs as root inside the site's namespace (`Sites.start_process`), so a site that goes down
takes it down, and `Sites.down` kills the pods with it. On SIGTERM it stops every pod it runs
and removes their networks: the testbed leaves nothing behind.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ipaddress
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from e2e import pod_network, pod_spec, pod_volumes
from e2e.pids import has_exited, reap
from e2e.sites import POD_TMP, POD_VOLUMES, pod_namespace, record_mount_point

LOG = logging.getLogger("node-agent")
REPO = Path(__file__).resolve().parent.parent
VERSION = "v1.37.2-continuum-process-agent"
TICK_S = 0.5
LEASE_DURATION_S = 40
LEASE_RENEW_S = 10.0
NODE_STATUS_S = 60.0
# Restarts back off from 1 s, doubling, to at most this.
MAX_BACKOFF_S = 30.0
PROBE_WORKERS = 4
DEFAULT_LIFETIME_S = 12 * 3600.0
# Each pod's temporary folder (RAY_TMPDIR): Ray keeps its Unix sockets in it, whose paths may
# not exceed 107 bytes, so it stays short rather than under --dir.


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Probe:
    """One probe of one container: when it is due, and its run of results."""

    spec: dict[str, Any]
    due: float
    successes: int = 0
    failures: int = 0
    passed: bool = False
    running: Future[bool] | None = None


@dataclass
class Container:
    spec: dict[str, Any]
    process: subprocess.Popen[bytes] | None = None
    pid: int | None = None
    started_at: str | None = None
    restarts: int = 0
    exit_code: int | None = None
    finished_at: str | None = None
    next_start: float = 0.0
    readiness: Probe | None = None
    liveness: Probe | None = None

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def running(self) -> bool:
        if self.pid is None:
            return False
        if self.process is not None:
            return self.process.poll() is None
        return not has_exited(self.pid)

    def ready(self) -> bool:
        if not self.running():
            return False
        return self.readiness.passed if self.readiness is not None else True


@dataclass
class Pod:
    uid: str
    namespace: str
    name: str
    key: str
    address: str
    start_time: str
    init: list[Container]
    containers: list[Container]
    restart_policy: str
    stopping_since: float | None = None
    finished: str | None = None  # Succeeded or Failed, once the pod will run no more
    volumes: dict[str, pod_volumes.Volume] | None = None  # written at its first start
    reported: dict[str, Any] = field(default_factory=dict)

    def all(self) -> list[Container]:
        return [*self.init, *self.containers]


class NodeAgent:
    def __init__(
        self,
        api: client.ApiClient,
        node: str,
        site: str,
        site_address: str,
        directory: Path,
        capacity: dict[str, str],
        image_env: Path,
        max_pods: int,
    ) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.coordination = client.CoordinationV1Api(api)
        self.node, self.site, self.site_address = node, site, site_address
        self.directory = directory
        self.capacity = {**capacity, "pods": str(max_pods)}
        self.image_env = image_env
        # The stand-in's image: the virtualenv, the source tree it installs (editable) and the
        # interpreter it was made from; and the folders above it that a user other than root
        # may not pass (/root, where pyenv keeps interpreters), which in a real image would
        # not be there.
        self.image_paths = list(dict.fromkeys([image_env.resolve(), REPO,
                                               _interpreter_prefix(image_env)]))  # fmt: skip
        self.image_veils = sorted(
            {str(v) for path in self.image_paths if (v := _closed_ancestor(path)) is not None}
        )
        self.max_pods = max_pods
        self.cidr = pod_network.pod_cidr(site_address)
        self.pods: dict[str, Pod] = {}
        self.probes = ThreadPoolExecutor(PROBE_WORKERS, thread_name_prefix="probe")
        self.stop = threading.Event()
        self.lease_renewed = 0.0
        self.status_reported = 0.0
        # No kube-proxy: a pod reaches the API server where the agent does, the member's
        # address at its site, which its serving certificate names.
        served = urllib3.util.parse_url(api.configuration.host)
        self.api_host, self.api_port = served.host or "", str(served.port or 443)

    # --- the node -------------------------------------------------------------------------

    def register(self) -> None:
        labels = {
            "kubernetes.io/hostname": self.node,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "topology.kubernetes.io/zone": self.site,
        }
        with contextlib.suppress(ApiException):
            self.core.create_node(
                client.V1Node(metadata=client.V1ObjectMeta(name=self.node, labels=labels))
            )
        self.report_node()
        self.renew_lease()

    def report_node(self) -> None:
        now = _now()
        conditions = [
            {"type": kind, "status": "False", "reason": "NoPressure", "message": "",
             "lastHeartbeatTime": now, "lastTransitionTime": now}
            for kind in ("MemoryPressure", "DiskPressure", "PIDPressure")
        ]  # fmt: skip
        conditions.append(
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "the process node agent is running pods",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
        )
        info = {
            "machineID": self.node, "systemUUID": self.node, "bootID": self.node,
            "kernelVersion": os.uname().release, "osImage": "continuum testbed",
            "containerRuntimeVersion": "process://" + VERSION, "kubeletVersion": VERSION,
            "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
        }  # fmt: skip
        status = {
            "capacity": self.capacity,
            "allocatable": self.capacity,
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": self.site_address},
                {"type": "Hostname", "address": self.node},
            ],
            "nodeInfo": info,
        }
        self.core.patch_node_status(self.node, {"status": status})
        self.status_reported = time.monotonic()

    def renew_lease(self) -> None:
        spec = client.V1LeaseSpec(
            holder_identity=self.node,
            lease_duration_seconds=LEASE_DURATION_S,
            renew_time=datetime.now(UTC),
        )
        try:
            self.coordination.patch_namespaced_lease(
                self.node, "kube-node-lease", {"spec": self.api.sanitize_for_serialization(spec)}
            )
        except ApiException as error:
            if error.status != 404:
                raise
            lease = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.node, namespace="kube-node-lease"),
                spec=spec,
            )
            self.coordination.create_namespaced_lease("kube-node-lease", lease)
        self.lease_renewed = time.monotonic()

    # --- the loop -------------------------------------------------------------------------

    def run(self, max_lifetime_s: float) -> None:
        pod_network.ensure_bridge(self.cidr)
        deadline = time.monotonic() + max_lifetime_s
        registered = False
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                # Restored with its site, the agent may start before its API server answers.
                if not registered:
                    self.register()
                    registered = True
                self.tick()
            except ApiException as error:
                LOG.warning("API server: %s %s", error.status, _message(error))
            except urllib3.exceptions.HTTPError as error:
                LOG.warning("API server unreachable: %s", error)
            except Exception:  # one bad pass must not stop the node; the next retries
                LOG.exception("pass failed")
            self.stop.wait(TICK_S)
        self.shutdown()

    def tick(self) -> None:
        now = time.monotonic()
        if now - self.lease_renewed >= LEASE_RENEW_S:
            self.renew_lease()
        if now - self.status_reported >= NODE_STATUS_S:
            self.report_node()
        listed = self.core.list_pod_for_all_namespaces().items
        pods = [self.api.sanitize_for_serialization(pod) for pod in listed]
        mine = {pod["metadata"]["uid"]: pod for pod in pods
                if (pod.get("spec") or {}).get("nodeName") == self.node}  # fmt: skip
        services = [
            self.api.sanitize_for_serialization(service)
            for service in self.core.list_service_for_all_namespaces().items
        ]
        for uid in [uid for uid in self.pods if uid not in mine]:
            self.forget(self.pods.pop(uid))
        for pod in mine.values():
            try:
                self.reconcile(pod, pods, services)
            except ApiException as error:  # the other pods go on
                LOG.warning("pod %s/%s: API server: %s %s", pod["metadata"]["namespace"],
                            pod["metadata"]["name"], error.status, _message(error))  # fmt: skip
            except (OSError, pod_network.PodNetworkError):
                LOG.exception("pod %s/%s", pod["metadata"]["namespace"], pod["metadata"]["name"])

    def reconcile(
        self, pod: dict[str, Any], every_pod: list[dict[str, Any]], services: list[dict[str, Any]]
    ) -> None:
        metadata = pod["metadata"]
        uid = metadata["uid"]
        run = self.pods.get(uid)
        if metadata.get("deletionTimestamp"):
            if run is None:
                self._delete(pod)
                return
            self.terminate(run, float(metadata.get("deletionGracePeriodSeconds") or 0))
            if not self._pod_pids(run):
                self.forget(run)
                self.pods.pop(uid, None)
                self._delete(pod)
            return
        if run is None:
            phase = (pod.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                return
            run = self.admit(pod)
            if run is None:
                return
        if run.finished is None:
            self.write_names(run, every_pod, services)
            self.advance(run, pod)
            self.probe(run)
        self.report(run)

    # --- a pod's life ---------------------------------------------------------------------

    def admit(self, pod: dict[str, Any]) -> Pod | None:
        metadata, spec = pod["metadata"], pod["spec"]
        if len(self.pods) >= self.max_pods:
            return None
        taken = {ipaddress.IPv4Address(run.address) for run in self.pods.values()}
        free = [a for a in pod_network.pod_addresses(self.cidr) if a not in taken]
        # A pod this node ran before (its agent restarted with its site) keeps its address
        # and start time: the API server refuses a pod's IP changed once set.
        status = pod.get("status") or {}
        if status.get("podIP"):
            free = [a for a in free if str(a) == status["podIP"]]
        if not free:
            return None
        key = metadata["uid"].replace("-", "")[:10]
        pod_network.add_pod(self.site, key, free[0], self.cidr)
        run = Pod(
            uid=metadata["uid"], namespace=metadata["namespace"], name=metadata["name"],
            key=key, address=str(free[0]), start_time=status.get("startTime") or _now(),
            init=[Container(c) for c in spec.get("initContainers") or []],
            containers=[Container(c) for c in spec.get("containers") or []],
            restart_policy=spec.get("restartPolicy", "Always"),
        )  # fmt: skip
        (self.pod_dir(run) / "home").mkdir(parents=True, exist_ok=True)
        self.pods[run.uid] = run
        LOG.info("pod %s/%s: %s in %s", run.namespace, run.name, run.address, run.key)
        return run

    def pod_dir(self, run: Pod) -> Path:
        return self.directory / "pods" / run.key

    def advance(self, run: Pod, pod: dict[str, Any]) -> None:
        """Starts, restarts or finishes containers as the pod's state and restartPolicy say."""
        for container in run.init:
            if container.exit_code == 0:
                continue
            if container.running():
                return
            if container.pid is not None:
                self._collect(container)
                if container.exit_code == 0:
                    continue
                if run.restart_policy == "Never":
                    run.finished = "Failed"
                    return
            self._start_when_due(run, pod, container)
            return
        for container in run.containers:
            if container.running():
                continue
            if container.pid is not None and container.exit_code is None:
                self._collect(container)
            if container.pid is None or self._restarts(run, container):
                self._start_when_due(run, pod, container)
        if all(not c.running() and c.exit_code is not None for c in run.containers) and not any(
            self._restarts(run, c) for c in run.containers
        ):
            failed = any(c.exit_code != 0 for c in run.containers)
            run.finished = "Failed" if failed else "Succeeded"
            self.forget(run, keep=True)

    def _restarts(self, run: Pod, container: Container) -> bool:
        if container.exit_code is None:
            return False
        return run.restart_policy == "Always" or (
            run.restart_policy == "OnFailure" and container.exit_code != 0
        )

    def _collect(self, container: Container) -> None:
        if container.process is not None:
            code = container.process.poll()
            container.exit_code = code if code is not None else 137
        else:
            reap(container.pid or 0)
            container.exit_code = 137
        container.finished_at = _now()
        LOG.info("container %s exited %s", container.name, container.exit_code)

    def _start_when_due(self, run: Pod, pod: dict[str, Any], container: Container) -> None:
        now = time.monotonic()
        if now < container.next_start:
            return
        if container.pid is not None:
            container.restarts += 1
        container.next_start = now + min(MAX_BACKOFF_S, 2.0 ** min(container.restarts, 8))
        facts = pod_spec.NodeFacts(self.node, self.site_address, run.address)
        try:
            who = pod_spec.identity(pod, container.spec)
        except pod_spec.PodSpecError as error:
            self._refuse(run, container, error)
            return
        try:
            mounting = self._mount_commands(run, pod, container, facts, who)
        except (pod_spec.PodSpecError, ApiException, OSError) as error:
            # As a kubelet: the container waits (ContainerCreating) until its volumes can be
            # made, a ConfigMap or Secret created, say; it is tried again at its next start.
            LOG.warning("pod %s/%s: volumes: %s", run.namespace, run.name, error)
            return
        try:
            environment = pod_spec.env(pod, container.spec, facts, self._lookup)
            command = pod_spec.argv(container.spec, environment)
        except pod_spec.PodSpecError as error:
            self._refuse(run, container, error)
            return
        home = self.pod_dir(run) / "home"
        ray_tmp = POD_TMP / run.key
        ray_tmp.mkdir(parents=True, exist_ok=True)
        # Its own user, once its volumes are mounted (which takes root): setpriv, as a
        # container runtime drops to the image's or the securityContext's user.
        run_as: list[str] = []
        if who is not None:
            for owned in (home, ray_tmp):
                os.chown(owned, who.uid, who.gid)
            run_as = ["setpriv", f"--reuid={who.uid}", f"--regid={who.gid}", "--clear-groups",
                      "--"]  # fmt: skip
        environment = {
            **environment,
            "PATH": f"{self.image_env / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "HOSTNAME": run.name,
            "RAY_TMPDIR": str(ray_tmp),
            "KUBERNETES_SERVICE_HOST": self.api_host,
            "KUBERNETES_SERVICE_PORT": self.api_port,
            "KUBERNETES_SERVICE_PORT_HTTPS": self.api_port,
        }
        log = (self.pod_dir(run) / f"{container.name}.log").open("ab")
        # A mount namespace of its own for its volumes, a UTS namespace for its hostname.
        script = " && ".join([*mounting, 'hostname "$0"', 'exec "$@"'])
        wrapped = [
            "ip", "netns", "exec", pod_namespace(self.site, run.key),
            "unshare", "--uts", "--mount", "--propagation", "private", "--",
            "/bin/sh", "-c", script, run.name[:63], *run_as, *command,
        ]  # fmt: skip
        container.process = subprocess.Popen(
            wrapped, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=environment, cwd=container.spec.get("workingDir") or home,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        container.pid = container.process.pid
        container.exit_code, container.finished_at = None, None
        container.started_at = _now()
        now = time.monotonic()
        for kind in ("readinessProbe", "livenessProbe"):
            probe_spec = container.spec.get(kind)
            probe = (
                Probe(probe_spec, now + float(probe_spec.get("initialDelaySeconds", 0)))
                if probe_spec
                else None
            )
            setattr(container, "readiness" if kind == "readinessProbe" else "liveness", probe)
        LOG.info("pod %s/%s: started %s (pid %s)", run.namespace, run.name, container.name,
                 container.pid)  # fmt: skip

    def _refuse(self, run: Pod, container: Container, error: pod_spec.PodSpecError) -> None:
        """A container this node cannot run, as the pod asks it: it fails, exit code 128."""
        LOG.warning("pod %s/%s: %s", run.namespace, run.name, error)
        container.exit_code, container.finished_at = 128, _now()
        container.pid = container.pid or 0

    def _mount_commands(
        self,
        run: Pod,
        pod: dict[str, Any],
        container: Container,
        facts: pod_spec.NodeFacts,
        who: pod_spec.Identity | None,
    ) -> list[str]:
        """Writes the pod's volumes at its first start, makes the container's mount points
        and gives the commands that mount them in its namespace."""
        if run.volumes is None:
            run.volumes = pod_volumes.volumes(pod, self._lookup, self._token(run), facts)
            for volume in run.volumes.values():
                folder = POD_VOLUMES / run.key / volume.name
                folder.mkdir(parents=True, exist_ok=True)
                if volume.empty_dir:
                    folder.chmod(0o777)
                for relative, (content, mode) in volume.files.items():
                    path = folder / relative
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(content)
                    path.chmod(mode)
        mounts = pod_volumes.mounts(container.spec, run.volumes)
        folders = {name: str(POD_VOLUMES / run.key / name) for name in run.volumes}
        for mount in mounts:
            source = Path(folders[mount.volume]) / mount.sub_path
            self._mount_point(Path(mount.path), is_file=source.is_file())
        image = {}
        for index, path in enumerate(self.image_paths):
            kept = POD_VOLUMES / run.key / ".image" / str(index)
            kept.mkdir(parents=True, exist_ok=True)
            image[str(path)] = str(kept)
        veils = self.image_veils if who is not None and who.uid != 0 else []
        return pod_volumes.mount_commands(
            mounts, folders, run.volumes, pod_volumes.read_only_root(container.spec), image, veils
        )

    def _mount_point(self, path: Path, is_file: bool) -> None:
        if path.exists():
            return
        missing = path
        while not missing.parent.exists():
            missing = missing.parent
        if is_file:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            path.mkdir(parents=True)
        # Not removed when this agent stops: another agent's pods may be mounted there, and
        # removing the folder would unmount them. The sites' sweep removes it.
        record_mount_point(missing)

    def _token(self, run: Pod) -> pod_volumes.TokenSource:
        def issue(account: str, audience: str | None, expiration_s: int) -> str:
            spec: dict[str, Any] = {
                "expirationSeconds": expiration_s,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": run.name,
                                   "uid": run.uid},
            }  # fmt: skip
            if audience:
                spec["audiences"] = [audience]
            request = client.AuthenticationV1TokenRequest(spec=spec)
            issued = self.core.create_namespaced_service_account_token(
                account, run.namespace, request
            )
            if issued.status is None:
                raise pod_spec.PodSpecError(f"no token was issued for service account {account}")
            return str(issued.status.token)

        return issue

    def _lookup(self, kind: str, namespace: str, name: str) -> Mapping[str, str] | None:
        try:
            if kind == "configmap":
                found = self.core.read_namespaced_config_map(name, namespace)
                return dict(found.data or {})
            secret = self.core.read_namespaced_secret(name, namespace)
            return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    # --- probes ---------------------------------------------------------------------------

    def probe(self, run: Pod) -> None:
        now = time.monotonic()
        for container in run.containers:
            if not container.running():
                continue
            for probe, liveness in ((container.readiness, False), (container.liveness, True)):
                if probe is None:
                    continue
                if probe.running is not None and probe.running.done():
                    self._record(probe, probe.running.result())
                    probe.running = None
                    if liveness and probe.failures >= int(probe.spec.get("failureThreshold", 3)):
                        LOG.info("container %s failed its liveness probe", container.name)
                        self._kill_container(container)
                        probe.failures = 0
                if probe.running is None and now >= probe.due:
                    probe.due = now + float(probe.spec.get("periodSeconds", 10))
                    probe.running = self.probes.submit(
                        self._run_probe, run, probe.spec, container.spec
                    )

    def _record(self, probe: Probe, passed: bool) -> None:
        if passed:
            probe.successes, probe.failures = probe.successes + 1, 0
            if probe.successes >= int(probe.spec.get("successThreshold", 1)):
                probe.passed = True
        else:
            probe.successes, probe.failures = 0, probe.failures + 1
            if probe.failures >= int(probe.spec.get("failureThreshold", 3)):
                probe.passed = False

    def _run_probe(self, run: Pod, spec: dict[str, Any], container: dict[str, Any]) -> bool:
        timeout = float(spec.get("timeoutSeconds", 1))
        namespace = pod_namespace(self.site, run.key)
        if "exec" in spec:
            command = list(spec["exec"].get("command") or [])
        elif "httpGet" in spec:
            get = spec["httpGet"]
            scheme = str(get.get("scheme", "HTTP")).lower()
            port = pod_spec.container_port(container, get["port"])
            if port is None:
                return False  # a port name the container does not declare, as a kubelet says
            url = f"{scheme}://127.0.0.1:{port}{get.get('path', '/')}"
            command = ["curl", "-sf", "-o", "/dev/null", "-m", str(timeout), url]
        elif "tcpSocket" in spec:
            port = pod_spec.container_port(container, spec["tcpSocket"]["port"])
            if port is None:
                return False
            command = ["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"]
        else:
            return True
        environment = {"PATH": f"{self.image_env / 'bin'}:/usr/local/bin:/usr/bin:/bin"}
        try:
            result = subprocess.run(
                ["ip", "netns", "exec", namespace, *command], env=environment,
                # The command's own timeout, and the time `ip netns exec` takes to start it.
                capture_output=True, timeout=timeout + 2, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0

    # --- stopping -------------------------------------------------------------------------

    def _kill_container(self, container: Container) -> None:
        if container.pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(container.pid, signal.SIGKILL)

    def _pod_pids(self, run: Pod) -> list[int]:
        return pod_network.namespace_pids(self.site, run.key)

    def terminate(self, run: Pod, grace_s: float) -> None:
        """SIGTERM to every process of the pod once, SIGKILL after `grace_s`."""
        now = time.monotonic()
        if run.stopping_since is None:
            run.stopping_since = now
            self._signal(run, signal.SIGTERM)
        if now - run.stopping_since >= grace_s:
            self._signal(run, signal.SIGKILL)
        for container in run.all():
            if container.process is not None:
                container.process.poll()

    def _signal(self, run: Pod, sig: signal.Signals) -> None:
        for pid in self._pod_pids(run):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def forget(self, run: Pod, keep: bool = False) -> None:
        """Kills whatever of the pod still runs and removes its network. With `keep` its record
        stays (a finished pod the agent must not start again)."""
        deadline = time.monotonic() + 10
        while self._pod_pids(run) and time.monotonic() < deadline:
            self._signal(run, signal.SIGKILL)
            time.sleep(0.05)
        for container in run.all():
            if container.process is not None:
                container.process.poll()
        pod_network.remove_pod(self.site, run.key)
        shutil.rmtree(POD_TMP / run.key, ignore_errors=True)
        shutil.rmtree(POD_VOLUMES / run.key, ignore_errors=True)
        if not keep:
            LOG.info("pod %s/%s removed", run.namespace, run.name)

    def _delete(self, pod: dict[str, Any]) -> None:
        metadata = pod["metadata"]
        with contextlib.suppress(ApiException):
            self.core.delete_namespaced_pod(
                metadata["name"], metadata["namespace"], grace_period_seconds=0,
                body=client.V1DeleteOptions(
                    grace_period_seconds=0,
                    preconditions=client.V1Preconditions(uid=metadata["uid"]),
                ),
            )  # fmt: skip

    def shutdown(self) -> None:
        for run in list(self.pods.values()):
            self.forget(run)
        self.pods.clear()
        self.probes.shutdown(wait=False, cancel_futures=True)
        for shared in (POD_TMP, POD_VOLUMES):
            with contextlib.suppress(OSError):  # another node's agent may still use it
                shared.rmdir()

    # --- names and status -----------------------------------------------------------------

    def write_names(
        self, run: Pod, every_pod: list[dict[str, Any]], services: list[dict[str, Any]]
    ) -> None:
        entries = []
        for service in services:
            metadata, spec = service["metadata"], service.get("spec") or {}
            selector = spec.get("selector") or {}
            if not selector:
                continue
            name, namespace = metadata["name"], metadata["namespace"]
            backing = [
                pod for pod in every_pod
                if pod["metadata"]["namespace"] == namespace
                and (pod.get("status") or {}).get("podIP")
                and all((pod["metadata"].get("labels") or {}).get(k) == v
                        for k, v in selector.items())
            ]  # fmt: skip
            if not backing:
                continue
            names = [f"{name}.{namespace}.svc.{pod_network.CLUSTER_DOMAIN}",
                     f"{name}.{namespace}.svc", f"{name}.{namespace}"]  # fmt: skip
            if namespace == run.namespace:
                names.append(name)
            # No kube-proxy: a Service's name leads to its first backing pod, on the same port.
            entries.append((str(backing[0]["status"]["podIP"]), names))
        hosts = pod_network.hosts_file(run.name[:63], run.address, entries)
        pod_network.write_names(self.site, run.key, hosts, pod_network.resolv_conf(run.namespace))

    def report(self, run: Pod) -> None:
        status = self.status_of(run)
        if status == run.reported:
            return
        self.core.patch_namespaced_pod_status(run.name, run.namespace, {"status": status})
        run.reported = status

    def status_of(self, run: Pod) -> dict[str, Any]:
        initialized = all(c.exit_code == 0 for c in run.init)
        ready = initialized and run.finished is None and all(c.ready() for c in run.containers)
        started = initialized and any(c.pid for c in run.containers)
        phase = run.finished or ("Running" if started else "Pending")

        def condition(kind: str, value: bool) -> dict[str, Any]:
            previous = next((c for c in run.reported.get("conditions", [])
                             if c["type"] == kind), None)  # fmt: skip
            status = "True" if value else "False"
            since = (
                previous["lastTransitionTime"]
                if previous and previous["status"] == status
                else _now()
            )
            return {"type": kind, "status": status, "lastTransitionTime": since}

        return {
            "phase": phase,
            "hostIP": self.site_address,
            "hostIPs": [{"ip": self.site_address}],
            "podIP": run.address,
            "podIPs": [{"ip": run.address}],
            "startTime": run.start_time,
            "conditions": [
                condition("PodScheduled", True),
                condition("Initialized", initialized),
                condition("ContainersReady", ready),
                condition("Ready", ready),
            ],
            "initContainerStatuses": [self._container_status(c) for c in run.init],
            "containerStatuses": [self._container_status(c) for c in run.containers],
        }

    def _container_status(self, container: Container) -> dict[str, Any]:
        if container.running():
            state: dict[str, Any] = {"running": {"startedAt": container.started_at}}
        elif container.exit_code is not None:
            state = {"terminated": {
                "exitCode": container.exit_code,
                "reason": "Completed" if container.exit_code == 0 else "Error",
                "startedAt": container.started_at, "finishedAt": container.finished_at,
            }}  # fmt: skip
        else:
            state = {"waiting": {"reason": "ContainerCreating"}}
        image = str(container.spec.get("image", ""))
        return {
            "name": container.name,
            "image": image,
            "imageID": f"process://{self.image_env}",
            "ready": container.ready(),
            "started": container.running(),
            "restartCount": container.restarts,
            "state": state,
        }


def _interpreter_prefix(environment: Path) -> Path:
    """Where the virtualenv's interpreter lives (pyvenv.cfg's `home` is its bin folder)."""
    config_file = environment / "pyvenv.cfg"
    if config_file.exists():
        for line in config_file.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home":
                return Path(value.strip()).resolve().parent
    return Path(sys.base_prefix).resolve()


def _closed_ancestor(path: Path) -> Path | None:
    """The highest folder above `path` that other users may not pass through, if any."""
    for ancestor in reversed(path.parents):
        if ancestor != Path("/") and not ancestor.stat().st_mode & 0o001:
            return ancestor
    return None


def _message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except ValueError:
        return str(error.reason)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="node_agent", description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--site", required=True, help="the site whose namespace it runs in")
    parser.add_argument("--site-address", required=True)
    parser.add_argument("--dir", type=Path, required=True, help="where pods keep their files")
    parser.add_argument("--cpu", default="8")
    parser.add_argument("--memory", default="16Gi")
    parser.add_argument("--gpus", type=int, default=0)
    parser.add_argument("--max-pods", type=int, default=16)
    parser.add_argument("--image-env", type=Path, default=Path(sys.prefix))
    parser.add_argument("--max-lifetime-s", type=float, default=DEFAULT_LIFETIME_S)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    capacity = {"cpu": args.cpu, "memory": args.memory, "ephemeral-storage": "100Gi"}
    if args.gpus:
        capacity["nvidia.com/gpu"] = str(args.gpus)
    api = config.new_client_from_config(config_file=str(args.kubeconfig))
    agent = NodeAgent(api, args.node, args.site, args.site_address, args.dir, capacity,
                      args.image_env, args.max_pods)  # fmt: skip
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signal, _frame: agent.stop.set())
    agent.run(args.max_lifetime_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
