"""The operator's link signals on the testbed's sites and its real Prometheus: a member's
measured RTT in its status.latencyToSites, a degrading link raising its status.risk and its
Degraded condition (and moving a proactive job's shard before it fails), and Prometheus down
costing the signals only.

The module runs a testbed of its own (root, /dev/net/tun, Debian's prometheus and blackbox
exporter): each member at its site (member-1 delft, member-2 eindhoven, member-3 ghent,
member-4 frankfurt) behind the link emulator, and Prometheus probing every pair once a second.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from signals_testbed import (
    NEEDS_SITES_AND_PROMETHEUS,
    SETTLE_S,
    apply_job,
    degraded,
    eventually,
    placement,
    sites_put_back,
)
from signals_testbed import member as member_named

from e2e import fault_script, kuberay_sim
from e2e.operator_process import REPO, Operator, condition, get_json, member_api
from e2e.pytest_plugin import RunningTestbed, running_testbed
from e2e.registration import register_members
from e2e.sites import Sites

pytestmark = NEEDS_SITES_AND_PROMETHEUS

SHAPED, MEMBER = "delft", "member-1"
TIMELINE: list[str] = []


def note(line: str) -> None:
    """Figures the test measured, printed at the end of the module (pytest -s shows them)."""
    TIMELINE.append(line)
    print(line)


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTestbed]:
    """This module's own testbed, with sites and Prometheus (the session's has neither)."""
    yield from running_testbed(tmp_path_factory.mktemp("testbed-signals"), True, True)


@pytest.fixture(scope="module")
def sites(testbed: RunningTestbed) -> Iterator[Sites]:
    yield from sites_put_back(testbed)


@pytest.fixture(scope="module")
def operator(
    testbed: RunningTestbed, sites: Sites, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    register_members([testbed.hub, *testbed.members], None)
    testbed.kubectl("apply", "-f", str(REPO / "examples" / "tenants.yaml"))
    assert testbed.prometheus_url is not None
    running = Operator(
        testbed.hub.kubeconfig,
        tmp_path_factory.mktemp("operator-signals") / "log",
        ["--prometheus-url", testbed.prometheus_url, "--signals-interval", "2"],
    )
    running.start()
    try:
        yield running
    finally:
        if running.process is not None:
            running.stop()
        for line in TIMELINE:
            print(line)


def member(testbed: RunningTestbed, name: str = MEMBER) -> dict[str, Any]:
    return member_named(testbed, name)


def metric(operator: Operator, name: str) -> float | None:
    code, text = operator.probe("/metrics")
    if code != 200:
        return None
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_members_measured_rtt_is_in_its_status(
    testbed: RunningTestbed, sites: Sites, operator: Operator
) -> None:
    # Healthy first: every member has Degraded False and a latency to the hub and to each of
    # the three other sites (a pair's recorded RTT appears once Prometheus has scraped the
    # exporter at its source site, which after the testbed's start takes a while under load).
    def all_healthy() -> bool:
        items = get_json(testbed, "memberclusters")["items"]
        return len(items) == 4 and all(
            degraded(item) == ("False", "LinkHealthy")
            and "hub" in item["status"].get("latencyToSites", {})
            and len(item["status"]["latencyToSites"]) == 4
            for item in items
        )

    eventually(all_healthy, "every member healthy with its latencies", timeout=90)
    assert metric(operator, "continuum_signals_up") == 1.0
    before = member(testbed)["status"]["latencyToSites"]
    assert set(before) == {"hub", "eindhoven", "ghent", "frankfurt"}, before
    # Reachable and Ready (the heartbeat's) and Degraded (the signals') side by side.
    assert condition(member(testbed), "Ready")["status"] == "True"
    managers = {
        entry["manager"]
        for entry in get_json(testbed, "membercluster", MEMBER, "--show-managed-fields")[
            "metadata"
        ].get("managedFields", [])
        if entry.get("subresource") == "status"
    }
    assert {"continuum-heartbeat", "continuum-signals"} <= managers, managers

    set_ms = 80.0
    shaped_at = time.monotonic()
    sites.shape(SHAPED, set_ms)
    time.sleep(SETTLE_S)

    def within(latency: dict[str, float], key: str) -> bool:
        return abs(latency.get(key, -1.0) - set_ms) <= 0.2 * set_ms

    def settled() -> dict[str, Any] | None:
        mine = member(testbed)["status"]["latencyToSites"]
        theirs = member(testbed, "member-2")["status"]["latencyToSites"]
        return (
            {"member-1": mine, "member-2": theirs}
            if (within(mine, "hub") and within(mine, "eindhoven") and within(theirs, "delft"))
            else None
        )

    found = eventually(settled, "latencyToSites within 20% of the set RTT", timeout=30)
    note(
        f"(a) delft shaped +{set_ms:.0f} ms: member-1 latencyToSites {found['member-1']}, "
        f"member-2's delft {found['member-2']['delft']} ms, "
        f"after {time.monotonic() - shaped_at:.0f} s"
    )
    sites.shape(SHAPED, 0.0)
    eventually(
        lambda: member(testbed)["status"]["latencyToSites"].get("hub", 99.0) < 10.0,
        "member-1's RTT back down",
        timeout=SETTLE_S + 30,
    )


def test_a_cut_off_site_is_told_from_the_hubs_path_by_the_other_sites(
    testbed: RunningTestbed, sites: Sites, operator: Operator
) -> None:
    """A partitioned site answers neither the hub's probes nor the other sites': Degraded says
    SiteUnreachable, naming the sites that could not reach it either, and goes back to
    LinkHealthy when the site returns."""
    eventually(lambda: degraded(member(testbed)) == ("False", "LinkHealthy"),
               "member-1 healthy", timeout=90)  # fmt: skip
    cut_at = time.monotonic()
    sites.partition(SHAPED)
    try:
        eventually(lambda: degraded(member(testbed)) == ("True", "SiteUnreachable"),
                   "member-1 Degraded, SiteUnreachable", timeout=30)  # fmt: skip
        note(f"(f) delft partitioned: SiteUnreachable after {time.monotonic() - cut_at:.1f} s")

        # The first peer to miss three probes in a row turns the reason; the message names
        # each peer once it has too.
        def every_peer_named() -> bool:
            message = condition(member(testbed), "Degraded")["message"]
            return all(peer in message for peer in ("eindhoven", "ghent", "frankfurt"))

        eventually(every_peer_named, "every other site named as cut off", timeout=30)
    finally:
        sites.restore(SHAPED)
        eventually(lambda: degraded(member(testbed)) == ("False", "LinkHealthy"),
                   "member-1 healthy again", timeout=90)  # fmt: skip


def test_a_degrading_link_raises_the_risk_and_moves_a_proactive_shard(
    testbed: RunningTestbed, sites: Sites, operator: Operator
) -> None:
    job = "signals-proactive"
    apply_job(testbed, job, SHAPED, proactive=True)
    spec = eventually(lambda: placement(testbed, job), "the job's Placement")
    assert [decision["cluster"] for decision in spec["decisions"]] == [MEMBER], spec
    # Healthy again after the first test's shaping (its RTT has left the risk window).
    eventually(lambda: degraded(member(testbed)) == ("False", "LinkHealthy")
               and member(testbed)["status"]["risk"]["score"] < 0.35,
               "member-1 healthy", timeout=60)  # fmt: skip

    # The link degrades: RTT climbs 0 -> 400 ms over 40 s, loss climbs to 12% each way.
    started = time.monotonic()
    started_wall = datetime.now(UTC)
    raised_at: float | None = None
    peak = 0.0
    for step in range(21):
        sites.shape(SHAPED, 20.0 * step, loss_pct=0.6 * step)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            status = member(testbed).get("status", {})
            peak = max(peak, (status.get("risk") or {}).get("score", 0.0))
            if (
                raised_at is None
                and degraded({"status": status}) is not None
                and degraded({"status": status})[0] == "True"
            ):
                raised_at = time.monotonic() - started
                note(
                    f"(b) Degraded True ({degraded({'status': status})[1]}) "
                    f"{raised_at:.1f} s after the ramp began, risk {status['risk']}"
                )
            time.sleep(0.5)
    if raised_at is None:
        # holding at the peak: at most another 30 s
        def raised() -> Any:
            status = member(testbed)["status"]
            return status if degraded({"status": status})[0] == "True" else None

        status = eventually(raised, "Degraded True", timeout=30)
        raised_at = time.monotonic() - started
        note(
            f"(b) Degraded True ({degraded({'status': status})[1]}) {raised_at:.1f} s after "
            f"the ramp began, risk {status['risk']}"
        )
    status = member(testbed)["status"]
    peak = max(peak, status["risk"]["score"])
    note(f"(b) peak risk {peak}; at the end of the ramp: {status['risk']}")
    assert peak > 0.5
    assert metric(operator, 'continuum_member_risk{member="member-1"}') is not None

    # (d) the proactive job's shard leaves member-1 before it fails.
    def moved() -> dict[str, Any] | None:
        spec = placement(testbed, job) or {}
        proactive = [m for m in spec.get("migrations", []) if m["reason"] == "Proactive"]
        return spec if proactive else None

    spec = eventually(moved, "a Proactive migration in the Placement", timeout=30)
    migration = next(m for m in spec["migrations"] if m["reason"] == "Proactive")
    assert migration["from"] == MEMBER and migration["to"] != MEMBER
    assert spec["decisions"][0]["cluster"] != MEMBER
    moved_at = datetime.fromisoformat(migration["time"].replace("Z", "+00:00"))
    note(
        f"(d) Proactive migration {migration['from']} -> {migration['to']} at "
        f"{(moved_at - started_wall).total_seconds():.1f} s after the ramp began "
        f"(the Placement's migration time; the test saw it at "
        f"{time.monotonic() - started:.1f} s)"
    )

    # Healthy again: the risk falls and Degraded turns False.
    sites.shape(SHAPED, 0.0)
    healed = time.monotonic()

    def recovered() -> Any:
        status = member(testbed)["status"]
        return (
            status
            if degraded({"status": status}) == ("False", "LinkHealthy")
            and (status["risk"]["score"] < 0.35)
            else None
        )

    status = eventually(recovered, "Degraded False and a low risk", timeout=70)
    note(
        f"(b) Degraded False {time.monotonic() - healed:.1f} s after the link healed, "
        f"risk {status['risk']['score']}"
    )
    testbed.kubectl("delete", "mljob", job, "-n", "default", "--wait=false")


@contextlib.contextmanager
def kuberay_in_members(testbed: RunningTestbed) -> Iterator[None]:
    """The KubeRay stand-in for every member, each in a thread of its own (daemon: one whose
    member went down may wait on a request that no packet answers)."""
    stop = threading.Event()
    clients = [member_api(testbed, member.name) for member in testbed.members]
    threads = [
        threading.Thread(target=kuberay_sim.run, args=(api, stop, "default"), daemon=True)
        for api in clients
    ]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=2.0)


def shard_copies(testbed: RunningTestbed, job: str) -> dict[str, str]:
    """Member -> the state KubeRay's stand-in gave the job's RayJob there, for members that
    answer and hold one."""
    found = {}
    for cluster in testbed.members:
        listed = testbed.kubectl("get", "rayjobs", "-n", "default", "-l",
                                 f"continuum.dev/job={job}", "-o", "json", "--request-timeout=2s",
                                 cluster=cluster, check=False)  # fmt: skip
        for item in json.loads(listed).get("items", []) if listed else []:
            found[cluster.name] = (item.get("status") or {}).get("jobStatus") or "Pending"
    return found


def moves(testbed: RunningTestbed, job: str) -> list[dict[str, Any]]:
    return list((placement(testbed, job) or {}).get("migrations", []))


def test_a_proactive_move_completes_before_the_scripted_failure(
    testbed: RunningTestbed, sites: Sites, operator: Operator
) -> None:
    """A fault script degrades delft's link over 30 s and takes the site down at 50 s: the
    proactive job's replacement runs elsewhere before it, and the old copy is gone then."""
    job = "signals-before-failure"
    eventually(lambda: degraded(member(testbed)) == ("False", "LinkHealthy"),
               "member-1 healthy", timeout=90)  # fmt: skip
    rows = [f"{2 * step},{SHAPED},{10.0 * step},2,{0.4 * step:.1f},up" for step in range(16)]
    rows += [f"50,{SHAPED},0,0,0,down", f"75,{SHAPED},0,0,0,restore"]
    script = fault_script.parse("at_s,site,rtt_ms,jitter_ms,loss_pct,state\n" + "\n".join(rows),
                                sites.sites())  # fmt: skip
    with kuberay_in_members(testbed):
        apply_job(testbed, job, SHAPED, proactive=True)
        eventually(lambda: shard_copies(testbed, job) == {MEMBER: "RUNNING"},
                   "the shard running on member-1")  # fmt: skip
        started = time.monotonic()
        replacement_running: float | None = None
        player = threading.Thread(target=lambda: list(fault_script.play(script, sites)))
        player.start()
        try:
            while time.monotonic() - started < 50.0:
                copies = shard_copies(testbed, job)
                others = [name for name, state in copies.items() if name != MEMBER]
                if replacement_running is None and any(copies[n] == "RUNNING" for n in others):
                    replacement_running = time.monotonic() - started
                    note(f"(e) the replacement runs on {others} {replacement_running:.1f} s into "
                         "the script; the site fails at 50 s")  # fmt: skip
                if replacement_running is not None and MEMBER not in copies:
                    note(f"(e) the old copy on {MEMBER} gone "
                         f"{time.monotonic() - started:.1f} s into the script")  # fmt: skip
                    break
                time.sleep(0.5)
            assert replacement_running is not None, "no replacement ran before the failure"
            assert replacement_running < 50.0
            assert [m["reason"] for m in moves(testbed, job)] == ["Proactive"]
            assert MEMBER not in shard_copies(testbed, job), "the old copy outlived the handoff"
        finally:
            player.join(timeout=90)
        # Back after the script: the site holds no copy, and the shard did not move again.
        assert [m["reason"] for m in moves(testbed, job)] == ["Proactive"]
        testbed.kubectl("delete", "mljob", job, "-n", "default", "--wait=false")


def test_a_flapping_link_does_not_make_shards_ping_pong(
    testbed: RunningTestbed, sites: Sites, operator: Operator
) -> None:
    """delft's link swings between bad (+250 ms, 15% loss) and clean every 10 s for 2 min:
    at most one move, never back to member-1 while it flaps."""
    job = "signals-flapping"
    eventually(lambda: (condition(member(testbed), "Ready") or {}).get("status") == "True"
               and degraded(member(testbed)) == ("False", "LinkHealthy"),
               "member-1 back and healthy", timeout=120)  # fmt: skip
    rows = []
    for swing in range(12):
        bad = swing % 2 == 0
        rows.append(f"{10 * swing},{SHAPED},{250 if bad else 0},{20 if bad else 0},"
                    f"{15 if bad else 0},up")  # fmt: skip
    rows.append(f"120,{SHAPED},0,0,0,up")
    script = fault_script.parse("at_s,site,rtt_ms,jitter_ms,loss_pct,state\n" + "\n".join(rows),
                                sites.sites())  # fmt: skip
    with kuberay_in_members(testbed):
        apply_job(testbed, job, SHAPED, proactive=True)
        eventually(lambda: shard_copies(testbed, job) == {MEMBER: "RUNNING"},
                   "the shard running on member-1")  # fmt: skip
        for _ in fault_script.play(script, sites, hold_s=20.0):
            pass
        made = moves(testbed, job)
        note(f"(f) moves while the link flapped for 120 s: "
             f"{[(m['from'], m['to'], m['reason']) for m in made]}")  # fmt: skip
        assert len(made) <= 1, made
        assert all(m["to"] != MEMBER for m in made), made
    testbed.kubectl("delete", "mljob", job, "-n", "default", "--wait=false")


def test_prometheus_down_keeps_scheduling_and_says_so(
    testbed: RunningTestbed, sites: Sites, operator: Operator
) -> None:
    monitoring = testbed.testbed.monitoring
    url = testbed.prometheus_url
    assert url is not None
    port = int(url.rsplit(":", 1)[1])
    pid = monitoring.processes()["prometheus"]
    os.kill(pid, signal.SIGTERM)
    killed = time.monotonic()
    try:

        def unknown() -> bool:
            items = get_json(testbed, "memberclusters")["items"]
            return all(degraded(item) == ("Unknown", "SignalsUnavailable") for item in items)

        eventually(unknown, "every member Degraded Unknown SignalsUnavailable", timeout=30)
        note(
            f"(c) Degraded Unknown on every member {time.monotonic() - killed:.1f} s after "
            "Prometheus stopped"
        )
        assert metric(operator, "continuum_signals_up") == 0.0
        # The last known latencies stand: read once Prometheus is known to be gone (a pass in
        # flight at the kill may still have written newer ones), unchanged three passes later.
        latency = member(testbed)["status"]["latencyToSites"]
        time.sleep(6.0)
        after = member(testbed)["status"]
        assert after["latencyToSites"] == latency
        message = condition(member(testbed), "Degraded")["message"]
        assert "127.0.0.1" in message and "connection failed" in message, message
        # Scheduling goes on, on the last known latencies.
        job = "signals-without-prometheus"
        apply_job(testbed, job, SHAPED, proactive=False)
        spec = eventually(lambda: placement(testbed, job), "a Placement without Prometheus")
        assert spec["decisions"], spec
        assert operator.is_running()
        log = operator.log.read_text()
        assert log.count("link signals unavailable") == 1, log[-3000:]
        testbed.kubectl("delete", "mljob", job, "-n", "default", "--wait=false")
    finally:
        # Prometheus again, on its port (a fresh TSDB): the signals come back.
        monitoring.up(lambda: port)
    eventually(lambda: metric(operator, "continuum_signals_up") == 1.0, "signals up", timeout=60)
    eventually(lambda: degraded(member(testbed)) == ("False", "LinkHealthy"),
               "member-1 healthy again", timeout=60)  # fmt: skip
    assert "link signals available again" in operator.log.read_text()
    assert operator.is_running()
