"""Sites as network places: one network namespace per site, joined through the link emulator.

Each site `S` gets the namespace `ctm-S`, the address `10.77.<i>.1` (i = 1, 2, ... in the order
the sites are given) on a TUN device `uplink`, and a route for 10.77.0.0/16 through it, and no
other route. The root namespace is the place `hub`: its TUN `ctm-hub` has 10.77.0.1 and the
route for 10.77.0.0/16, which is all this module adds to the root namespace. The emulator
(e2e/netemu.py, one process) forwards between the TUNs with each site link's added RTT, jitter
and loss (see there). A site's link can be shaped, partitioned (the site runs, its link drops
everything), the site taken down (its processes are killed and its link drops everything) and
restored (its processes are started again, the link healthy).

    python -m e2e.sites create --dir DIR --site delft --site ghent [--max-lifetime-s S]
    python -m e2e.sites shape --dir DIR --site delft --rtt-ms 80 --jitter-ms 5 --loss-pct 2
    python -m e2e.sites partition|down|restore --dir DIR --site delft
    python -m e2e.sites status --dir DIR
    python -m e2e.sites exec --dir DIR --site delft -- COMMAND ...
    python -m e2e.sites play --dir DIR SCRIPT.csv [--hold-s S]
    python -m e2e.sites destroy [--dir DIR]

`destroy` is idempotent and also sweeps what a crashed run left: every `ctm-` namespace (and
the processes in it), and the emulator found as the owner of the `ctm-hub` device.
Standard library only, so the testbed can use it before any virtualenv exists; it runs as root.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from e2e import netemu
from e2e.pids import has_exited, reap, write_json

PREFIX = "ctm-"
NET = "10.77"
HUB = "hub"
HUB_DEVICE = f"{PREFIX}hub"
EMULATOR = Path(__file__).resolve().parent / "netemu.py"
MACHINE_LOCK = Path("/run/lock/ctm-sites.lock")
# The node agents' folders for their pods: short temporary folders (Ray's socket paths) and
# volumes, outside /tmp so that a container's emptyDir on /tmp hides none of them.
POD_TMP = Path("/tmp/ctm-pods")
POD_VOLUMES = Path("/var/lib/ctm-pods")
POD_FOLDERS = (POD_TMP, POD_VOLUMES)
# The mount points node agents had to make on the machine (a container's mountPath that did
# not exist), one a line, for the sweep to remove.
MOUNT_POINTS = Path("/run/ctm-mount-points")
DEFAULT_LIFETIME_S = 12 * 3600.0
MAX_SITES = 250
SITE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,29}$")
# The largest shaping accepted: a link that slow is a link that is down.
MAX_RTT_MS = 10_000.0
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
STATES = ("up", "down", "partition")


HUB_ADDRESS = netemu.address(NET, 0)
"""The hub's address in a sites network (on its TUN, in the root namespace): what a process at
a site dials to reach the hub, over the site's link."""


class SitesError(RuntimeError):
    pass


def namespace(site: str) -> str:
    return f"{PREFIX}{site}"


def pod_namespace(site: str, key: str) -> str:
    """The network namespace of one pod at `site` (e2e/pod_network.py): it fails with the site."""
    return f"{PREFIX}{site}.{key}"


def pod_namespaces(site: str) -> list[str]:
    return [name for name in _namespaces() if name.startswith(pod_namespace(site, ""))]


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise SitesError(f"{' '.join(args)}: {result.stderr.strip()}")
    return result


def requirements_missing() -> str | None:
    """Why sites cannot be made on this machine, or None if they can."""
    if os.geteuid() != 0:
        return "sites need root (network namespaces, TUN devices)"
    if not Path("/dev/net/tun").exists():
        return "sites need /dev/net/tun"
    if _run("ip", "-V", check=False).returncode != 0:
        return "sites need the ip command (iproute2)"
    return None


def _namespaces() -> list[str]:
    listed = _run("ip", "netns", "list", check=False).stdout.split("\n")
    return [line.split()[0] for line in listed if line.strip()]


def _namespace_pids(name: str) -> list[int]:
    return [int(pid) for pid in _run("ip", "netns", "pids", name, check=False).stdout.split()]


def _stop_pids(pids: Sequence[int], first: signal.Signals, timeout_s: float) -> None:
    """Sends `first` to each pid, waits up to `timeout_s` for them all, then SIGKILLs the rest."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, first)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not all(has_exited(pid) for pid in pids):
        for pid in pids:
            reap(pid)
        time.sleep(0.02)
    for pid in pids:
        if not has_exited(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not all(has_exited(pid) for pid in pids):
        for pid in pids:
            reap(pid)
        time.sleep(0.02)
    for pid in pids:
        reap(pid)


def _tun_owners(device_prefix: str) -> list[int]:
    """Processes holding a TUN device whose name starts with `device_prefix` (root namespace)."""
    owners = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for info in (proc / "fdinfo").iterdir():
                with contextlib.suppress(OSError):
                    for line in info.read_text().splitlines():
                        if line.startswith("iff:") and line.split()[1].startswith(device_prefix):
                            owners.add(int(proc.name))
    return sorted(owners)


def sweep() -> list[str]:
    """Removes everything of any sites network on this machine: the emulator (the owner of the
    hub's TUN, whose devices go with it), every process in a `ctm-` namespace, and the
    namespaces. Returns what it removed. Idempotent."""
    removed = []
    emulators = _tun_owners(HUB_DEVICE)
    _stop_pids(emulators, signal.SIGTERM, STOP_TIMEOUT_S)
    removed += [f"emulator pid {pid}" for pid in emulators]
    for name in _namespaces():
        if not name.startswith(PREFIX):
            continue
        pids = _namespace_pids(name)
        _stop_pids(pids, signal.SIGKILL, STOP_TIMEOUT_S)
        removed += [f"pid {pid} in {name}" for pid in pids]
        _run("ip", "netns", "del", name, check=False)
        removed.append(f"namespace {name}")
        # A pod's names (e2e/pod_network.py), which `ip netns del` leaves.
        shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)
    # What node agents left of their pods (e2e/node_agent.py).
    for folder in POD_FOLDERS:
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(f"folder {folder}")
    removed += [f"mount point {path}" for path in _remove_mount_points()]
    return removed


def record_mount_point(path: Path) -> None:
    with MOUNT_POINTS.open("a") as recorded:
        recorded.write(f"{path}\n")


def _remove_mount_points() -> list[Path]:
    """Removes the mount points node agents made, and what they made beneath them, where
    nothing else is there."""
    if not MOUNT_POINTS.exists():
        return []
    removed = []
    for top in sorted({Path(line) for line in MOUNT_POINTS.read_text().splitlines() if line}):
        if top.is_file() and top.stat().st_size == 0:
            top.unlink()
            removed.append(top)
            continue
        if not top.is_dir():
            continue
        beneath = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for folder in [*beneath, top]:
            with contextlib.suppress(OSError):
                folder.rmdir()
        if not top.exists():
            removed.append(top)
    MOUNT_POINTS.unlink()
    return removed


def live_namespaces() -> list[str]:
    """The `ctm-` namespaces of a sites network that still runs. Namespaces that a killed run
    left (no emulator holds the hub's TUN, no process runs in any of them) are not counted: a
    live network always has its emulator, and `create` sweeps such leftovers."""
    taken = [name for name in _namespaces() if name.startswith(PREFIX)]
    if _tun_owners(HUB_DEVICE) or any(_namespace_pids(name) for name in taken):
        return taken
    return []


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    MACHINE_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with MACHINE_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _is_emulator(pid: int, state_file: Path) -> bool:
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return not has_exited(pid) and str(state_file).encode() in arguments


@dataclass(frozen=True)
class SiteProcess:
    """A process the testbed runs at a site: started again as it was when the site is
    restored after `down`."""

    name: str
    argv: tuple[str, ...]
    log: str
    pid: int


class Sites:
    """The sites network whose state lives in `directory` (sites.json)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.state_file = self.directory / "sites.json"
        self.control = self.directory / "emulator.sock"
        # Called with the site's name after its processes were killed / started again.
        self.on_down: list[Callable[[str], None]] = []
        self.on_restore: list[Callable[[str], None]] = []

    # --- state --------------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        if not self.state_file.exists():
            raise SitesError(f"no sites network in {self.directory} (run create)")
        state: dict[str, Any] = json.loads(self.state_file.read_text())
        return state

    def _save(self, state: dict[str, Any]) -> None:
        write_json(self.state_file, state)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / ".sites.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def sites(self) -> list[str]:
        return [place["name"] for place in self._load()["places"] if place["name"] != HUB]

    def address(self, site: str) -> str:
        """The site's address (`hub` is the root namespace's)."""
        for place in self._load()["places"]:
            if place["name"] == site:
                return netemu.address(NET, place["index"])
        raise SitesError(f"unknown site {site!r}")

    def command(self, site: str, argv: Sequence[str]) -> list[str]:
        """`argv` as a command that runs inside the site's namespace."""
        self._check_site(self._load(), site)
        return ["ip", "netns", "exec", namespace(site), *argv]

    def _check_site(self, state: dict[str, Any], site: str) -> None:
        if site not in state["links"]:
            known = ", ".join(state["links"]) or "none"
            raise SitesError(f"unknown site {site!r} (sites: {known})")

    # --- lifecycle ----------------------------------------------------------------------------

    def create(self, sites: Sequence[str], max_lifetime_s: float = DEFAULT_LIFETIME_S) -> None:
        """Makes the namespaces and starts the emulator. Keeps a running network with the same
        sites; anything else of a sites network on this machine is an error."""
        missing = requirements_missing()
        if missing:
            raise SitesError(missing)
        for site in sites:
            if not SITE_NAME.match(site) or site == HUB:
                raise SitesError(f"bad site name {site!r}: [a-z0-9-], at most 30, not {HUB!r}")
        if len(set(sites)) != len(sites) or not 0 < len(sites) <= MAX_SITES:
            raise SitesError(f"sites must be 1 to {MAX_SITES} distinct names: {list(sites)}")
        with _machine_lock(), self._locked():
            if self._running_with(sites):
                return
            self._destroy_own()
            taken, emulators = live_namespaces(), _tun_owners(HUB_DEVICE)
            if not taken and not emulators:
                sweep()  # what a killed run left, if anything
            if taken or emulators:
                raise SitesError(
                    f"another sites network runs on this machine ({', '.join(taken) or HUB_DEVICE})"
                    ": `python -m e2e.sites destroy` removes it"
                )
            routes = _run("ip", "-4", "route", "show", "root", f"{NET}.0.0/16").stdout
            if routes.strip():
                raise SitesError(f"the root namespace already routes {NET}.0.0/16: {routes}")
            places = [{"name": HUB, "index": 0, "namespace": None, "device": HUB_DEVICE}]
            places += [
                {"name": site, "index": index, "namespace": namespace(site),
                 "device": f"{PREFIX}s{index}"}
                for index, site in enumerate(sites, start=1)
            ]  # fmt: skip
            state: dict[str, Any] = {
                "net": NET,
                "places": places,
                "links": {site: _link() for site in sites},
                "processes": {site: [] for site in sites},
                "emulator": None,
            }
            self._save(state)
            try:
                for site in sites:
                    _run("ip", "netns", "add", namespace(site))
                state["emulator"] = self._start_emulator(max_lifetime_s)
                self._save(state)
            except BaseException:
                self._destroy_own()
                raise

    def _running_with(self, sites: Sequence[str]) -> bool:
        if not self.state_file.exists():
            return False
        state = self._load()
        emulator = state.get("emulator")
        return (
            emulator is not None
            and _is_emulator(emulator["pid"], self.state_file)
            and list(state["links"]) == list(sites)
            and all(namespace(site) in _namespaces() for site in sites)
        )

    def _start_emulator(self, max_lifetime_s: float) -> dict[str, Any]:
        log = self.directory / "emulator.log"
        with log.open("ab") as output:
            child = subprocess.Popen(
                [sys.executable, str(EMULATOR), "--state", str(self.state_file),
                 "--control", str(self.control), "--max-lifetime-s", str(max_lifetime_s)],
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise SitesError(f"the emulator exited:\n{log.read_text()[-2000:]}")
            with contextlib.suppress(OSError, ValueError, RuntimeError):
                netemu.request(self.control, {"op": "stats"}, timeout_s=1.0)
                return {"pid": child.pid}
            time.sleep(0.05)
        _stop_pids([child.pid], signal.SIGTERM, STOP_TIMEOUT_S)
        raise SitesError(f"the emulator was not ready in {READY_TIMEOUT_S} s")

    def destroy(self) -> list[str]:
        """Stops the emulator and the sites' processes and removes the namespaces, then sweeps
        whatever else of a sites network is left on the machine. Idempotent."""
        with _machine_lock(), self._locked():
            removed = self._destroy_own()
            return removed + sweep()

    def _destroy_own(self) -> list[str]:
        removed: list[str] = []
        if not self.state_file.exists():
            return removed
        state = self._load()
        emulator = state.get("emulator")
        if emulator and _is_emulator(emulator["pid"], self.state_file):
            _stop_pids([emulator["pid"]], signal.SIGTERM, STOP_TIMEOUT_S)
            removed.append(f"emulator pid {emulator['pid']}")
        for site in state["links"]:
            name = namespace(site)
            if name in _namespaces():
                pids = _namespace_pids(name)
                _stop_pids(pids, signal.SIGKILL, STOP_TIMEOUT_S)
                _run("ip", "netns", "del", name, check=False)
                removed.append(f"namespace {name}")
        self.state_file.unlink()
        self.control.unlink(missing_ok=True)
        return removed

    # --- links --------------------------------------------------------------------------------

    def _set_link(self, site: str, **changes: Any) -> dict[str, Any]:
        state = self._load()
        self._check_site(state, site)
        state["links"][site].update(changes)
        self._save(state)
        self._reload(state)
        return state

    def _reload(self, state: dict[str, Any]) -> None:
        emulator = state.get("emulator")
        if not emulator or not _is_emulator(emulator["pid"], self.state_file):
            raise SitesError(f"the emulator of {self.directory} is not running")
        netemu.request(self.control, {"op": "reload"})

    def shape(
        self, site: str, rtt_ms: float, jitter_ms: float = 0.0, loss_pct: float = 0.0
    ) -> None:
        """Sets the added RTT (split evenly between the two directions), the jitter (likewise:
        each direction +-jitter/2, uniform) and the loss (in each direction) of the site's link.
        The site must be up: after `down` or `partition`, `restore` it first."""
        for label, value, top in (
            ("rtt_ms", rtt_ms, MAX_RTT_MS), ("jitter_ms", jitter_ms, MAX_RTT_MS),
            ("loss_pct", loss_pct, 100.0),
        ):  # fmt: skip
            if not 0.0 <= value <= top:
                raise SitesError(f"{label} must be within 0..{top:g}, not {value}")
        with self._locked():
            state = self._load()
            self._check_site(state, site)
            if state["links"][site]["state"] != "up":
                raise SitesError(f"{site} is {state['links'][site]['state']}: restore it first")
            self._set_link(site, rtt_ms=rtt_ms, jitter_ms=jitter_ms, loss_pct=loss_pct)

    def partition(self, site: str) -> None:
        """The site keeps running, and its link drops everything."""
        with self._locked():
            state = self._load()
            self._check_site(state, site)
            if state["links"][site]["state"] != "up":
                raise SitesError(f"{site} is {state['links'][site]['state']}, not up")
            self._set_link(site, state="partition")

    def down(self, site: str) -> None:
        """The site fails: its link drops everything and every process in its namespace, and
        in its pods' namespaces, is killed (SIGKILL, as at a power cut). Allowed after
        `partition` too."""
        with self._locked():
            state = self._load()
            self._check_site(state, site)
            if state["links"][site]["state"] == "down":
                raise SitesError(f"{site} is down already")
            self._set_link(site, state="down")
            # The site's pods too: each runs in a namespace of its own (e2e/pod_network.py).
            pids = [
                pid
                for name in (namespace(site), *pod_namespaces(site))
                for pid in _namespace_pids(name)
            ]
            _stop_pids(pids, signal.SIGKILL, STOP_TIMEOUT_S)
        for hook in self.on_down:
            hook(site)

    def restore(self, site: str) -> None:
        """Brings the site back after `down` or `partition`, with a healthy link (no added RTT,
        jitter or loss); after `down`, its registered processes are started again."""
        with self._locked():
            state = self._load()
            self._check_site(state, site)
            was = state["links"][site]["state"]
            if was == "up":
                raise SitesError(f"{site} is up: restore follows down or partition")
            if was == "down":
                for process in state["processes"][site]:
                    process["pid"] = self._spawn(
                        site, process["argv"], Path(process["log"]),
                        process.get("host_mounts", False),
                    )  # fmt: skip
                self._save(state)
            self._set_link(site, **_link())
        if was == "down":
            for hook in self.on_restore:
                hook(site)

    # --- processes at a site ------------------------------------------------------------------

    def _spawn(self, site: str, argv: Sequence[str], log: Path, host_mounts: bool = False) -> int:
        # `ip netns exec` gives the process a mount namespace of its own (for /etc/netns and
        # /sys); `host_mounts` keeps the machine's, for a process that itself adds network
        # namespaces, whose mounts under /run/netns must be seen by everyone else.
        enter = (
            ["nsenter", f"--net=/run/netns/{namespace(site)}", "--"]
            if host_mounts
            else ["ip", "netns", "exec", namespace(site)]
        )
        with log.open("ab") as output:
            child = subprocess.Popen(
                [*enter, *argv],
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return child.pid

    def start_process(
        self, site: str, name: str, argv: Sequence[str], log: Path, host_mounts: bool = False
    ) -> int:
        """Runs `argv` in the site's namespace (its pid is that of the program: `ip netns exec`
        and nsenter exec it), and records it, so that `restore` after `down` starts it again.
        With `host_mounts` it keeps the machine's mount namespace (see `_spawn`)."""
        with self._locked():
            state = self._load()
            self._check_site(state, site)
            if state["links"][site]["state"] == "down":
                raise SitesError(f"{site} is down")
            pid = self._spawn(site, argv, log, host_mounts)
            entries = [entry for entry in state["processes"][site] if entry["name"] != name]
            entries.append({"name": name, "argv": list(argv), "log": str(log), "pid": pid,
                            "host_mounts": host_mounts})  # fmt: skip
            state["processes"][site] = entries
            self._save(state)
            return pid

    def processes(self, site: str) -> list[SiteProcess]:
        state = self._load()
        self._check_site(state, site)
        return [
            SiteProcess(entry["name"], tuple(entry["argv"]), entry["log"], entry["pid"])
            for entry in state["processes"][site]
        ]

    def forget_process(self, site: str, name: str) -> None:
        with self._locked():
            state = self._load()
            self._check_site(state, site)
            state["processes"][site] = [
                entry for entry in state["processes"][site] if entry["name"] != name
            ]
            self._save(state)

    # --- reading ------------------------------------------------------------------------------

    def links(self) -> dict[str, dict[str, Any]]:
        links: dict[str, dict[str, Any]] = self._load()["links"]
        return links

    def stats(self) -> dict[str, Any]:
        """The emulator's counters per place: sent, delivered, lost, cut, queue_full."""
        return netemu.request(self.control, {"op": "stats"})

    def emulator_pid(self) -> int | None:
        emulator = self._load().get("emulator")
        return int(emulator["pid"]) if emulator else None


def _link() -> dict[str, Any]:
    return {"rtt_ms": 0.0, "jitter_ms": 0.0, "loss_pct": 0.0, "state": "up"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sites", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make the namespaces and start the emulator")
    create.add_argument("--site", action="append", required=True, help="a site (repeat)")
    create.add_argument("--max-lifetime-s", type=float, default=DEFAULT_LIFETIME_S)
    shape = commands.add_parser("shape", help="set a site link's added RTT, jitter and loss")
    shape.add_argument("--rtt-ms", type=float, required=True)
    shape.add_argument("--jitter-ms", type=float, default=0.0)
    shape.add_argument("--loss-pct", type=float, default=0.0)
    one_site = [shape]
    for name, text in (
        ("partition", "the site runs, its link drops everything"),
        ("down", "the site fails: its processes are killed, its link drops everything"),
        ("restore", "the site comes back healthy after down or partition"),
    ):
        one_site.append(commands.add_parser(name, help=text))
    run = commands.add_parser("exec", help="run a command in a site's namespace")
    one_site.append(run)
    for command in one_site:
        command.add_argument("--site", required=True)
    run.add_argument("argv", nargs="+")
    status = commands.add_parser("status", help="the links and the emulator's counters")
    play = commands.add_parser("play", help="play a fault script (CSV)")
    play.add_argument("script", type=Path)
    play.add_argument("--hold-s", type=float, default=0.0, help="wait after the last row")
    destroy = commands.add_parser("destroy", help="remove the network (and any ctm- leftovers)")
    for command in (create, *one_site, status, play):
        command.add_argument("--dir", type=Path, required=True, help="the network's state folder")
    destroy.add_argument("--dir", type=Path, help="the network's state folder")
    args = parser.parse_args(argv)

    try:
        if args.command == "destroy":
            with _machine_lock():
                removed = sweep() if args.dir is None else []
            if args.dir is not None:
                removed = Sites(args.dir).destroy()
            for line in removed:
                print(f"removed {line}")
            return 0
        sites = Sites(args.dir)
        if args.command == "create":
            sites.create(args.site, args.max_lifetime_s)
            for site in sites.sites():
                print(f"{site} {namespace(site)} {sites.address(site)}")
        elif args.command == "shape":
            sites.shape(args.site, args.rtt_ms, args.jitter_ms, args.loss_pct)
        elif args.command == "partition":
            sites.partition(args.site)
        elif args.command == "down":
            sites.down(args.site)
        elif args.command == "restore":
            sites.restore(args.site)
        elif args.command == "exec":
            return subprocess.run(sites.command(args.site, args.argv), check=False).returncode
        elif args.command == "play":
            from e2e import fault_script

            script = fault_script.load(args.script, sites.sites())
            for line in fault_script.play(script, sites, hold_s=args.hold_s):
                print(line, flush=True)
        else:
            links = sites.links()
            stats = sites.stats()["places"]
            for site, link in links.items():
                counters = stats.get(site, {})
                print(
                    f"{site} {sites.address(site)} {link['state']} rtt_ms={link['rtt_ms']:g} "
                    f"jitter_ms={link['jitter_ms']:g} loss_pct={link['loss_pct']:g} "
                    + " ".join(f"{key}={counters.get(key, 0)}" for key in
                               ("sent", "delivered", "lost", "cut", "queue_full"))
                )  # fmt: skip
    except (SitesError, OSError, ValueError) as error:  # ValueError: a bad fault script
        print(f"sites: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
