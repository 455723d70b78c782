"""The gate in front of a member, against real sockets on 127.0.0.1: one that answers, and one
that accepts connections and never answers, as a stopped API server does."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import urllib3
from kubernetes import client

from continuum.operator.adapters.kube import describe_connection_error
from continuum.operator.adapters.member_gate import (
    GatedApiClient,
    MemberBusyError,
    MemberGate,
    MemberNotAnsweringError,
)

pytestmark = pytest.mark.unit


class _Version(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        version = {"major": "1", "minor": "37", "gitVersion": "v1.37.2", "gitCommit": "0",
                   "gitTreeState": "clean", "buildDate": "2026-11-01T00:00:00Z",
                   "goVersion": "go1.25", "compiler": "gc", "platform": "linux/amd64"}  # fmt: skip
        body = json.dumps(version).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def answering() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Version)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def hung() -> Iterator[str]:
    """A listening socket nobody accepts from: connections queue, requests never answer."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def gated(url: str, gate: MemberGate, timeout_s: float = 0.5) -> GatedApiClient:
    configuration = client.Configuration()
    configuration.host = url
    configuration.retries = False
    return GatedApiClient(configuration, gate, timeout_s, describe_connection_error)


def test_requests_to_an_answering_member_pass(answering: str) -> None:
    gate = MemberGate("edge")
    version = client.VersionApi(gated(answering, gate)).get_code()
    assert version.git_version == "v1.37.2"
    assert gate.state.answering


def test_one_timeout_closes_the_gate_and_later_requests_fail_at_once(hung: str) -> None:
    gate = MemberGate("edge")
    api = gated(hung, gate)
    with pytest.raises(urllib3.exceptions.HTTPError):
        client.VersionApi(api).get_code()
    state = gate.state
    assert not state.answering
    assert state.why == "no answer within the timeout"
    started = time.monotonic()
    with pytest.raises(MemberNotAnsweringError) as refused:
        client.VersionApi(api).get_code()
    assert time.monotonic() - started < 0.1
    assert "not answering (no answer within the timeout)" in refused.value.message


def test_a_probe_passes_a_closed_gate_and_reopens_it_when_answered(answering: str) -> None:
    gate = MemberGate("edge")
    gate.not_answering("no answer within the timeout")
    api = gated(answering, gate)
    with pytest.raises(MemberNotAnsweringError):
        client.VersionApi(api).get_code()
    with gate.probing():
        client.VersionApi(api).get_code()
    gate.answering()
    assert client.VersionApi(api).get_code().git_version == "v1.37.2"


class _Slow(_Version):
    def do_GET(self) -> None:
        time.sleep(0.3)
        super().do_GET()


def test_a_busy_member_queues_requests_for_a_slot() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    gate = MemberGate("edge", max_in_flight=1, slot_wait_s=2.0, suspect_after_s=1.0)
    api = gated(f"http://127.0.0.1:{server.server_address[1]}", gate, timeout_s=2.0)
    try:
        answers: list[str] = []
        threads = [
            threading.Thread(target=lambda: answers.append(client.VersionApi(api).get_code()
                                                           .git_version))
            for _ in range(3)
        ]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        assert answers == ["v1.37.2"] * 3  # one at a time, each waiting under a second
    finally:
        server.shutdown()
        server.server_close()


def test_requests_beyond_the_slots_of_a_hung_member_give_up(hung: str) -> None:
    gate = MemberGate("edge", max_in_flight=2, slot_wait_s=5.0, suspect_after_s=0.1)
    api = gated(hung, gate, timeout_s=1.0)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            client.VersionApi(api).get_code()
        except Exception as error:
            errors.append(error)

    waiting = [threading.Thread(target=call) for _ in range(2)]
    for thread in waiting:
        thread.start()
    time.sleep(0.2)  # both slots taken by requests that hang
    started = time.monotonic()
    with pytest.raises(MemberBusyError):
        client.VersionApi(api).get_code()
    assert time.monotonic() - started < 0.5
    for thread in waiting:
        thread.join(5)
    assert len(errors) == 2 and not gate.state.answering


def test_a_refused_connection_is_described_without_its_address() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free, and nothing listens once closed
    gate = MemberGate("edge")
    with pytest.raises(urllib3.exceptions.HTTPError) as failed:
        client.VersionApi(gated(f"http://127.0.0.1:{port}", gate)).get_code()
    described = describe_connection_error(failed.value)
    assert described == "the connection was refused"
    assert gate.state.why == described
    assert str(port) not in described


def test_a_tls_failure_is_a_connection_failure_that_names_nothing(answering: str) -> None:
    gate = MemberGate("edge")
    configuration = client.Configuration()
    configuration.host = answering.replace("http://", "https://")  # it speaks plain HTTP
    configuration.retries = False
    api = GatedApiClient(configuration, gate, 1.0, describe_connection_error)
    with pytest.raises(urllib3.exceptions.SSLError) as failed:
        client.VersionApi(api).get_code()
    assert describe_connection_error(failed.value) == "the TLS handshake failed"
    assert not gate.state.answering
