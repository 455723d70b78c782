"""What a real kube-apiserver does that a mock would get wrong, checked on the testbed."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from e2e.pytest_plugin import RunningTestbed

pytestmark = pytest.mark.integration

WAIT_S = 60.0


def _config_map(name: str, data: dict[str, str] | None = None) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data=data or {})


def _eventually(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_invalid_custom_object_is_rejected_with_422_naming_the_field(
    hub_api: client.ApiClient, namespace: str
) -> None:
    mljob = {
        "apiVersion": "continuum.dev/v1alpha1",
        "kind": "MLJob",
        "metadata": {"name": "gang-too-big"},
        "spec": {
            "mode": "Training",
            "tenant": "research",
            "shards": {"count": 2, "minAvailable": 3, "resources": {"cpu": "1", "memory": "1Gi"}},
            "ray": {"image": "rayproject/ray:2.50.0", "entrypoint": "python train.py"},
        },
    }
    with pytest.raises(ApiException) as raised:
        client.CustomObjectsApi(hub_api).create_namespaced_custom_object(
            "continuum.dev", "v1alpha1", namespace, "mljobs", mljob
        )
    assert raised.value.status == 422
    body = json.loads(raised.value.body)
    fields = [cause.get("field") for cause in body["details"]["causes"]]
    assert "spec.shards.minAvailable" in fields, body

    typed_wrong = {**mljob, "spec": {**mljob["spec"], "priority": "high"}}
    typed_wrong["spec"]["shards"] = {**mljob["spec"]["shards"], "minAvailable": 1}
    with pytest.raises(ApiException) as raised:
        client.CustomObjectsApi(hub_api).create_namespaced_custom_object(
            "continuum.dev", "v1alpha1", namespace, "mljobs", typed_wrong
        )
    assert raised.value.status == 422
    fields = [cause.get("field") for cause in json.loads(raised.value.body)["details"]["causes"]]
    assert "spec.priority" in fields


def test_update_with_a_stale_resource_version_gets_409(
    hub_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(hub_api)
    created = core.create_namespaced_config_map(namespace, _config_map("versioned", {"n": "1"}))
    stale = created.metadata.resource_version
    created.data = {"n": "2"}
    core.replace_namespaced_config_map("versioned", namespace, created)

    created.data = {"n": "3"}
    created.metadata.resource_version = stale
    with pytest.raises(ApiException) as raised:
        core.replace_namespaced_config_map("versioned", namespace, created)
    assert raised.value.status == 409
    assert core.read_namespaced_config_map("versioned", namespace).data == {"n": "2"}


def test_watch_sees_added_modified_and_deleted(hub_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(hub_api)
    resource_version = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, _config_map("watched"))
    core.patch_namespaced_config_map("watched", namespace, {"data": {"k": "v"}})
    core.delete_namespaced_config_map("watched", namespace)

    # A watch from a resourceVersion before the changes replays them, as the watch cache keeps
    # recent history; the server ends the stream after timeout_seconds at the latest.
    seen = []
    watcher = watch.Watch()
    for event in watcher.stream(
        core.list_namespaced_config_map,
        namespace,
        resource_version=resource_version,
        timeout_seconds=int(WAIT_S),
    ):
        if event["object"].metadata.name == "watched":
            seen.append(event["type"])
        if event["type"] == "DELETED":
            watcher.stop()
    assert seen == ["ADDED", "MODIFIED", "DELETED"]


def test_deleting_an_owner_garbage_collects_what_it_owns(
    hub_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(hub_api)
    owner = core.create_namespaced_config_map(namespace, _config_map("owner"))
    dependent = _config_map("dependent")
    dependent.metadata.owner_references = [
        client.V1OwnerReference(
            api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
        )
    ]
    core.create_namespaced_config_map(namespace, dependent)
    bystander = core.create_namespaced_config_map(namespace, _config_map("bystander"))
    assert bystander.metadata.owner_references is None

    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")

    def dependent_is_gone() -> bool:
        names = {item.metadata.name for item in core.list_namespaced_config_map(namespace).items}
        return "dependent" not in names

    _eventually(dependent_is_gone, "the garbage collector to delete the dependent")
    names = {item.metadata.name for item in core.list_namespaced_config_map(namespace).items}
    assert "bystander" in names


def test_service_account_token_without_a_role_binding_gets_403(
    hub_api: client.ApiClient, testbed: RunningTestbed, namespace: str
) -> None:
    core = client.CoreV1Api(hub_api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
    )
    token = core.create_namespaced_service_account_token(
        "reader", namespace, client.AuthenticationV1TokenRequest(spec={"audiences": []})
    ).status.token

    configuration = client.Configuration()
    configuration.host = testbed.hub.server
    configuration.ssl_ca_cert = str(
        testbed.testbed.cluster_dir("hub") / "pki" / "ca.crt"
    )  # the same CA the kubeconfig carries inline
    configuration.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(configuration) as as_reader:
        reader_core = client.CoreV1Api(as_reader)
        with pytest.raises(ApiException) as raised:
            reader_core.list_namespaced_config_map(namespace)
        # 403, not 401: the token authenticated, and RBAC said no.
        assert raised.value.status == 403
        assert f"system:serviceaccount:{namespace}:reader" in raised.value.body

        rbac = client.RbacAuthorizationV1Api(hub_api)
        rbac.create_namespaced_role(
            namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="read-configmaps"),
                rules=[
                    client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["list"])
                ],
            ),
        )
        rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="reader-reads"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="Role", name="read-configmaps"
                ),
                subjects=[
                    client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)
                ],
            ),
        )

        def allowed() -> bool:
            try:
                reader_core.list_namespaced_config_map(namespace)
            except ApiException as error:
                if error.status != 403:
                    raise
                return False
            return True

        # The authorizer learns of a new binding from its watch cache, a moment after the write.
        _eventually(allowed, "the reader allowed once its role binding is known")


def test_kubectl_apply_works_against_the_hub(
    hub_api: client.ApiClient, testbed: RunningTestbed, namespace: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "settings.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: edge\n"
    )
    output = testbed.kubectl("apply", "-n", namespace, "-f", str(manifest))
    assert "configmap/settings created" in output
    stored = client.CoreV1Api(hub_api).read_namespaced_config_map("settings", namespace)
    assert stored.data == {"mode": "edge"}

    manifest.write_text(manifest.read_text().replace("edge", "cloud"))
    assert "configmap/settings configured" in testbed.kubectl(
        "apply", "-n", namespace, "-f", str(manifest)
    )
    stored = client.CoreV1Api(hub_api).read_namespaced_config_map("settings", namespace)
    assert stored.data == {"mode": "cloud"}


def test_the_hub_serves_continuum_and_the_members_kuberay(testbed: RunningTestbed) -> None:
    hub_crds = testbed.kubectl("get", "crd", "-o", "name").split()
    assert "customresourcedefinition.apiextensions.k8s.io/mljobs.continuum.dev" in hub_crds


def test_members_are_separate_clusters_with_kuberay_crds(testbed: RunningTestbed) -> None:
    assert len(testbed.members) == 4
    servers = {testbed.hub.server, *(member.server for member in testbed.members)}
    assert len(servers) == 5
    for member in testbed.members:
        crds = testbed.kubectl("get", "crd", "-o", "name", cluster=member).split()
        assert "customresourcedefinition.apiextensions.k8s.io/rayjobs.ray.io" in crds
        assert "customresourcedefinition.apiextensions.k8s.io/rayservices.ray.io" in crds
    only_in_first = f"only-in-member-1-{uuid.uuid4().hex[:6]}"
    testbed.kubectl("create", "namespace", only_in_first, cluster=testbed.members[0])
    try:
        for other in (testbed.hub, *testbed.members[1:]):
            found = testbed.kubectl("get", "namespace", "-o", "name", cluster=other).split()
            assert f"namespace/{only_in_first}" not in found
    finally:
        testbed.kubectl(
            "delete", "namespace", only_in_first, "--wait=false", cluster=testbed.members[0]
        )
