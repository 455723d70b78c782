"""`testbed.py up --sites`: each member's control plane runs in its site's network namespace and
serves on the site's address; the hub's side reaches it through the link emulator, so shaping,
partitioning, taking down and restoring the site is what a client of the member sees. The hub
serves at its own address in the network, which a process at the site reaches over the site's
link (as a Pull member's agent does)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2e import testbed as testbed_module
from e2e.sites import HUB_ADDRESS, Sites, namespace, requirements_missing

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(requirements_missing() is not None, reason=str(requirements_missing())),
]

TESTBED = Path(__file__).resolve().parents[2] / "e2e" / "testbed.py"
RESTORE_TIMEOUT_S = 120.0


def run_testbed(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TESTBED), *args],
        capture_output=True, text=True, check=False, timeout=400,
    )  # fmt: skip


def connect_ms(host: str, port: int, timeout_s: float = 2.0) -> float | None:
    """The time a TCP connection takes to open (one round trip), or None if it does not."""
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return (time.monotonic() - started) * 1000.0
    except OSError:
        return None


def connect_ms_from(sites: Sites, site: str, host: str, port: int) -> float | None:
    """`connect_ms` as a process at `site` measures it, in the site's network namespace."""
    program = (
        "import socket, sys, time\n"
        "started = time.monotonic()\n"
        "try:\n"
        f"    socket.create_connection(({host!r}, {port}), timeout=2.0).close()\n"
        "except OSError:\n"
        "    sys.exit(1)\n"
        "print((time.monotonic() - started) * 1000.0)\n"
    )
    result = subprocess.run(
        sites.command(site, [sys.executable, "-c", program]),
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    return float(result.stdout) if result.returncode == 0 else None


def test_a_member_at_its_site_is_shaped_cut_downed_and_restored(tmp_path: Path) -> None:
    state_dir = tmp_path / "bed"
    up = run_testbed("up", "--members", "1", "--sites", "--dir", str(state_dir))
    try:
        assert up.returncode == 0, up.stderr
        # One member: it is the cloud, at frankfurt (the topology's first cloud cluster).
        hub_name, _, hub_server = up.stdout.splitlines()[0].split()
        assert hub_name == "hub"
        hub_host, hub_port = hub_server.removeprefix("https://").split(":")
        assert hub_host == HUB_ADDRESS
        name, kubeconfig, server = up.stdout.splitlines()[1].split()
        assert name == "member-1"
        sites = Sites(state_dir / "sites")
        assert sites.sites() == ["frankfurt"]
        address = sites.address("frankfurt")
        host, port = server.removeprefix("https://").split(":")
        assert host == address
        bed = testbed_module.Testbed(state_dir)
        member_pids = set(bed.process_ids()["member-1"].values())
        assert member_pids <= set(
            int(pid)
            for pid in subprocess.run(
                ["ip", "netns", "pids", namespace("frankfurt")],
                capture_output=True, text=True, check=True,
            ).stdout.split()
        )  # fmt: skip
        assert not set(bed.process_ids()["hub"].values()) & member_pids

        kubectl = [
            str(p) for p in (Path.home() / ".cache" / "continuum").glob("kube-*/bin/kubectl")
        ]
        assert kubectl

        def member(*args: str, timeout: str = "10s") -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [kubectl[0], "--kubeconfig", kubeconfig, f"--request-timeout={timeout}", *args],
                capture_output=True, text=True, check=False, timeout=60,
            )  # fmt: skip

        assert member("create", "namespace", "before-down").returncode == 0

        healthy = [connect_ms(host, int(port)) for _ in range(10)]
        sites.shape("frankfurt", 100.0)
        shaped = [connect_ms(host, int(port)) for _ in range(10)]
        assert all(value is not None for value in healthy + shaped)
        assert max(v for v in healthy if v is not None) < 20.0
        mean = sum(v for v in shaped if v is not None) / len(shaped)
        assert 100.0 <= mean <= 118.0, shaped
        # A process at the site reaches the hub over the same link.
        from_site = connect_ms_from(sites, "frankfurt", hub_host, int(hub_port))
        assert from_site is not None and 100.0 <= from_site <= 130.0, from_site

        sites.partition("frankfurt")
        assert connect_ms(host, int(port), timeout_s=1.0) is None
        assert connect_ms_from(sites, "frankfurt", hub_host, int(hub_port)) is None
        assert member("get", "namespace", "before-down", timeout="2s").returncode != 0
        sites.restore("frankfurt")
        assert member("get", "namespace", "before-down").returncode == 0

        sites.down("frankfurt")
        status = run_testbed("status", "--dir", str(state_dir))
        assert status.returncode == 1
        assert "member-1" in status.stdout and "NOT READY" in status.stdout
        sites.restore("frankfurt")
        deadline = time.monotonic() + RESTORE_TIMEOUT_S
        while time.monotonic() < deadline:
            if run_testbed("status", "--dir", str(state_dir)).returncode == 0:
                break
            time.sleep(1.0)
        assert run_testbed("status", "--dir", str(state_dir)).returncode == 0
        # The site came back with its data: etcd's folder survives a site failure.
        again = member("get", "namespace", "before-down", "-o", "json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["metadata"]["name"] == "before-down"
        assert set(bed.process_ids()["member-1"].values()).isdisjoint(member_pids)
    finally:
        down = run_testbed("down", "--dir", str(state_dir))
    assert down.returncode == 0, down.stderr
    assert (
        namespace("frankfurt")
        not in subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=False
        ).stdout
    )
