"""What Prometheus says of the links between places: the link-signals adapter reads it, the
risk model and the MemberCluster status are made from it. Plain data, no I/O.

A *place* is a site of the topology or the hub (named `hub`, where the operator runs). Pairs
are ordered, (source, target), as the blackbox probes' `source_site` and `target_site` labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Final, TypeVar

HUB_PLACE: Final = "hub"
"""The hub's place in the probes' labels (`source_site="hub"`), and its key in a MemberCluster's
status.latencyToSites: the RTT the hub measures to the member's site."""

Pair = tuple[str, str]
T = TypeVar("T")


def seen_from(place: str, by_pair: Mapping[Pair, T]) -> dict[Pair, T]:
    """The pairs as read, with a site's own readings of its link to `place` (the hub) standing
    for `place`'s readings of the site where `place` has none: a site behind NAT cannot be
    probed from the hub, but its agent probes the hub, and one round trip crosses the same
    link either way (docs/monitoring.md)."""
    found = dict(by_pair)
    for (source, target), value in by_pair.items():
        if target == place and source != place:
            found.setdefault((place, source), value)
    return found


@dataclass(frozen=True)
class ProbeSample:
    """One probe: when (Unix seconds) and its round trip in ms, None when unanswered."""

    at_s: float
    rtt_ms: float | None


@dataclass(frozen=True)
class LinkReadings:
    """One read of the links, at `at_s` (Unix seconds).

    `samples`: every probe of the pairs read raw, in time order, over the read's window;
    `rtt_ms` and `loss`: the recorded mean RTT and loss ratio of every pair over the rules'
    window (an RTT is absent when no probe was answered; the loss is then 1);
    `peer_answers`: whether each of the last few probes between two sites (the hub's pairs
    are in `samples`) was answered, in time order: how the other sites see a site."""

    at_s: float
    samples: Mapping[Pair, tuple[ProbeSample, ...]] = field(default_factory=dict)
    rtt_ms: Mapping[Pair, float] = field(default_factory=dict)
    loss: Mapping[Pair, float] = field(default_factory=dict)
    peer_answers: Mapping[Pair, tuple[tuple[float, bool], ...]] = field(default_factory=dict)

    @cached_property
    def peer_answers_to(self) -> dict[str, dict[str, tuple[tuple[float, bool], ...]]]:
        """`peer_answers` by target, then source (in order): grouped once per read, since every
        member's status looks up its own site's, and a scan of all n(n-1) pairs per member
        would cost n^3 per read."""
        grouped: dict[str, dict[str, tuple[tuple[float, bool], ...]]] = {}
        for (source, target), verdicts in sorted(self.peer_answers.items()):
            grouped.setdefault(target, {})[source] = verdicts
        return grouped
