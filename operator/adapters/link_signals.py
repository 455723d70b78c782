"""The links between places as Prometheus measures them (docs/monitoring.md): the raw probes of
the hub's pairs over a window, and the recorded RTT and loss of every pair.

Seven queries per read, each for every pair at once, none per pair:

- `probe_success{job="continuum-links", source_site="hub"}[W]` and
  `probe_icmp_duration_seconds{job="continuum-links", source_site="hub", phase="rtt"}[W]`,
  and the same of `target_site="hub"`: the probes of the hub's links, from the hub or, for a
  site the hub cannot reach (behind NAT), from the site's agent (`api/links.seen_from`);
  range selectors in instant queries, which return each probe's raw sample with its own
  timestamp. Both series come from one scrape, so a probe's verdict and its RTT share a
  timestamp and are joined on it. (A `query_range` with a 1 s step would evaluate on a grid
  that aliases the 1 Hz scrapes: a probe whose scrape drifts across a step boundary is counted
  twice or not at all, and a pair whose scrapes stop repeats its last value for the lookback
  delta. The raw samples have neither problem and cost the same.)
- `continuum:link_rtt_seconds` and `continuum:link_loss_ratio`: the recorded 30 s means;
- `probe_success{job="continuum-links", source_site!="hub"}[P]`: the verdicts of the last
  `PEER_WINDOW_S` of probes between sites, raw as above, so that whether the other sites still
  reach a site the hub cannot is known within seconds (the 30 s mean would lag).

Every request has a timeout and is not retried (the next read is the retry). Whatever goes
wrong (refused, timed out, an HTTP error, an answer of the wrong shape) is one exception,
`SignalsUnavailableError`, whose message names the Prometheus by scheme, host and port only:
credentials in the URL become basic auth and never appear in a message, a log or a status.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from continuum.operator.api.links import (
    HUB_PLACE,
    LinkReadings,
    Pair,
    ProbeSample,
    seen_from,
)

JOB = "continuum-links"
RTT_RULE = "continuum:link_rtt_seconds"
LOSS_RULE = "continuum:link_loss_ratio"
DEFAULT_TIMEOUT_S = 5.0
PEER_WINDOW_S = 15


class SignalsUnavailableError(Exception):
    """Prometheus could not be read; the message is safe to log and to put in a status."""


class PrometheusQueries(Protocol):
    """What the reader asks of a client: `PrometheusConnect`, or a test's stand-in."""

    def custom_query(
        self, query: str, params: dict[str, Any] | None = None, timeout: float | None = None
    ) -> Any: ...


@dataclass(frozen=True)
class PrometheusEndpoint:
    """A Prometheus URL split into what is safe to show and the credentials it carried."""

    url: str
    """scheme://host[:port][/path], no userinfo, query or fragment"""
    auth: tuple[str, str] | None

    @classmethod
    def parse(cls, raw: str) -> PrometheusEndpoint:
        parts = urlsplit(raw.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the Prometheus URL must be http:// or https:// with a host")
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
        url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        auth = (parts.username or "", parts.password or "") if parts.username else None
        return cls(url, auth)


def connect(raw_url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[PrometheusConnect, str]:
    """A client for `raw_url`, and the URL as it may be shown. No request is made."""
    endpoint = PrometheusEndpoint.parse(raw_url)
    session = requests.Session()
    client = PrometheusConnect(
        endpoint.url,
        auth=endpoint.auth,
        session=session,
        retry=Retry(total=0, raise_on_status=False),
        timeout=timeout_s,
    )
    return client, endpoint.url


def _pair(metric: Mapping[str, str]) -> Pair | None:
    source, target = metric.get("source_site"), metric.get("target_site")
    return (source, target) if source and target else None


def _series(result: Any) -> dict[Pair, dict[float, float]]:
    """A matrix answer as {pair: {timestamp: value}}; several series of one pair (another
    label differs) are merged."""
    found: dict[Pair, dict[float, float]] = {}
    for item in result or []:
        pair = _pair(item["metric"])
        if pair is None:
            continue
        values = found.setdefault(pair, {})
        for at, value in item.get("values", []):
            values[float(at)] = float(value)
    return found


def _vector(result: Any) -> dict[Pair, float]:
    found: dict[Pair, float] = {}
    for item in result or []:
        pair = _pair(item["metric"])
        value = float(item["value"][1])
        if pair is not None and math.isfinite(value):
            found[pair] = value
    return found


def join_probes(
    success: Mapping[Pair, Mapping[float, float]], rtt_s: Mapping[Pair, Mapping[float, float]]
) -> dict[Pair, tuple[ProbeSample, ...]]:
    """Each probe's verdict with its RTT (same scrape, same timestamp); an answered probe whose
    RTT sample is missing is left out rather than guessed."""
    joined: dict[Pair, tuple[ProbeSample, ...]] = {}
    for pair, verdicts in success.items():
        rtts = rtt_s.get(pair, {})
        samples = []
        for at in sorted(verdicts):
            if verdicts[at] < 0.5:
                samples.append(ProbeSample(at, None))
            elif at in rtts:
                samples.append(ProbeSample(at, rtts[at] * 1000.0))
        joined[pair] = tuple(samples)
    return joined


def answers(
    success: Mapping[Pair, Mapping[float, float]],
) -> dict[Pair, tuple[tuple[float, bool], ...]]:
    """Each pair's probe verdicts as (time, answered), in time order."""
    return {
        pair: tuple((at, verdicts[at] >= 0.5) for at in sorted(verdicts))
        for pair, verdicts in success.items()
    }


class LinkSignals:
    """Reads the links from one Prometheus. `client` is a `PrometheusConnect` (see `connect`)
    or anything with its `custom_query`; `shown_url` is what messages call it."""

    def __init__(
        self,
        client: PrometheusQueries,
        shown_url: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        source: str = HUB_PLACE,
    ) -> None:
        self.client, self.shown_url, self.timeout_s = client, shown_url, timeout_s
        self.source = source

    def _query(self, expr: str, at_s: float) -> Any:
        try:
            return self.client.custom_query(expr, params={"time": f"{at_s:.3f}"},
                                            timeout=self.timeout_s)  # fmt: skip
        except requests.Timeout:
            why = f"no answer within {self.timeout_s:g} s"
        except requests.ConnectionError:
            why = "connection failed"
        except PrometheusApiClientException as error:
            # "HTTP Status Code 503 (b'...')": the status, not the body
            why = str(error).split(" (", 1)[0][:80]
        except (requests.RequestException, ValueError) as error:
            why = type(error).__name__
        raise SignalsUnavailableError(f"Prometheus at {self.shown_url}: {why}")

    def read(self, at_s: float, window_s: float) -> LinkReadings:
        """The probes of the last `window_s` seconds before `at_s` from the source place (the
        hub) to every site, the recorded RTT and loss of every pair, at `at_s`, and the
        verdicts of the last `PEER_WINDOW_S` of probes between the other places."""
        selector = f'job="{JOB}", source_site="{self.source}"'
        toward = f'job="{JOB}", target_site="{self.source}"'
        peers = f'job="{JOB}", source_site!="{self.source}"'
        window = f"[{max(1, math.ceil(window_s))}s]"
        try:
            success: dict[Pair, dict[float, float]] = {}
            rtt: dict[Pair, dict[float, float]] = {}
            for selected in (selector, toward):
                success |= _series(self._query(f"probe_success{{{selected}}}{window}", at_s))
                rtt |= _series(self._query(
                    f'probe_icmp_duration_seconds{{{selected}, phase="rtt"}}{window}', at_s
                ))  # fmt: skip
            rtt_recorded = _vector(self._query(RTT_RULE, at_s))
            loss = _vector(self._query(LOSS_RULE, at_s))
            peer_success = _series(self._query(f"probe_success{{{peers}}}[{PEER_WINDOW_S}s]", at_s))
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise SignalsUnavailableError(
                f"Prometheus at {self.shown_url}: an answer of an unexpected shape "
                f"({type(error).__name__})"
            ) from None
        return LinkReadings(
            at_s=at_s,
            samples=seen_from(self.source, join_probes(success, rtt)),
            rtt_ms=seen_from(
                self.source, {pair: seconds * 1000.0 for pair, seconds in rtt_recorded.items()}
            ),
            loss=seen_from(self.source, loss),
            peer_answers=answers(peer_success),
        )
