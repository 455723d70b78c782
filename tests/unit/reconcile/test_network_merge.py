"""The scheduler's network: measured RTT over latency.csv, override.csv over both."""

from __future__ import annotations

import pytest

from continuum.operator.api import MemberCluster
from continuum.operator.reconcile.network import measured_rtts, merge_links
from continuum.schedulers.loaders import parse_latency
from continuum.schedulers.model import Link

pytestmark = pytest.mark.unit


def member(name: str, site: str, latency: dict[str, float] | None) -> MemberCluster:
    return MemberCluster.model_validate(
        {
            "metadata": {"name": name},
            "spec": {
                "tier": "Edge",
                "site": site,
                "region": "eu-west",
                "kubeconfigSecretRef": {"name": name},
            },
            **({"status": {"latencyToSites": latency}} if latency is not None else {}),
        }
    )


def table(links: tuple[Link, ...]) -> dict[tuple[str, str], tuple[float, float]]:
    return {(link.from_site, link.to_site): (link.rtt_ms, link.bandwidth_mbps) for link in links}


def test_measured_rtts_are_the_members_rows_without_the_hub() -> None:
    members = [
        member("a", "delft", {"ghent": 12.0, "hub": 3.0, "delft": 0.5}),
        member("b", "delft", {"ghent": 14.0}),
        member("c", "delft", {"ghent": 13.0}),
        member("d", "ghent", {"delft": 12.5}),
        member("e", "munich", None),
    ]
    assert measured_rtts(members) == {("delft", "ghent"): 13.0, ("ghent", "delft"): 12.5}


def test_measured_wins_over_the_config_map_and_the_override_over_both() -> None:
    configured = parse_latency(
        "from_site,to_site,rtt_ms,bandwidth_mbps\n"
        "delft,ghent,5,1000\n"
        "delft,frankfurt,20,500\n"
        "ghent,frankfurt,25\n"
    )
    measured = {("delft", "ghent"): 12.0, ("ghent", "delft"): 12.5, ("lyon", "porto"): 9.0}
    overrides = parse_latency("from_site,to_site,rtt_ms,bandwidth_mbps\nfrankfurt,delft,90,50\n")
    merged = table(merge_links(configured, measured, overrides))
    assert merged == {
        # measured, keeping the ConfigMap's bandwidth for the pair
        ("delft", "ghent"): (12.0, 1000.0),
        ("ghent", "delft"): (12.5, 1000.0),
        # measured, a pair the ConfigMap does not know: the default bandwidth
        ("lyon", "porto"): (9.0, 100.0),
        # the override, given one way, stands for both
        ("delft", "frankfurt"): (90.0, 50.0),
        ("frankfurt", "delft"): (90.0, 50.0),
        # not measured: the ConfigMap, one row for both directions
        ("ghent", "frankfurt"): (25.0, 100.0),
        ("frankfurt", "ghent"): (25.0, 100.0),
    }


def test_nothing_measured_is_the_config_map_as_before() -> None:
    configured = parse_latency("from_site,to_site,rtt_ms\ndelft,ghent,5\n")
    assert table(merge_links(configured, {})) == {
        ("delft", "ghent"): (5.0, 100.0), ("ghent", "delft"): (5.0, 100.0),
    }  # fmt: skip
    assert merge_links((), {}) == ()


def test_the_heartbeat_applies_none_of_the_signals_fields() -> None:
    from continuum.operator.reconcile.membership import heartbeat_fields

    status = {
        "conditions": [
            {"type": "Reachable", "status": "True"},
            {"type": "Degraded", "status": "True"},
            {"type": "Ready", "status": "True"},
        ],
        "risk": {"score": 0.9},
        "latencyToSites": {"hub": 3.0},
        "kubernetesVersion": "v1.37.2",
    }
    assert heartbeat_fields(status) == {
        "conditions": [
            {"type": "Reachable", "status": "True"},
            {"type": "Ready", "status": "True"},
        ],
        "kubernetesVersion": "v1.37.2",
    }
