"""`testbed.py up --sites --prometheus`: Prometheus and the blackbox exporters measure the links
the emulator shapes. The recorded RTT of a pair is the RTT set, its loss the loss set (round
trip), a partition reads as loss 1 and no RTT, and Prometheus keeps running while a site, and
its exporter, is down; restore brings the exporter back.

The recording rules average over 30 s, so each check waits until the window holds only probes
sent after the link was shaped (SETTLE_S)."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_api_client import PrometheusConnect
from signals_testbed import NEEDS_SITES_AND_PROMETHEUS

from e2e import monitoring
from e2e import testbed as testbed_module
from e2e.pytest_plugin import eventually
from e2e.sites import Sites

pytestmark = NEEDS_SITES_AND_PROMETHEUS

TESTBED = Path(__file__).resolve().parents[2] / "e2e" / "testbed.py"
# Two members: member-1 at delft (an edge site), member-2 at frankfurt (the cloud).
SHAPED, OTHER = "delft", "frankfurt"
WINDOW_S = 30.0
# The rules' window, one rule interval (2 s), a probe in flight at the change (1 s), a margin.
SETTLE_S = WINDOW_S + 2.0 + 1.0 + 1.0


def rtt_tolerance_s(rtt_s: float) -> float:
    """20% of the RTT set, plus 3 ms for scheduling on a busy two-core machine."""
    return 0.2 * rtt_s + 0.003


@dataclass
class Bed:
    directory: Path
    testbed: testbed_module.Testbed
    sites: Sites
    url: str
    prometheus: PrometheusConnect
    up_stdout: str

    def query(self, expr: str) -> dict[tuple[str, str], float]:
        """An instant query's values by (source_site, target_site)."""
        result = self.prometheus.custom_query(expr)
        return {
            (item["metric"].get("source_site", ""), item["metric"].get("target_site", "")): float(
                item["value"][1]
            )
            for item in result
        }

    def raw(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.prometheus.custom_query(expr)
        return result


def run_testbed(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TESTBED), *args],
        capture_output=True, text=True, check=False, timeout=400,
    )  # fmt: skip


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    directory = tmp_path_factory.mktemp("monitored") / "bed"
    testbed = testbed_module.Testbed(directory)
    pids: dict[str, int] = {}
    up = run_testbed("up", "--members", "2", "--sites", "--prometheus", "--dir", str(directory))
    try:
        assert up.returncode == 0, up.stderr
        pids = testbed.monitoring.processes()
        url = testbed.prometheus_url()
        assert url is not None
        session = requests.Session()
        session.trust_env = False  # no proxy for 127.0.0.1
        yield Bed(
            directory,
            testbed,
            Sites(directory / "sites"),
            url,
            PrometheusConnect(url, disable_ssl=True, session=session, timeout=10),
            up.stdout,
        )
    finally:
        pids.update(testbed.monitoring.processes())
        down = run_testbed("down", "--dir", str(directory))
        assert down.returncode == 0, down.stderr
    # A site's exporter has a new pid after a restore: the last ones are checked.
    assert pids and not [name for name, pid in pids.items() if Path(f"/proc/{pid}/exe").exists()]


@pytest.fixture(autouse=True)
def healthy(bed: Bed) -> Iterator[None]:
    """Every test starts and ends with healthy links."""
    yield
    for site, link in bed.sites.links().items():
        if link["state"] != "up":
            bed.sites.restore(site)
        bed.sites.shape(site, 0.0)


def settle(since: float) -> None:
    time.sleep(max(0.0, since + SETTLE_S - time.monotonic()))


def test_every_pair_is_probed_once_a_second_with_its_labels(bed: Bed) -> None:
    assert bed.up_stdout.splitlines()[-1] == f"prometheus {bed.url}"
    status = run_testbed("status", "--dir", str(bed.directory))
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"prometheus {bed.url} ready" in status.stdout
    pairs = {("hub", SHAPED), ("hub", OTHER), (SHAPED, OTHER), (OTHER, SHAPED)}
    up = eventually(
        lambda: (found := bed.query(f'up{{job="{monitoring.JOB}"}}')) and len(found) == 4 and found,
        "a scrape of every pair",
    )
    assert set(up) == pairs
    assert all(value == 1.0 for value in up.values()), up
    # The raw samples of the last 20 s, once Prometheus has run that long: one probe a second
    # per pair.
    query = f'probe_success{{job="{monitoring.JOB}"}}[20s]'
    series = eventually(
        lambda: (found := bed.raw(query)) and min(len(s["values"]) for s in found) >= 17 and found,
        "20 s of probes",
        timeout=40.0,
        interval=1.0,
    )
    assert {(s["metric"]["source_site"], s["metric"]["target_site"]) for s in series} == pairs
    for one in series:
        assert 17 <= len(one["values"]) <= 21, one
        assert one["metric"]["instance"] == bed.sites.address(one["metric"]["target_site"])
    # The exporters run where they should: the hub's in the root namespace, on the loopback.
    pids = bed.testbed.monitoring.processes()
    assert set(pids) == {"prometheus", "hub-exporter", f"{SHAPED}-exporter", f"{OTHER}-exporter"}


def test_the_recorded_rtt_is_the_rtt_set(bed: Bed) -> None:
    shaped_at = time.monotonic()
    bed.sites.shape(SHAPED, 80.0)
    settle(shaped_at)
    rtt = bed.query("continuum:link_rtt_seconds")
    loss = bed.query("continuum:link_loss_ratio")
    probes = bed.query("continuum:link_probes")
    print(f"recorded RTT (s): {rtt}; loss: {loss}; probes: {probes}")
    # hub -> delft and frankfurt <-> delft cross delft's link: 80 ms; hub -> frankfurt: none.
    for pair in (("hub", SHAPED), (OTHER, SHAPED), (SHAPED, OTHER)):
        assert abs(rtt[pair] - 0.080) <= rtt_tolerance_s(0.080), (pair, rtt)
        assert loss[pair] == 0.0, (pair, loss)
    assert rtt[("hub", OTHER)] <= rtt_tolerance_s(0.0)
    assert 28 <= probes[("hub", SHAPED)] <= 31
    # Every answered probe of the window took at least the RTT set.
    samples = bed.raw(
        f'probe_icmp_duration_seconds{{job="{monitoring.JOB}",phase="rtt",source_site="hub",'
        f'target_site="{SHAPED}"}}[25s]'
    )[0]["values"]
    assert min(float(value) for _, value in samples) >= 0.080


def test_the_recorded_loss_is_the_loss_set(bed: Bed) -> None:
    """30% each way, so a probe and its answer both arrive with probability 0.7^2: the round
    trip loses 51%. Two windows back to back, 60 probes, held to 3.5 binomial standard
    deviations plus 2 points."""
    shaped_at = time.monotonic()
    bed.sites.shape(SHAPED, 80.0, loss_pct=30.0)
    expected = 1.0 - 0.7**2
    seen: list[tuple[float, float, float]] = []
    for window in (1, 2):
        settle(shaped_at + (window - 1) * (WINDOW_S + 1.0))
        pair = ("hub", SHAPED)
        seen.append(
            (
                bed.query("continuum:link_loss_ratio")[pair],
                bed.query("continuum:link_probes")[pair],
                bed.query("continuum:link_rtt_seconds")[pair],
            )
        )
    print(f"loss set 30% each way (51% round trip): (loss, probes, rtt) per window {seen}")
    probes = sum(count for _, count, _ in seen)
    lost = sum(loss * count for loss, count, _ in seen)
    tolerance = 3.5 * math.sqrt(expected * (1.0 - expected) / probes) + 0.02
    assert abs(lost / probes - expected) <= tolerance, seen
    # The answered probes still measure the RTT.
    for _, _, rtt in seen:
        assert abs(rtt - 0.080) <= rtt_tolerance_s(0.080), seen


def test_a_partition_reads_as_loss_one_and_no_rtt(bed: Bed) -> None:
    bed.sites.shape(SHAPED, 80.0)
    cut_at = time.monotonic()
    bed.sites.partition(SHAPED)
    settle(cut_at)
    loss = bed.query("continuum:link_loss_ratio")
    rtt = bed.query("continuum:link_rtt_seconds")
    print(f"partitioned {SHAPED}: loss {loss}; rtt {rtt}")
    for pair in (("hub", SHAPED), (OTHER, SHAPED)):
        assert loss[pair] == 1.0, (pair, loss)
        assert pair not in rtt, (pair, rtt)
    # delft's own exporter is cut off: its probes are not seen, so its pairs have no series.
    assert (SHAPED, OTHER) not in loss and (SHAPED, OTHER) not in rtt
    assert bed.query(f'up{{job="{monitoring.JOB}",source_site="{SHAPED}"}}') == {
        (SHAPED, OTHER): 0.0
    }
    assert loss[("hub", OTHER)] == 0.0 and ("hub", OTHER) in rtt


def test_prometheus_keeps_running_while_a_site_and_its_exporter_are_down(bed: Bed) -> None:
    before = bed.testbed.monitoring.processes()
    bed.sites.down(OTHER)
    assert not Path(f"/proc/{before[f'{OTHER}-exporter']}/exe").exists()
    eventually(
        lambda: (
            bed.query(f'up{{job="{monitoring.JOB}",source_site="{OTHER}"}}')
            == {(OTHER, SHAPED): 0.0}
        ),
        f"{OTHER}'s exporter seen down",
        timeout=20.0,
    )
    eventually(
        lambda: (
            bed.query(f'probe_success{{job="{monitoring.JOB}",target_site="{OTHER}"}}')
            == {("hub", OTHER): 0.0, (SHAPED, OTHER): 0.0}
        ),
        f"probes to {OTHER} unanswered",
        timeout=20.0,
    )
    status = bed.testbed.monitoring.status()
    assert status["prometheus"] and status["hub-exporter"] and not status[f"{OTHER}-exporter"]
    assert bed.testbed.monitoring.processes()["prometheus"] == before["prometheus"]
    bed.sites.restore(OTHER)
    after = bed.testbed.monitoring.processes()
    assert after[f"{OTHER}-exporter"] != before[f"{OTHER}-exporter"]
    eventually(
        lambda: (
            bed.query(f'probe_success{{job="{monitoring.JOB}",source_site="{OTHER}"}}')
            == {(OTHER, SHAPED): 1.0}
        ),
        f"{OTHER}'s exporter back and probing",
        timeout=30.0,
    )
    assert bed.testbed.monitoring.status()[f"{OTHER}-exporter"]
