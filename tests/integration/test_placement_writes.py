"""The scheduling cycle's background Placement writes (adapters/placement_writes.py) against
the testbed's hub: a decision is visible as pending until the hub holds it, the newest decision
for a job is the one written, and a write that cannot land wakes the scheduler."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from continuum.operator.adapters.hub import Hub
from continuum.operator.adapters.hub_mirror import HubMirror
from continuum.operator.adapters.placement_writes import PlacementWrites
from continuum.operator.api import MLJob, Placement, PlacementSpec, validate_resource
from e2e.pytest_plugin import RunningTestbed, eventually

pytestmark = pytest.mark.integration
GROUP, VERSION = "continuum.dev", "v1alpha1"
# Its own namespace per run, deleted afterwards, so that a reused testbed starts clean.
NAMESPACE = f"placement-writes-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def hub_api(testbed: RunningTestbed) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(testbed.hub.kubeconfig))
    try:
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE))
        )
    except client.ApiException as error:
        if error.status != 409:
            raise
    yield api
    client.CoreV1Api(api).delete_namespace(NAMESPACE)
    api.close()


@pytest.fixture
def mirror(hub_api: client.ApiClient) -> Iterator[HubMirror]:
    mirror = HubMirror(Hub(hub_api)).start()
    assert mirror.wait_synced(30)
    yield mirror
    mirror.stop()


def create_job(api: client.ApiClient, name: str) -> MLJob:
    manifest = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "MLJob",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"mode": "Training", "tenant": "research",
                 "shards": {"count": 1, "resources": {"cpu": "100m", "memory": "128Mi"}},
                 "ray": {"image": "rayproject/ray:2.50.0", "entrypoint": "python t.py"}},
    }  # fmt: skip
    created: Any = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, "mljobs", manifest
    )
    job = validate_resource(created)
    assert isinstance(job, MLJob)
    return job


def decision(job: MLJob, cluster: str, epoch: int) -> PlacementSpec:
    return PlacementSpec.model_validate({
        "jobRef": {"name": job.metadata.name, "uid": job.metadata.uid},
        "epoch": epoch,
        "decisions": [{"shard": 0, "cluster": cluster, "score": 1.0, "epoch": epoch}],
    })  # fmt: skip


def stored_clusters(api: client.ApiClient, name: str) -> list[str] | None:
    try:
        body: Any = client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, "placements", name
        )
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return [entry["cluster"] for entry in body["spec"]["decisions"]]


def test_a_decision_is_pending_until_written_and_the_newest_one_wins(
    hub_api: client.ApiClient, mirror: HubMirror
) -> None:
    job = create_job(hub_api, "written-soon")
    writes = PlacementWrites(mirror, on_lost=lambda: None, writers=2)
    try:
        writes.submit(job, decision(job, "member-1", 1), None)
        pending = writes.pending()
        # Before any worker runs, the next cycle already sees the decision.
        assert pending[(NAMESPACE, "written-soon")].spec.decisions[0].cluster == "member-1"
        writes.start()
        eventually(lambda: not writes.pending())
        assert stored_clusters(hub_api, "written-soon") == ["member-1"]
        assert mirror.get(Placement, (NAMESPACE, "written-soon")) is not None

        stored = mirror.model(Placement, (NAMESPACE, "written-soon"))
        assert stored is not None and isinstance(stored[0], Placement)
        for epoch, cluster in ((2, "member-2"), (3, "member-3")):
            writes.submit(job, decision(job, cluster, epoch), stored[0])
        eventually(lambda: not writes.pending())
        assert stored_clusters(hub_api, "written-soon") == ["member-3"]
    finally:
        writes.stop()


def test_a_write_that_cannot_land_is_dropped_and_wakes_the_scheduler(
    hub_api: client.ApiClient, mirror: HubMirror
) -> None:
    job = create_job(hub_api, "lost")
    # The same job as seen in a namespace the hub does not have: its create gets 404.
    elsewhere = job.model_copy(
        update={"metadata": job.metadata.model_copy(update={"namespace": "no-such-namespace"})}
    )
    woken = threading.Event()
    writes = PlacementWrites(mirror, on_lost=woken.set, writers=1).start()
    try:
        writes.submit(elsewhere, decision(elsewhere, "member-1", 1), None)
        assert woken.wait(30), "the scheduler to be woken"
        assert not writes.pending()
    finally:
        writes.stop()


def test_a_write_the_hub_refuses_is_not_kept_pending(
    hub_api: client.ApiClient, mirror: HubMirror
) -> None:
    """The CRD refuses an epoch that goes back (422): the decision is dropped, not retried for
    ever, and the scheduler is woken to decide again."""
    job = create_job(hub_api, "refused")
    writes = PlacementWrites(mirror, on_lost=lambda: None, writers=1).start()
    try:
        writes.submit(job, decision(job, "member-1", 2), None)
        eventually(lambda: not writes.pending())
        stored = eventually(lambda: mirror.model(Placement, (NAMESPACE, "refused")))
        assert isinstance(stored[0], Placement)
    finally:
        writes.stop()
    woken = threading.Event()
    writes = PlacementWrites(mirror, on_lost=woken.set, writers=1).start()
    try:
        writes.submit(job, decision(job, "member-2", 1), stored[0])
        assert woken.wait(30), "the scheduler to be woken"
        eventually(lambda: not writes.pending())
        assert stored_clusters(hub_api, "refused") == ["member-1"]
    finally:
        writes.stop()
