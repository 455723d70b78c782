"""A data site the snapshot names no region for: residency=Region keeps its shards at that site
alone, shares no region with any other by a coincidence of names, and the explanation says so."""

from __future__ import annotations

import pytest
from sched_builders import SITES, cloud, edge, job, snapshot

from continuum.schedulers import Cluster, Residency, schedule
from continuum.schedulers.arrays import build_site_index
from continuum.schedulers.sim.metrics import region_map, residency_violated

pytestmark = pytest.mark.unit


def four_clusters() -> list[Cluster]:
    """delft and eindhoven in region nl, lyon in fr, the cloud in eu-cloud (sched_builders)."""
    return [
        edge("delft-1", "delft"),
        edge("eindhoven-1", "eindhoven"),
        edge("lyon-1", "lyon"),
        cloud("cloud-1"),
    ]


def test_sched_regions_a_data_site_in_no_known_region_is_named_as_such() -> None:
    regional = job("ns/regional", data_site="rotterdam", residency=Residency.REGION)
    result = schedule(snapshot(four_clusters(), [regional]))
    assert result.decisions == ()
    (unschedulable,) = result.unschedulable
    assert unschedulable.reason == (
        "residency=Region: data site rotterdam is in no known region "
        "(no cluster is at site rotterdam), which excludes all 4 clusters."
    )


def test_sched_regions_a_site_named_like_a_region_is_not_in_that_region() -> None:
    # "nl" is the region of delft and eindhoven, but no site "nl" is listed: its data may not
    # be processed in region nl because the names happen to match.
    regional = job("ns/named-nl", data_site="nl", residency=Residency.REGION)
    result = schedule(snapshot(four_clusters(), [regional]))
    assert result.decisions == ()
    (unschedulable,) = result.unschedulable
    assert "data site nl is in no known region (no cluster is at site nl)" in unschedulable.reason

    delft = edge("delft-1", "delft")
    assert residency_violated(regional, 0, delft, region_map(SITES))
    known = job("ns/delft", data_site="eindhoven", residency=Residency.REGION)
    assert not residency_violated(known, 0, delft, region_map(SITES))


def test_sched_regions_a_cluster_at_an_unlisted_site_takes_that_sites_data() -> None:
    # Outside the operator (a trace), a cluster may stand at a site the topology does not list;
    # that site is a region of its own, so its own data may stay there.
    at_rotterdam = edge("rotterdam-1", "rotterdam")
    regional = job("ns/regional", data_site="rotterdam", residency=Residency.REGION)
    result = schedule(snapshot([*four_clusters(), at_rotterdam], [regional]))
    assert result.placement() == {("ns/regional", 0): "rotterdam-1"}
    assert not residency_violated(regional, 0, at_rotterdam, region_map(SITES))


def test_sched_regions_the_site_index_tells_which_regions_are_known() -> None:
    regional = job("ns/regional", data_site="nl", residency=Residency.REGION)
    index = build_site_index(snapshot(four_clusters(), [regional]))
    known = {name: bool(index.region_known[i]) for name, i in index.index.items()}
    assert known == {"delft": True, "eindhoven": True, "lyon": True, "cloud": True, "nl": False}
    nl_site, delft = index.region_of[index.index["nl"]], index.region_of[index.index["delft"]]
    assert nl_site != delft
    assert index.region_names[delft] == "nl"
