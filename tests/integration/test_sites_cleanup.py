"""A sites network leaves nothing behind: not after `destroy`, and not after a crash that lost
its state, which `python -m e2e.sites destroy` (no folder) sweeps by the ctm- prefix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from e2e.sites import HUB_DEVICE, PREFIX, Sites, SitesError, requirements_missing

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(requirements_missing() is not None, reason=str(requirements_missing())),
]

REPO = Path(__file__).resolve().parents[2]


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def leftovers() -> list[str]:
    namespaces = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=False
    ).stdout
    links = subprocess.run(
        ["ip", "-br", "link"], capture_output=True, text=True, check=False
    ).stdout
    routes = subprocess.run(
        ["ip", "-4", "route", "show", "root", "10.77.0.0/16"],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    return [
        *(line for line in namespaces.splitlines() if line.startswith(PREFIX)),
        *(line for line in links.splitlines() if line.startswith(PREFIX)),
        *routes.splitlines(),
    ]


def make_network(directory: Path) -> tuple[Sites, list[int]]:
    network = Sites(directory)
    network.create(["delft", "ghent"], max_lifetime_s=120.0)
    pids = [
        network.start_process(site, "sleeper", ["sleep", "120"], directory / f"{site}.log")
        for site in ("delft", "ghent")
    ]
    emulator = network.emulator_pid()
    assert emulator is not None
    return network, [emulator, *pids]


def test_destroy_leaves_no_namespace_device_route_or_process(tmp_path: Path) -> None:
    network, pids = make_network(tmp_path / "sites")
    assert all(running(pid) for pid in pids)
    assert any(line.startswith(HUB_DEVICE) for line in leftovers())
    network.destroy()
    assert leftovers() == []
    assert not [pid for pid in pids if running(pid)]
    network.destroy()  # idempotent


def test_a_crashed_networks_leftovers_are_swept_by_prefix(tmp_path: Path) -> None:
    network, pids = make_network(tmp_path / "sites")
    network.state_file.unlink()  # the crash: the state is lost, everything else runs on
    swept = subprocess.run(
        [sys.executable, "-m", "e2e.sites", "destroy"],
        capture_output=True, text=True, check=False, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert swept.returncode == 0, swept.stderr
    assert "namespace ctm-delft" in swept.stdout
    assert leftovers() == []
    assert not [pid for pid in pids if running(pid)]


def test_a_killed_runs_namespaces_do_not_block_the_next_network(tmp_path: Path) -> None:
    """A run killed with everything in it leaves bare namespaces; the next run takes over."""
    for site in ("delft", "ghent"):
        subprocess.run(["ip", "netns", "add", f"{PREFIX}{site}"], check=True)
    network, pids = make_network(tmp_path / "sites")
    assert all(running(pid) for pid in pids)
    network.destroy()
    assert leftovers() == []


def test_a_live_network_is_not_taken_over(tmp_path: Path) -> None:
    first, pids = make_network(tmp_path / "first")
    try:
        with pytest.raises(SitesError, match="another sites network runs"):
            Sites(tmp_path / "second").create(["delft", "ghent"], max_lifetime_s=60.0)
        assert all(running(pid) for pid in pids)
    finally:
        first.destroy()
