"""The link-signals reader's own logic: the URL split from its credentials, the join of a
probe's verdict and RTT, and errors that never name the credentials. Prometheus itself is
read for real in tests/integration/test_operator_signals.py."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from prometheus_api_client import PrometheusApiClientException

from continuum.operator.adapters.link_signals import (
    LinkSignals,
    PrometheusEndpoint,
    SignalsUnavailableError,
    connect,
    join_probes,
)
from continuum.operator.api.links import ProbeSample, seen_from

pytestmark = pytest.mark.unit


def test_credentials_leave_the_url_for_basic_auth() -> None:
    endpoint = PrometheusEndpoint.parse("https://reader:s3cret@prom.example:9443/prom/?x=1#f")
    assert endpoint.url == "https://prom.example:9443/prom"
    assert endpoint.auth == ("reader", "s3cret")
    assert PrometheusEndpoint.parse("http://127.0.0.1:9090").auth is None
    with pytest.raises(ValueError, match="http"):
        PrometheusEndpoint.parse("ftp://x")
    client, shown = connect("http://u:p@127.0.0.1:1")
    assert shown == "http://127.0.0.1:1" and client.auth == ("u", "p")


def test_a_probe_is_its_verdict_joined_with_its_rtt() -> None:
    success = {("hub", "delft"): {3.0: 1.0, 1.0: 1.0, 2.0: 0.0, 4.0: 1.0}}
    rtt = {("hub", "delft"): {1.0: 0.020, 2.0: 0.0, 3.0: 0.0215}}
    assert join_probes(success, rtt) == {
        ("hub", "delft"): (
            ProbeSample(1.0, 20.0), ProbeSample(2.0, None), ProbeSample(3.0, 21.5),
        )  # 4.0: answered, but no RTT sample: left out
    }  # fmt: skip


class Failing:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def custom_query(self, query: str, params: Any = None, timeout: float | None = None) -> Any:
        raise self.error


@pytest.mark.parametrize(
    ("error", "why"),
    [
        (requests.ConnectionError("HTTPConnectionPool(host='u:s3cret@h')"), "connection failed"),
        (requests.ReadTimeout("read timed out"), "no answer within 2 s"),
        (PrometheusApiClientException("HTTP Status Code 503 (b's3cret')"), "HTTP Status Code 503"),
        (ValueError("Expecting value"), "ValueError"),
    ],
)
def test_every_failure_is_one_error_without_the_credentials(error: Exception, why: str) -> None:
    reader = LinkSignals(Failing(error), "http://h:9090", timeout_s=2)
    with pytest.raises(SignalsUnavailableError) as raised:
        reader.read(1000.0, 300)
    assert str(raised.value) == f"Prometheus at http://h:9090: {why}"
    assert raised.value.__cause__ is None and raised.value.__context__ is None


class Answering:
    def __init__(self) -> None:
        self.queries: list[tuple[str, Any, float | None]] = []

    def custom_query(self, query: str, params: Any = None, timeout: float | None = None) -> Any:
        self.queries.append((query, params, timeout))
        labels = {"source_site": "hub", "target_site": "delft", "instance": "10.0.0.1"}
        if 'target_site="hub"' in query:  # a Pull site's agent probing the hub
            pulled = {"source_site": "enschede", "target_site": "hub", "instance": "10.9.0.1"}
            values = [[10.2, "1"]] if query.startswith("probe_success") else [[10.2, "0.03"]]
            return [{"metric": pulled, "values": values}]
        if query.startswith("probe_success") and 'source_site!="hub"' in query:
            peer = {"source_site": "ghent", "target_site": "delft", "instance": "10.0.0.1"}
            return [{"metric": peer, "values": [[10.5, "1"], [11.5, "0"]]}]
        if query.startswith("probe_success"):
            return [{"metric": labels, "values": [[10.0, "1"], [11.0, "0"]]}]
        if query.startswith("probe_icmp"):
            return [{"metric": labels, "values": [[10.0, "0.004"], [11.0, "0"]]}]
        pulled = {"source_site": "enschede", "target_site": "hub"}
        if query == "continuum:link_rtt_seconds":
            return [{"metric": labels, "value": [12.0, "0.004"]},
                    {"metric": pulled, "value": [12.0, "0.03"]},
                    {"metric": {"target_site": "x"}, "value": [12.0, "1"]}]  # fmt: skip
        return [{"metric": labels, "value": [12.0, "0.5"]},
                {"metric": pulled, "value": [12.0, "0"]}]  # fmt: skip


def test_seven_queries_for_every_pair_at_once() -> None:
    client = Answering()
    readings = LinkSignals(client, "http://h:9090", timeout_s=3).read(12.0, 299.5)
    assert [query for query, _, _ in client.queries] == [
        'probe_success{job="continuum-links", source_site="hub"}[300s]',
        'probe_icmp_duration_seconds{job="continuum-links", source_site="hub", phase="rtt"}[300s]',
        'probe_success{job="continuum-links", target_site="hub"}[300s]',
        'probe_icmp_duration_seconds{job="continuum-links", target_site="hub", phase="rtt"}[300s]',
        "continuum:link_rtt_seconds",
        "continuum:link_loss_ratio",
        'probe_success{job="continuum-links", source_site!="hub"}[15s]',
    ]
    assert all(
        params == {"time": "12.000"} and timeout == 3 for _, params, timeout in client.queries
    )
    hub_probes = (ProbeSample(10.0, 4.0), ProbeSample(11.0, None))
    site_probes = (ProbeSample(10.2, 30.0),)
    # The site the hub has no probes of (behind NAT) is seen by its own probes of the hub.
    assert readings.samples == {
        ("hub", "delft"): hub_probes,
        ("enschede", "hub"): site_probes,
        ("hub", "enschede"): site_probes,
    }
    assert readings.rtt_ms == {("hub", "delft"): 4.0, ("enschede", "hub"): 30.0,
                               ("hub", "enschede"): 30.0}  # fmt: skip
    assert readings.loss == {("hub", "delft"): 0.5, ("enschede", "hub"): 0.0,
                             ("hub", "enschede"): 0.0}  # fmt: skip
    assert readings.peer_answers == {("ghent", "delft"): ((10.5, True), (11.5, False))}


def test_the_hubs_own_probes_of_a_site_come_before_the_sites_probes_of_the_hub() -> None:
    by_pair = {("hub", "delft"): 1, ("delft", "hub"): 2, ("ghent", "hub"): 3, ("ghent", "delft"): 4}
    assert seen_from("hub", by_pair) == {**by_pair, ("hub", "ghent"): 3}
