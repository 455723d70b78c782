"""The scheduler's network: RTT between sites as measured (the members' status.latencyToSites,
written from Prometheus), the `continuum-network` ConfigMap's `latency.csv` for the pairs not
measured, and its `override.csv`, whose rows win over both. Pure.

Per ordered pair (from, to), the first of:

1. `override.csv`: an operator's word (a link known to be about to change, a pair the probes
   get wrong); a row given in one direction only stands for both, as in `latency.csv`;
2. measured: the median of what the members at `from` report for `to` (they read one series,
   so they agree but for when each was written);
3. `latency.csv`, a row in one direction standing for both;
4. nothing: the scheduler's defaults.

A measured pair keeps the bandwidth `latency.csv` gives it, if any: the probes measure no
bandwidth.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Final

from continuum.operator.api import MemberCluster
from continuum.operator.api.links import HUB_PLACE
from continuum.schedulers.model import Link, Network

LATENCY_KEY: Final = "latency.csv"
OVERRIDE_KEY: Final = "override.csv"


def measured_rtts(members: Sequence[MemberCluster]) -> dict[tuple[str, str], float]:
    """(member's site, other site) → RTT in ms, from the members' status.latencyToSites; the
    hub's own key is not a site."""
    found: dict[tuple[str, str], list[float]] = {}
    for member in members:
        if member.status is None:
            continue
        site = member.spec.site
        for other, rtt_ms in member.status.latency_to_sites.items():
            if other not in (HUB_PLACE, site):
                found.setdefault((site, other), []).append(rtt_ms)
    return {pair: statistics.median(values) for pair, values in sorted(found.items())}


def merge_links(
    configured: Sequence[Link],
    measured: dict[tuple[str, str], float],
    overrides: Sequence[Link] = (),
) -> tuple[Link, ...]:
    """One link per ordered pair, by the rule of the module's docstring."""
    table = Network(links=tuple(configured)).link_table()
    default_bandwidth = Network().default_bandwidth_mbps
    for (source, target), rtt_ms in measured.items():
        known = table.get((source, target))
        bandwidth = known.bandwidth_mbps if known else default_bandwidth
        table[(source, target)] = Link(source, target, rtt_ms, bandwidth)
    table.update(Network(links=tuple(overrides)).link_table())
    return tuple(
        Link(source, target, link.rtt_ms, link.bandwidth_mbps)
        for (source, target), link in sorted(table.items())
    )
