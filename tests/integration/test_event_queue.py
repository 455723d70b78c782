"""The operator's Event queue (adapters/event_queue.py) against the testbed's hub: Events are
written in the order they were recorded, a full queue drops what comes next and counts it, and
a stop sends what is still queued."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config
from prometheus_client import REGISTRY

from continuum.operator.adapters.event_queue import EventQueue
from continuum.operator.adapters.hub import Hub
from e2e.pytest_plugin import RunningTestbed

pytestmark = pytest.mark.integration
# Its own namespace per run, deleted afterwards, so that a reused testbed starts clean.
NAMESPACE = f"event-queue-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def hub_api(testbed: RunningTestbed) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(testbed.hub.kubeconfig))
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE))
    )
    yield api
    client.CoreV1Api(api).delete_namespace(NAMESPACE)
    api.close()


def involved(api: client.ApiClient, name: str) -> dict[str, Any]:
    """A real object for the Events to be about: a ConfigMap, as the API server returns it."""
    core = client.CoreV1Api(api)
    created = core.create_namespaced_config_map(
        NAMESPACE, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name))
    )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": created.metadata.uid,
                     "resourceVersion": created.metadata.resource_version},
    }  # fmt: skip


def reasons_in_hub(api: client.ApiClient, name: str) -> list[str]:
    events = client.CoreV1Api(api).list_namespaced_event(
        NAMESPACE, field_selector=f"involvedObject.name={name}"
    )
    ordered = sorted(events.items, key=lambda event: event.metadata.resource_version)
    return [event.reason for event in ordered]


def dropped() -> float:
    return REGISTRY.get_sample_value("continuum_events_dropped_total") or 0.0


def test_events_reach_the_hub_in_the_order_recorded(hub_api: client.ApiClient) -> None:
    about = involved(hub_api, "ordered")
    queue = EventQueue(Hub(hub_api).record_event).start()
    try:
        for index in range(5):
            queue.record_event(about, "Normal", f"Step{index}", f"step {index}")
        assert queue.wait_sent(30)
    finally:
        queue.stop()
    assert reasons_in_hub(hub_api, "ordered") == [f"Step{index}" for index in range(5)]


def test_a_full_queue_drops_what_comes_next_and_counts_it(hub_api: client.ApiClient) -> None:
    about = involved(hub_api, "full")
    before = dropped()
    queue = EventQueue(Hub(hub_api).record_event, capacity=2)  # not started: nothing drains
    for reason in ("First", "Second", "Third"):
        queue.record_event(about, "Normal", reason, reason.lower())
    assert dropped() == before + 1
    queue.start()
    try:
        assert queue.wait_sent(30)
    finally:
        queue.stop()
    assert reasons_in_hub(hub_api, "full") == ["First", "Second"]


def test_a_stop_sends_what_is_still_queued(hub_api: client.ApiClient) -> None:
    about = involved(hub_api, "stopped")
    queue = EventQueue(Hub(hub_api).record_event)
    queue.record_event(about, "Normal", "Queued", "recorded before the sender started")
    queue.start()
    queue.stop(flush_s=30)
    assert reasons_in_hub(hub_api, "stopped") == ["Queued"]
