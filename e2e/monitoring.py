"""Prometheus and blackbox exporters for the testbed's sites: RTT and loss between places.

`testbed.py up --sites --prometheus` runs, beside the sites network (e2e/sites.py):

- a blackbox exporter per place: one in each site's namespace, serving on the site's address
  (port 9115), registered with the sites so that `down` kills it with the site and `restore`
  starts it again; and one for the hub place, in the root namespace on 127.0.0.1 (a free port):
  Prometheus runs there too and reaches it over the loopback, so the hub's probes are read
  without crossing any emulated link, and nothing in a site can reach it;
- one Prometheus on 127.0.0.1 (a free port) that asks every exporter, once a second, to probe
  the places it matters to probe from there: the hub probes each site, each site every other
  site. Each probe is one ICMP echo (module `icmp` of charts/continuum/files/blackbox.yaml); its
  series carry `job="continuum-links"`, `source_site` and `target_site` (the hub place is
  `hub`) and `instance` (the probed address). The recording rules of
  charts/continuum/files/link-rules.yaml (the chart's PrometheusRule embeds the same file) give
  RTT and loss per pair: docs/monitoring.md.

Pull sites may be probed from their side instead (`up(..., agent_probers=...)`, as
bench_faults.py --mode pull does): the hub does not probe such a site, and Prometheus asks the
site's Pull member's agent, on its metrics port at the site's address, to probe the hub
(`source_site=<site>, target_site=hub`), as a hub behind NAT would have it.

Prometheus scrapes a site's exporter through that site's link: as in a real deployment, a cut
site's own probes are not seen until it is back. Everything lives in DIR/monitoring (configs,
rules, logs, the TSDB, state.json); `testbed.py down` stops it. Standard library only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e.pids import has_exited, reap, stop_pid, write_json
from e2e.sites import HUB, HUB_ADDRESS, Sites

REPO = Path(__file__).resolve().parent.parent
CHART_FILES = REPO / "charts" / "continuum" / "files"
RULES = CHART_FILES / "link-rules.yaml"
MODULES = CHART_FILES / "blackbox.yaml"
JOB = "continuum-links"
MODULE = "icmp"
# The port of each site's exporter, on the site's own address (each site is its own namespace).
SITE_EXPORTER_PORT = 9115
PROBE_INTERVAL = "1s"
# The exporter ends a probe this long before Prometheus's scrape timeout (1 s): the module's own
# timeout (800 ms) then governs.
TIMEOUT_OFFSET_S = 0.1
RULE_INTERVAL = "2s"
RETENTION = "2h"
SITE_PROCESS = "monitoring/blackbox-exporter"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
EXEC_TIMEOUT_S = 10.0
PORT_ATTEMPTS = 3


class MonitoringError(RuntimeError):
    pass


def programs() -> dict[str, Path]:
    """The Debian packages' programs (`.ci/install-system-packages` installs them)."""
    found = {}
    for name in ("prometheus", "prometheus-blackbox-exporter"):
        path = shutil.which(name)
        if path is None:
            raise MonitoringError(
                f"{name} is not installed: run .ci/install-system-packages (Debian's {name})"
            )
        found[name] = Path(path).resolve()
    return found


def requirements_missing() -> str | None:
    try:
        programs()
    except MonitoringError as error:
        return str(error)
    return None


@dataclass(frozen=True)
class Pair:
    source: str
    target: str


def pairs(sites: list[str]) -> list[Pair]:
    """The ordered pairs of places probed: the hub to each site, each site to every other."""
    return [Pair(HUB, site) for site in sites] + [
        Pair(source, target) for source in sites for target in sites if source != target
    ]


def prometheus_config(
    addresses: dict[str, str],
    hub_exporter: str,
    rules: Path,
    exporter_port: int = SITE_EXPORTER_PORT,
    agent_probers: Mapping[str, str] | None = None,
    hub_address: str = HUB_ADDRESS,
) -> dict[str, Any]:
    """The scrape configuration for the sites at `addresses` (site: address, in the sites'
    order): one static target per pair, its address the probed place's, relabelled into the
    multi-target pattern (`/probe?module=icmp&target=ADDRESS` asked of the source place's
    exporter), with `source_site`, `target_site` and `instance` (the target's address).

    A site in `agent_probers` (site: its agent's `address:port`) is one the hub does not probe,
    as it could not behind NAT: its Pull member's agent probes the hub (at `hub_address`)
    instead, and that pair is `source_site=<site>, target_site=hub`."""
    groups = []
    probed_by_agent = agent_probers or {}
    for pair in pairs(list(addresses)):
        source, target, target_address = pair.source, pair.target, addresses[pair.target]
        if source == HUB and target in probed_by_agent:
            source, target, target_address = pair.target, HUB, hub_address
            exporter = probed_by_agent[source]
        elif source == HUB:
            exporter = hub_exporter
        else:
            exporter = f"{addresses[source]}:{exporter_port}"
        groups.append(
            {
                "targets": [target_address],
                "labels": {
                    "source_site": source,
                    "target_site": target,
                    "__exporter_address__": exporter,
                },
            }
        )
    return {
        "global": {
            "scrape_interval": PROBE_INTERVAL,
            "scrape_timeout": PROBE_INTERVAL,
            "evaluation_interval": RULE_INTERVAL,
        },
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": JOB,
                "metrics_path": "/probe",
                "params": {"module": [MODULE]},
                "scrape_interval": PROBE_INTERVAL,
                "scrape_timeout": PROBE_INTERVAL,
                "static_configs": groups,
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__address__"], "target_label": "instance"},
                    {"source_labels": ["__exporter_address__"], "target_label": "__address__"},
                ],
            }
        ],
    }


def _alive(pid: int, executable: str) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        running = str(Path(f"/proc/{pid}/exe").readlink())
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X") and running == executable


def _stop(pid: int, executable: str) -> None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; only if `pid` still runs `executable`."""
    if not _alive(pid, executable):
        reap(pid)
        return
    stop_pid(pid, STOP_TIMEOUT_S)


def _get(url: str, timeout_s: float = 2.0) -> str | None:
    """None when `url` answers 200, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            response.read()
    except (OSError, urllib.error.URLError) as error:
        return str(error)
    return None


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:] if log.exists() else ""


class Monitoring:
    """Prometheus and the exporters of the testbed whose sites network is `sites`; state in
    `directory` (state.json)."""

    def __init__(self, directory: Path, sites: Sites) -> None:
        self.directory = directory.resolve()
        self.sites = sites
        self.state_file = self.directory / "state.json"

    # --- state --------------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        if not self.state_file.exists():
            return {}
        state: dict[str, Any] = json.loads(self.state_file.read_text())
        return state

    def _save(self, state: dict[str, Any]) -> None:
        write_json(self.state_file, state)

    def exists(self) -> bool:
        return self.state_file.exists()

    def url(self) -> str | None:
        """Prometheus's URL, or None if it is not started."""
        prometheus = self._load().get("prometheus")
        return f"http://127.0.0.1:{prometheus['port']}" if prometheus else None

    def processes(self) -> dict[str, int]:
        """The pid of Prometheus, of the hub's exporter and of each running site exporter."""
        state = self._load()
        found: dict[str, int] = {
            name: state[name]["pid"] for name in ("prometheus", "hub-exporter") if name in state
        }
        if self.sites.state_file.exists():
            for site in self.sites.sites():
                for process in self.sites.processes(site):
                    if process.name == SITE_PROCESS:
                        found[f"{site}-exporter"] = process.pid
        return found

    def status(self) -> dict[str, bool]:
        """Per process, whether it runs; Prometheus's entry also needs it to answer /-/ready."""
        state = self._load()
        alive: dict[str, bool] = {}
        for name in ("prometheus", "hub-exporter"):
            entry = state.get(name)
            alive[name] = entry is not None and _alive(entry["pid"], entry["executable"])
        url = self.url()
        alive["prometheus"] = (
            alive["prometheus"] and url is not None and (_get(f"{url}/-/ready") is None)
        )
        if self.sites.state_file.exists():
            for site in self.sites.sites():
                entries = [p for p in self.sites.processes(site) if p.name == SITE_PROCESS]
                alive[f"{site}-exporter"] = bool(entries) and _alive(
                    entries[0].pid, entries[0].argv[0]
                )
        return alive

    # --- lifecycle ----------------------------------------------------------------------------

    def up(
        self, free_port: Callable[[], int], agent_probers: Mapping[str, str] | None = None
    ) -> str:
        """Starts what is not running (exporters, then Prometheus) and returns Prometheus's URL.
        Keeps a running Prometheus whose configuration is unchanged. `agent_probers` (site:
        `address:port` of its Pull member's agent): the sites whose link to the hub their
        agent probes, the hub not probing them (`prometheus_config`); kept until given again."""
        found = programs()
        self.directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(RULES, self.directory / RULES.name)
        shutil.copyfile(MODULES, self.directory / MODULES.name)
        exporter = str(found["prometheus-blackbox-exporter"])
        state = self._load()
        try:
            for site in self.sites.sites():
                self._site_exporter(site, exporter)
            hub = state.get("hub-exporter")
            if not hub or not _alive(hub["pid"], hub["executable"]):
                state["hub-exporter"] = self._start_here(
                    "hub-exporter", exporter, free_port,
                    lambda port: self._exporter_args(f"127.0.0.1:{port}"),
                    lambda port: f"http://127.0.0.1:{port}/-/healthy",
                )  # fmt: skip
                self._save(state)
            hub_address = f"127.0.0.1:{state['hub-exporter']['port']}"
            addresses = {site: self.sites.address(site) for site in self.sites.sites()}
            if agent_probers is not None:
                state["agent-probers"] = dict(agent_probers)
            config = json.dumps(
                prometheus_config(
                    addresses, hub_address, self.directory / RULES.name,
                    agent_probers=state.get("agent-probers"),
                ),
                indent=2,
            )  # fmt: skip
            config_file = self.directory / "prometheus.yml"
            prometheus = state.get("prometheus")
            same = config_file.exists() and config_file.read_text() == config + "\n"
            if prometheus and _alive(prometheus["pid"], prometheus["executable"]) and same:
                return f"http://127.0.0.1:{prometheus['port']}"
            if prometheus:
                _stop(prometheus["pid"], prometheus["executable"])
            config_file.write_text(config + "\n")  # JSON is YAML
            shutil.rmtree(self.directory / "data", ignore_errors=True)
            state["prometheus"] = self._start_here(
                "prometheus", str(found["prometheus"]), free_port,
                lambda port: [
                    f"--config.file={config_file}",
                    f"--storage.tsdb.path={self.directory / 'data'}",
                    f"--storage.tsdb.retention.time={RETENTION}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                lambda port: f"http://127.0.0.1:{port}/-/ready",
            )  # fmt: skip
            self._save(state)
            return f"http://127.0.0.1:{state['prometheus']['port']}"
        except BaseException:
            self._save(state)
            self.down()
            raise

    def _exporter_args(self, listen: str) -> list[str]:
        return [
            f"--config.file={self.directory / MODULES.name}",
            f"--web.listen-address={listen}",
            f"--timeout-offset={TIMEOUT_OFFSET_S}",
            "--log.level=warn",
        ]

    def _site_exporter(self, site: str, exporter: str) -> None:
        """Starts the site's exporter unless it runs; a site that is down gets it on restore."""
        running = [p for p in self.sites.processes(site) if p.name == SITE_PROCESS]
        if running and _alive(running[0].pid, exporter):
            return
        link = self.sites.links()[site]
        if link["state"] == "down":
            return
        listen = f"{self.sites.address(site)}:{SITE_EXPORTER_PORT}"
        log = self.directory / f"exporter-{site}.log"
        pid = self.sites.start_process(site, SITE_PROCESS, [exporter, *self._exporter_args(listen)],
                                       log)  # fmt: skip
        deadline = time.monotonic() + EXEC_TIMEOUT_S
        while not _alive(pid, exporter):
            if has_exited(pid) or time.monotonic() > deadline:
                raise MonitoringError(f"{site}: the exporter did not start\n{_tail(log)}")
            time.sleep(0.01)
        if link["state"] != "up":
            return  # partitioned: Prometheus reaches it once the link is back
        self._wait(f"http://{listen}/-/healthy", f"{site}'s exporter", pid, exporter, log)

    def _start_here(
        self,
        name: str,
        executable: str,
        free_port: Callable[[], int],
        arguments: Callable[[int], list[str]],
        health: Callable[[int], str],
    ) -> dict[str, Any]:
        """Starts a server in the root namespace on a free loopback port (another if the port
        was taken meanwhile) and waits until `health` answers."""
        log = self.directory / f"{name}.log"
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = free_port()
            with log.open("ab") as output:
                child = subprocess.Popen(
                    [executable, *arguments(port)],
                    stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                    start_new_session=True, cwd=self.directory,
                )  # fmt: skip
            try:
                self._wait(health(port), name, child.pid, executable, log)
            except MonitoringError:
                _stop(child.pid, executable)
                if "address already in use" in _tail(log) and attempt < PORT_ATTEMPTS:
                    continue
                raise
            return {"pid": child.pid, "executable": executable, "port": port}
        raise AssertionError("unreachable")

    def _wait(self, url: str, what: str, pid: int, executable: str, log: Path) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        problem = None
        while time.monotonic() < deadline:
            problem = _get(url)
            if problem is None:
                return
            if not _alive(pid, executable):
                break
            time.sleep(0.1)
        raise MonitoringError(f"{what} not ready at {url}: {problem}\n{_tail(log)}")

    def down(self) -> list[str]:
        """Stops Prometheus and the exporters (by pid, checked against their program) and
        removes the TSDB. Idempotent."""
        stopped = []
        state = self._load()
        for name in ("prometheus", "hub-exporter"):
            entry = state.get(name)
            if entry:
                _stop(entry["pid"], entry["executable"])
                stopped.append(name)
        if self.sites.state_file.exists():
            for site in self.sites.sites():
                for process in self.sites.processes(site):
                    if process.name == SITE_PROCESS:
                        _stop(process.pid, process.argv[0])
                        self.sites.forget_process(site, SITE_PROCESS)
                        stopped.append(f"{site}-exporter")
        shutil.rmtree(self.directory / "data", ignore_errors=True)
        self.state_file.unlink(missing_ok=True)
        return stopped
