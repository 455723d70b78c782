"""Pull sites feed the risk model from their side, on the testbed's sites and its real Prometheus.

The hub cannot probe a site behind NAT, so here it does not: every member is a Pull member
(`continuum member join`), its agent runs at its site and serves the site's link probes as a
blackbox exporter would, and Prometheus asks each agent to probe the hub
(`source_site=<site>, target_site=hub`; e2e/monitoring.py). The operator reads those probes as
the hub's link to the site:

- Prometheus holds the agents' probes of the hub and none of the hub's of the Pull sites, and
  each agent exports its cluster's nodes;
- a Pull member's measured RTT to the hub is in its status.latencyToSites, and follows the link;
- a degrading link raises its risk and its Degraded condition, and moves a proactive job's
  shard off it before it fails, as for a Push member.

The module runs a testbed of its own (root, /dev/net/tun, Debian's prometheus and blackbox
exporter): member-1 at delft, member-2 eindhoven, member-3 ghent, member-4 frankfurt, each
behind the link emulator; e2e/kuberay_sim.py plays KubeRay in every member.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import config
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

from e2e import kuberay_sim, pull_members
from e2e.operator_process import REPO, Operator, condition, get_json
from e2e.pytest_plugin import RunningTestbed, running_testbed
from e2e.sites import HUB_ADDRESS, Sites
from e2e.testbed import free_port, member_sites

pytestmark = NEEDS_SITES_AND_PROMETHEUS

SHAPED, MEMBER = "delft", "member-1"
AGENT_LIFETIME_S = 3600.0


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTestbed]:
    """This module's own testbed, with sites and Prometheus (the session's has neither)."""
    yield from running_testbed(tmp_path_factory.mktemp("testbed-pull-signals"), True, True)


@pytest.fixture(scope="module")
def sites(testbed: RunningTestbed) -> Iterator[Sites]:
    yield from sites_put_back(testbed)


@pytest.fixture(scope="module")
def agents(
    testbed: RunningTestbed, sites: Sites, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[pull_members.PullAgents]:
    """Every member joined as a Pull member, its agent at its site, probing the hub for
    Prometheus in place of the hub probing the site."""
    assert pull_members.hub_reachable_from_sites(testbed.hub), testbed.hub.server
    folder = tmp_path_factory.mktemp("pull-agents")
    kubeconfigs = pull_members.join_members(
        testbed.hub, testbed.members, folder, testbed.hub.server
    )
    placed = {
        member.name: site
        for member, site in zip(
            testbed.members, member_sites(len(testbed.members), None), strict=True
        )
    }
    running = pull_members.PullAgents(sites, placed, AGENT_LIFETIME_S)
    running.start(testbed.members, kubeconfigs, folder)
    testbed.testbed.monitoring.up(free_port, agent_probers=running.probers())
    stop = threading.Event()
    apis = [config.new_client_from_config(config_file=str(m.kubeconfig)) for m in testbed.members]
    sims = [threading.Thread(target=kuberay_sim.run, args=(api, stop), daemon=True)
            for api in apis]  # fmt: skip
    for sim in sims:
        sim.start()
    try:
        yield running
    finally:
        running.stop()
        stop.set()
        for sim in sims:
            sim.join(timeout=10)
        for api in apis:
            api.close()


@pytest.fixture(scope="module")
def operator(
    testbed: RunningTestbed,
    agents: pull_members.PullAgents,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    testbed.kubectl("apply", "-f", str(REPO / "examples" / "tenants.yaml"))
    running = Operator(
        testbed.hub.kubeconfig,
        tmp_path_factory.mktemp("operator-pull-signals") / "log",
        ["--prometheus-url", prometheus_url(testbed), "--signals-interval", "2"],
    )
    running.start()
    try:
        yield running
    finally:
        if running.process is not None:
            running.stop()


def prometheus_url(testbed: RunningTestbed) -> str:
    """Prometheus as it runs now: started again, on a port of its own, when the agents became
    the Pull sites' probers (`testbed.prometheus_url` is the first one's)."""
    url = testbed.testbed.prometheus_url()
    assert url is not None
    return url


def prometheus(testbed: RunningTestbed, query: str) -> list[dict[str, Any]]:
    url = f"{prometheus_url(testbed)}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(url, timeout=10) as reply:
        found: list[dict[str, Any]] = json.loads(reply.read())["data"]["result"]
    return found


def member(testbed: RunningTestbed, name: str = MEMBER) -> dict[str, Any]:
    return member_named(testbed, name)


def test_the_agents_probe_the_hub_and_the_hub_probes_no_pull_site(
    testbed: RunningTestbed, agents: pull_members.PullAgents
) -> None:
    def answered_by_every_agent() -> list[dict[str, Any]] | None:
        found = prometheus(testbed, 'probe_success{job="continuum-links", target_site="hub"}')
        answered = {item["metric"]["source_site"] for item in found if item["value"][1] == "1"}
        return found if answered == set(agents.probers()) else None

    found = eventually(answered_by_every_agent, "every agent's probe of the hub answered", 90)
    assert {item["metric"]["instance"] for item in found} == {HUB_ADDRESS}
    assert prometheus(testbed, 'probe_success{job="continuum-links", source_site="hub"}') == []
    # The agent exports its cluster's nodes beside its probes (scraped over the site's link).
    endpoint = agents.endpoints[MEMBER]
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    exported = dict(
        line.split(" ", 1) for line in text.splitlines() if line.startswith("continuum_agent_nodes")
    )
    cluster = next(m for m in testbed.members if m.name == MEMBER)
    nodes = get_json(testbed, "nodes", cluster=cluster)["items"]
    ready = [node for node in nodes if (condition(node, "Ready") or {}).get("status") == "True"]
    assert exported == {
        "continuum_agent_nodes": f"{float(len(nodes))}",
        "continuum_agent_nodes_ready": f"{float(len(ready))}",
    }, text


def test_a_pull_members_rtt_to_the_hub_comes_from_its_agents_probes(
    testbed: RunningTestbed, sites: Sites, operator: Operator
) -> None:
    def healthy() -> bool:
        status = member(testbed).get("status", {})
        return degraded(member(testbed)) == ("False", "LinkHealthy") and "hub" in status.get(
            "latencyToSites", {}
        )

    eventually(healthy, "member-1 healthy with its RTT to the hub", timeout=120)
    set_ms = 80.0
    sites.shape(SHAPED, set_ms)
    time.sleep(SETTLE_S)

    def within() -> float | None:
        rtt = member(testbed)["status"]["latencyToSites"].get("hub", -1.0)
        return rtt if abs(rtt - set_ms) <= 0.2 * set_ms else None

    rtt = eventually(within, "latencyToSites.hub within 20% of the set RTT", timeout=30)
    print(f"delft shaped +{set_ms:.0f} ms: member-1's latencyToSites.hub {rtt} ms")
    sites.shape(SHAPED, 0.0)
    eventually(
        lambda: member(testbed)["status"]["latencyToSites"].get("hub", 99.0) < 10.0,
        "member-1's RTT back down",
        timeout=SETTLE_S + 30,
    )


def test_a_degrading_pull_site_raises_its_risk_and_moves_a_proactive_shard_off_it(
    testbed: RunningTestbed, sites: Sites, operator: Operator
) -> None:
    job = "pull-proactive"
    apply_job(testbed, job, SHAPED, proactive=True)
    spec = eventually(lambda: (placement(testbed, job) or {}).get("decisions"), "the Placement")
    assert [decision["cluster"] for decision in spec] == [MEMBER], spec
    eventually(
        lambda: (
            degraded(member(testbed)) == ("False", "LinkHealthy")
            and member(testbed)["status"]["risk"]["score"] < 0.35
        ),
        "member-1 healthy",
        timeout=90,
    )
    # RTT climbs 0 -> 400 ms over 40 s, loss to 12% each way: the ramp the Push test plays.
    peak, raised = 0.0, None
    for step in range(21):
        sites.shape(SHAPED, 20.0 * step, loss_pct=0.6 * step)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            status = member(testbed).get("status", {})
            peak = max(peak, (status.get("risk") or {}).get("score", 0.0))
            raised = raised or (degraded({"status": status}) or ("", ""))[0] == "True"
            time.sleep(0.5)
    if not raised:
        eventually(lambda: (degraded(member(testbed)) or ("",))[0] == "True",
                   "member-1 Degraded", timeout=30)  # fmt: skip
    peak = max(peak, member(testbed)["status"]["risk"]["score"])
    print(f"pull site ramp: peak risk {peak}, Degraded {degraded(member(testbed))}")
    assert peak > 0.5

    def moved() -> dict[str, Any] | None:
        found = placement(testbed, job) or {}
        proactive = [m for m in found.get("migrations", []) if m["reason"] == "Proactive"]
        return proactive[0] if proactive else None

    migration = eventually(moved, "a Proactive migration in the Placement", timeout=30)
    assert migration["from"] == MEMBER and migration["to"] != MEMBER, migration
    sites.shape(SHAPED, 0.0)
    testbed.kubectl("delete", "mljob", job, "-n", "default", "--wait=false")
