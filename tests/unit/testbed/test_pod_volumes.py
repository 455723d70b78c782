"""The node agent's reading of a pod's volumes and mounts, as the kubelet gives them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from e2e import pod_spec, pod_volumes

pytestmark = pytest.mark.unit

FACTS = pod_spec.NodeFacts(node_name="n", host_ip="10.77.1.1", pod_ip="10.77.1.130")
OBJECTS = {
    ("configmap", "team-a", "kube-root-ca.crt"): {"ca.crt": "CA"},
    ("configmap", "team-a", "settings"): {"a": "1", "b": "2"},
    ("secret", "team-a", "store"): {"token": "s3cr3t"},
}
ISSUED: list[tuple[str, str | None, int]] = []


def lookup(kind: str, namespace: str, name: str) -> Mapping[str, str] | None:
    return OBJECTS.get((kind, namespace, name))


def token(account: str, audience: str | None, expiration: int) -> str:
    ISSUED.append((account, audience, expiration))
    return f"token-of-{account}"


def pod(*volumes: dict[str, Any], account: str = "operator") -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "team-a", "uid": "u"},
        "spec": {"serviceAccountName": account, "volumes": list(volumes)},
    }


def volumes_of(*volumes: dict[str, Any]) -> dict[str, pod_volumes.Volume]:
    return pod_volumes.volumes(pod(*volumes), lookup, token, FACTS)


def test_the_service_account_volume_the_api_server_adds_holds_token_ca_and_namespace() -> None:
    access = {"name": "kube-api-access-x", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}}  # fmt: skip
    ISSUED.clear()
    files = volumes_of(access)["kube-api-access-x"].files
    assert files == {
        "token": (b"token-of-operator", 0o644),
        "ca.crt": (b"CA", 0o644),
        "namespace": (b"team-a", 0o644),
    }
    assert ISSUED == [("operator", None, 3607)]


def test_config_maps_and_secrets_give_every_key_or_the_items_asked_for() -> None:
    found = volumes_of(
        {"name": "all", "configMap": {"name": "settings"}},
        {"name": "some", "configMap": {"name": "settings", "items": [
            {"key": "b", "path": "sub/b.txt", "mode": 0o600}]}},
        {"name": "creds", "secret": {"secretName": "store", "defaultMode": 0o400}},
        {"name": "maybe", "secret": {"secretName": "absent", "optional": True}},
    )  # fmt: skip
    assert found["all"].files == {"a": (b"1", 0o644), "b": (b"2", 0o644)}
    assert found["some"].files == {"sub/b.txt": (b"2", 0o600)}
    assert found["creds"].files == {"token": (b"s3cr3t", 0o400)}
    assert found["maybe"].files == {}


def test_an_empty_dir_is_a_folder_or_with_medium_memory_a_tmpfs_of_its_size() -> None:
    found = volumes_of(
        {"name": "scratch", "emptyDir": {}},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
        {"name": "unbounded", "emptyDir": {"medium": "Memory"}},
    )
    assert found["scratch"].memory_bytes is None and found["scratch"].empty_dir
    assert found["shm"].memory_bytes == 2 * 1024**3
    assert found["unbounded"].memory_bytes == 0


@pytest.mark.parametrize(
    ("volume", "says"),
    [
        ({"name": "v", "hostPath": {"path": "/etc"}}, "['hostPath'] volumes are not supported"),
        ({"name": "v", "secret": {"secretName": "absent"}}, "volume v: 'absent' does not exist"),
        ({"name": "v", "configMap": {"name": "settings", "items": [
            {"key": "zz", "path": "z"}]}}, "has no key 'zz'"),
        ({"name": "v", "configMap": {"name": "settings", "items": [
            {"key": "a", "path": "../escape"}]}}, "must be relative"),
    ],
)  # fmt: skip
def test_what_this_node_cannot_give_is_refused_naming_the_volume(
    volume: dict[str, Any], says: str
) -> None:
    with pytest.raises(pod_spec.PodSpecError, match="volume v") as raised:
        volumes_of(volume)
    assert says in str(raised.value)


def test_mounts_bind_each_volume_then_make_the_root_read_only_last() -> None:
    known = volumes_of(
        {"name": "tmp", "emptyDir": {}},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        {"name": "creds", "secret": {"secretName": "store"}},
    )
    container = {
        "securityContext": {"readOnlyRootFilesystem": True},
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "shm", "mountPath": "/dev/shm"},
            {"name": "creds", "mountPath": "/etc/creds token", "readOnly": True,
             "subPath": "token"},
        ],
    }  # fmt: skip
    mounts = pod_volumes.mounts(container, known)
    folders = {name: f"/pods/k/volumes/{name}" for name in known}
    commands = pod_volumes.mount_commands(
        mounts, folders, known, pod_volumes.read_only_root(container)
    )
    assert commands == [
        "mount --bind /pods/k/volumes/tmp /tmp",
        f"mount -t tmpfs -o size={1024**2},mode=0777 tmpfs /dev/shm",
        "mount --bind /pods/k/volumes/creds/token '/etc/creds token'",
        "mount -o remount,bind,ro '/etc/creds token'",
        "mount -o remount,bind,ro /",
    ]


def test_a_mount_of_a_volume_the_pod_does_not_have_is_refused() -> None:
    with pytest.raises(pod_spec.PodSpecError, match="no volume 'other'"):
        pod_volumes.mounts({"volumeMounts": [{"name": "other", "mountPath": "/x"}]}, {})


def test_a_mount_over_the_image_puts_the_image_back_inside_it() -> None:
    known = volumes_of({"name": "tmp", "emptyDir": {}})
    mounts = pod_volumes.mounts({"volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}, known)
    image = {"/tmp/clone/.venv": "/keep/0", "/tmp/clone": "/keep/1", "/opt/env": "/keep/2"}
    commands = pod_volumes.mount_commands(mounts, {"tmp": "/v/tmp"}, known, True, image)
    assert commands == [
        "mount --bind /tmp/clone /keep/1",
        "mount --bind /tmp/clone/.venv /keep/0",
        "mount --bind /v/tmp /tmp",
        "mkdir -p /tmp/clone",
        "mount --bind /keep/1 /tmp/clone",
        "mkdir -p /tmp/clone/.venv",
        "mount --bind /keep/0 /tmp/clone/.venv",
        "mount -o remount,bind,ro /",
    ]


def test_a_folder_the_user_may_not_pass_is_veiled_and_the_image_beneath_put_back() -> None:
    commands = pod_volumes.mount_commands(
        [], {}, {}, False, {"/root/.pyenv/3.11": "/keep/0", "/opt/env": "/keep/1"}, ["/root"]
    )
    assert commands == [
        "mount --bind /root/.pyenv/3.11 /keep/0",
        "mount -t tmpfs -o mode=0755 tmpfs /root",
        "mkdir -p /root/.pyenv/3.11",
        "mount --bind /keep/0 /root/.pyenv/3.11",
    ]
