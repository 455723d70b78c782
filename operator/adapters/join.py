"""The I/O of `continuum member join` and `leave`, with the admin's credentials: applies a Pull
member's hub objects (`continuum.operator.api.join`), asks the TokenRequest API for its agent's
token, and deletes what join made.

Objects are server-side applied with one field manager, forced: join declares them, so running
it again converges them to what it says now and changes nothing else. The Lease's holder and
renewal times are the agent's fields, which join never sets, so a second join leaves a running
agent's lease alone.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from continuum.operator.adapters.hub import APPLY_PATCH
from continuum.operator.api import GROUP, VERSION
from continuum.operator.api.join import MEMBER_LABEL
from continuum.operator.api.work import AGENT_NAME, member_namespace

FIELD_MANAGER = "continuum-join"
REQUEST_TIMEOUT_S = 10.0
MEMBER_CLUSTERS = "memberclusters"


def admin_client(kubeconfig: str | None) -> client.ApiClient:
    """The hub's client from the admin's kubeconfig: `kubeconfig`, or $KUBECONFIG, or
    ~/.kube/config."""
    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return client.ApiClient(configuration)


def hub_endpoint(api: client.ApiClient) -> tuple[str, str | None]:
    """The server the admin's client reaches and the CA it trusts there (base64 PEM, as a
    kubeconfig's certificate-authority-data), or None when it trusts the system's CAs."""
    configuration = api.configuration
    ca_file = configuration.ssl_ca_cert
    if not ca_file:
        return configuration.host, None
    return configuration.host, base64.b64encode(Path(ca_file).read_bytes()).decode()


@dataclass(frozen=True)
class _Kind:
    """How the typed clients apply one kind: its patch method, and whether it is namespaced."""

    patch: Callable[[client.ApiClient], Callable[..., Any]]
    namespaced: bool


_KINDS: dict[str, _Kind] = {
    "Namespace": _Kind(lambda api: client.CoreV1Api(api).patch_namespace, False),
    "ServiceAccount": _Kind(
        lambda api: client.CoreV1Api(api).patch_namespaced_service_account, True
    ),
    "Lease": _Kind(lambda api: client.CoordinationV1Api(api).patch_namespaced_lease, True),
    "Role": _Kind(lambda api: client.RbacAuthorizationV1Api(api).patch_namespaced_role, True),
    "RoleBinding": _Kind(
        lambda api: client.RbacAuthorizationV1Api(api).patch_namespaced_role_binding, True
    ),
    "ClusterRole": _Kind(lambda api: client.RbacAuthorizationV1Api(api).patch_cluster_role, False),
    "ClusterRoleBinding": _Kind(
        lambda api: client.RbacAuthorizationV1Api(api).patch_cluster_role_binding, False
    ),
}


def apply_objects(api: client.ApiClient, objects: Iterable[dict[str, Any]]) -> None:
    """Server-side applies each object in turn: created if absent, else patched to it."""
    options: dict[str, Any] = {
        "field_manager": FIELD_MANAGER, "force": True, "_content_type": APPLY_PATCH,
        "_request_timeout": REQUEST_TIMEOUT_S,
    }  # fmt: skip
    for body in objects:
        metadata = body["metadata"]
        if body["kind"] == "MemberCluster":
            client.CustomObjectsApi(api).patch_cluster_custom_object(
                GROUP, VERSION, MEMBER_CLUSTERS, metadata["name"], body, **options
            )
            continue
        kind = _KINDS[body["kind"]]
        if kind.namespaced:
            kind.patch(api)(metadata["name"], metadata["namespace"], body, **options)
        else:
            kind.patch(api)(metadata["name"], body, **options)


def member_mode(api: client.ApiClient, name: str) -> str | None:
    """The spec.mode of MemberCluster `name` ("Push" when unset), or None when there is none."""
    try:
        member: Any = client.CustomObjectsApi(api).get_cluster_custom_object(
            GROUP, VERSION, MEMBER_CLUSTERS, name, _request_timeout=REQUEST_TIMEOUT_S
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return str(member.get("spec", {}).get("mode") or "Push")


def request_token(api: client.ApiClient, member: str, seconds: int) -> tuple[str, datetime]:
    """A bound token of the member's agent ServiceAccount, and when it expires (the server
    may grant less than `seconds`)."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
    )
    granted = client.CoreV1Api(api).create_namespaced_service_account_token(
        AGENT_NAME, member_namespace(member), request, _request_timeout=REQUEST_TIMEOUT_S
    )
    status = granted.status
    if status is None or not status.token or status.expiration_timestamp is None:
        raise RuntimeError("the TokenRequest API answered without a token")
    return status.token, status.expiration_timestamp


def delete_member(api: client.ApiClient, name: str, wait_s: float) -> bool:
    """Deletes Pull member `name`'s MemberCluster and waits up to `wait_s` for it to go: the
    operator first has its agent remove the member's shard resources, which the agent does
    only on the word of its works. Then its cluster-wide grants and its namespace (with its
    account, lease and works), whichever of them exist. False when the MemberCluster was
    still there after `wait_s` (its shard resources may be left in the member)."""
    selector = f"{MEMBER_LABEL}={name}"
    rbac = client.RbacAuthorizationV1Api(api)
    objects = client.CustomObjectsApi(api)
    _absent_is_fine(
        lambda: objects.delete_cluster_custom_object(
            GROUP, VERSION, MEMBER_CLUSTERS, name, _request_timeout=REQUEST_TIMEOUT_S
        )
    )
    deadline = time.monotonic() + wait_s
    gone = False
    while not gone:
        try:
            objects.get_cluster_custom_object(
                GROUP, VERSION, MEMBER_CLUSTERS, name, _request_timeout=REQUEST_TIMEOUT_S
            )
        except ApiException as error:
            if error.status != 404:
                raise
            gone = True
        if not gone and time.monotonic() >= deadline:
            break
        if not gone:
            time.sleep(1.0)
    rbac.delete_collection_cluster_role_binding(
        label_selector=selector, _request_timeout=REQUEST_TIMEOUT_S
    )
    rbac.delete_collection_cluster_role(label_selector=selector, _request_timeout=REQUEST_TIMEOUT_S)
    _absent_is_fine(
        lambda: client.CoreV1Api(api).delete_namespace(
            member_namespace(name), _request_timeout=REQUEST_TIMEOUT_S
        )
    )
    return gone


def _absent_is_fine(delete: Callable[[], object]) -> None:
    try:
        delete()
    except ApiException as error:
        if error.status != 404:
            raise
