"""The watch mirror (adapters/watchcache.py) against the testbed's hub: it follows creates,
changes and deletes, tells its handler once per change, including the operator's own writes,
and serves an index."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from continuum.operator.adapters.watchcache import WatchCache
from e2e.pytest_plugin import RunningTestbed, eventually

pytestmark = pytest.mark.integration
GROUP, VERSION, PLURAL = "continuum.dev", "v1alpha1", "tenants"


@pytest.fixture
def objects(testbed: RunningTestbed) -> Iterator[client.CustomObjectsApi]:
    api = config.new_client_from_config(config_file=str(testbed.hub.kubeconfig))
    yield client.CustomObjectsApi(api)
    api.close()


def tenant(name: str, weight: float, team: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Tenant",
        "metadata": {"name": name, "labels": {"mirror-test": "yes", "team": team}},
        "spec": {"weight": weight},
    }  # fmt: skip


def test_the_mirror_follows_the_api_server_and_tells_each_change_once(
    objects: client.CustomObjectsApi,
) -> None:
    seen: list[tuple[str, str, int | None]] = []
    lock = threading.Lock()

    def changed(event: str, body: dict[str, Any], before: dict[str, Any] | None) -> None:
        with lock:
            seen.append(
                (event, body["metadata"]["name"], (before or {}).get("spec", {}).get("weight"))
            )

    existing = objects.create_cluster_custom_object(
        GROUP, VERSION, PLURAL, tenant("mirror-a", 1, "x")
    )
    mirror = WatchCache(
        "tenants", objects.list_cluster_custom_object,
        {"group": GROUP, "version": VERSION, "plural": PLURAL, "label_selector": "mirror-test=yes"},
        on_change=changed, index=lambda body: body["metadata"]["labels"]["team"],
    ).start()  # fmt: skip
    try:
        assert mirror.wait_synced(30)
        assert eventually(lambda: ("ADDED", "mirror-a", None) in seen)
        assert mirror.get(("", "mirror-a"))["metadata"]["uid"] == existing["metadata"]["uid"]

        # Someone else's create and change arrive by the watch.
        objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, tenant("mirror-b", 2, "y"))
        eventually(lambda: mirror.get(("", "mirror-b")))
        objects.patch_cluster_custom_object(
            GROUP, VERSION, PLURAL, "mirror-b", {"spec": {"weight": 3}}
        )
        eventually(lambda: ("MODIFIED", "mirror-b", 2) in seen)
        assert [body["metadata"]["name"] for body in mirror.indexed("y")] == ["mirror-b"]

        # Our own write, put in the mirror at once, is told once: not again when the watch
        # brings the same version.
        written = objects.patch_cluster_custom_object(
            GROUP, VERSION, PLURAL, "mirror-a", {"metadata": {"labels": {"team": "y"}}}
        )
        mirror.store(written)
        assert sorted(b["metadata"]["name"] for b in mirror.indexed("y")) == [
            "mirror-a",
            "mirror-b",
        ]
        assert mirror.indexed("x") == []
        time.sleep(1.0)  # the watch's copy of that write has arrived by now
        with lock:
            assert [
                entry for entry in seen if entry[0] == "MODIFIED" and entry[1] == "mirror-a"
            ] == [("MODIFIED", "mirror-a", 1)]

        objects.delete_cluster_custom_object(GROUP, VERSION, PLURAL, "mirror-b")
        eventually(lambda: mirror.get(("", "mirror-b")) is None)
        assert eventually(lambda: any(entry[:2] == ("DELETED", "mirror-b") for entry in seen))
    finally:
        mirror.stop()
        for name in ("mirror-a", "mirror-b"):
            try:
                objects.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
            except client.ApiException as error:
                assert error.status == 404


def managers(body: dict[str, Any]) -> set[str]:
    return {entry["manager"] for entry in body["metadata"].get("managedFields") or []}


def test_the_mirror_keeps_no_managed_fields_and_writing_its_copy_keeps_the_servers(
    testbed: RunningTestbed, objects: client.CustomObjectsApi
) -> None:
    # Made by kubectl, so that the operator's later write is another field manager's.
    testbed.kubectl("create", "-f", "-", stdin=json.dumps(tenant("mirror-m", 1, "m")))
    mirror = WatchCache(
        "tenants", objects.list_cluster_custom_object,
        {"group": GROUP, "version": VERSION, "plural": PLURAL, "label_selector": "mirror-test=yes"},
    ).start()  # fmt: skip
    try:
        assert mirror.wait_synced(30)
        held = eventually(lambda: mirror.get(("", "mirror-m")), "the Tenant in the mirror")
        assert "managedFields" not in held["metadata"]
        # A write of the mirror's copy, as the operator's status writes are: the server keeps
        # the managers it had, and adds this one.
        written = objects.replace_cluster_custom_object(
            GROUP, VERSION, PLURAL, "mirror-m", {**held, "spec": {"weight": 2}}
        )
        assert "kubectl-create" in managers(written), managers(written)
        assert len(managers(written)) == 2, managers(written)
        mirror.store(written)
        assert "managedFields" not in (mirror.get(("", "mirror-m")) or {})["metadata"]
    finally:
        mirror.stop()
        objects.delete_cluster_custom_object(GROUP, VERSION, PLURAL, "mirror-m")


def test_a_mirror_of_a_server_that_does_not_answer_is_not_in_step() -> None:
    configuration = client.Configuration()
    configuration.host = "https://127.0.0.1:9"  # nothing listens
    configuration.verify_ssl = False
    api = client.ApiClient(configuration)
    mirror = WatchCache(
        "nowhere", client.CustomObjectsApi(api).list_cluster_custom_object,
        {"group": GROUP, "version": VERSION, "plural": PLURAL},
    ).start()  # fmt: skip
    try:
        assert not mirror.wait_synced(2)
        assert eventually(lambda: mirror.last_error)
        assert mirror.items() == []
    finally:
        mirror.stop()
        api.close()
