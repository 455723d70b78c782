"""The testbed's command line as a user runs it: up is idempotent, down leaves no process."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.pytest_plugin import RunningTestbed
from e2e.registration import register_members

pytestmark = pytest.mark.integration

TESTBED = Path(__file__).resolve().parents[2] / "e2e" / "testbed.py"
LISTEN = "0A"
LOOPBACK_V4 = "0100007F"


def _testbed(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TESTBED), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _pids(state_dir: Path) -> set[int]:
    state = json.loads((state_dir / "state.json").read_text())
    return {
        process["pid"]
        for cluster in state["clusters"].values()
        for process in cluster["processes"].values()
    }


def _is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _listening_addresses(pid: int) -> list[str]:
    """Local addresses (hex, as /proc/net shows them) of the TCP sockets `pid` listens on."""
    inodes = set()
    for descriptor in Path(f"/proc/{pid}/fd").iterdir():
        target = str(descriptor.readlink())
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    addresses = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == LISTEN and fields[9] in inodes:
                addresses.append(fields[1].split(":")[0])
    return addresses


def test_up_is_idempotent_binds_loopback_and_down_leaves_nothing(tmp_path: Path) -> None:
    state_dir = tmp_path / "bed"
    first = _testbed("up", "--members", "1", "--dir", str(state_dir))
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["hub", "member-1"]
    for line in lines:
        name, kubeconfig, server = line.split()
        assert Path(kubeconfig) == state_dir / f"{name}.kubeconfig"
        assert Path(kubeconfig).exists()
        assert server.startswith("https://127.0.0.1:")
    pids = _pids(state_dir)
    assert len(pids) == 6

    try:
        for pid in pids:
            addresses = _listening_addresses(pid)
            assert all(address == LOOPBACK_V4 for address in addresses), (pid, addresses)

        again = _testbed("up", "--members", "1", "--dir", str(state_dir))
        assert again.returncode == 0, again.stderr
        assert again.stdout == first.stdout
        assert _pids(state_dir) == pids

        status = _testbed("status", "--dir", str(state_dir))
        assert status.returncode == 0, status.stdout
        assert status.stdout.count(" ready ") == 2
    finally:
        down = _testbed("down", "--dir", str(state_dir))
    assert down.returncode == 0, down.stderr
    assert not [pid for pid in pids if _is_running(pid)]
    status = _testbed("status", "--dir", str(state_dir))
    assert status.stdout == ""


def test_register_creates_member_clusters_and_kubeconfig_secrets(testbed: RunningTestbed) -> None:
    register_members([testbed.hub, *testbed.members], None)
    listed = json.loads(testbed.kubectl("get", "memberclusters", "-o", "json"))["items"]
    by_name = {item["metadata"]["name"]: item["spec"] for item in listed}
    assert sorted(by_name) == ["member-1", "member-2", "member-3", "member-4"]
    assert [by_name[name]["tier"] for name in sorted(by_name)] == ["Edge", "Edge", "Edge", "Cloud"]
    assert by_name["member-1"]["site"] == "delft"
    assert by_name["member-4"]["site"] == "frankfurt"
    network = testbed.kubectl("get", "configmap", "continuum-network", "-n", "continuum-system",
                              "-o", "jsonpath={.data.latency\\.csv}")  # fmt: skip
    assert network.startswith("from_site,to_site,rtt_ms,bandwidth_mbps")
    for name, spec in by_name.items():
        reference = spec["kubeconfigSecretRef"]
        secret = json.loads(
            testbed.kubectl(
                "get", "secret", reference["name"], "-n", reference["namespace"], "-o", "json"
            )
        )
        stored = base64.b64decode(secret["data"][reference["key"]]).decode()
        member = next(member for member in testbed.members if member.name == name)
        assert json.loads(stored)["clusters"][0]["cluster"]["server"] == member.server
    # Registering again changes nothing: server-side apply of the same objects.
    register_members([testbed.hub, *testbed.members], None)
    again = json.loads(testbed.kubectl("get", "memberclusters", "-o", "json"))["items"]
    assert [item["metadata"]["generation"] for item in again] == [
        item["metadata"]["generation"] for item in listed
    ]


def test_kuberay_members_run_the_scheduler_and_kuberay_on_loopback_and_down_stops_them(
    tmp_path: Path,
) -> None:
    state_dir = tmp_path / "bed"
    up = _testbed("up", "--members", "1", "--kuberay", "--dir", str(state_dir))
    assert up.returncode == 0, up.stderr
    pids = _pids(state_dir)
    try:
        # The hub's three servers, and the member's three with kube-scheduler and KubeRay.
        assert len(pids) == 8
        for pid in pids:
            addresses = _listening_addresses(pid)
            assert all(address == LOOPBACK_V4 for address in addresses), (pid, addresses)
        status = _testbed("status", "--dir", str(state_dir))
        assert status.returncode == 0, status.stdout
        member = next(line for line in status.stdout.splitlines() if line.startswith("member-1"))
        assert "kube-scheduler=up" in member and "ray-operator=up" in member

        # Without --kuberay the member is started again without them; the hub is kept.
        plain = _testbed("up", "--members", "1", "--dir", str(state_dir))
        assert plain.returncode == 0, plain.stderr
        after = _pids(state_dir)
        assert len(after) == 6
        assert not [pid for pid in pids - after if _is_running(pid)]
        pids |= after
    finally:
        down = _testbed("down", "--dir", str(state_dir))
    assert down.returncode == 0, down.stderr
    assert not [pid for pid in pids if _is_running(pid)]
