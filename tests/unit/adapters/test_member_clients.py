"""Member clients: a Secret outside the namespaces the operator reads from is never asked for."""

from __future__ import annotations

import pytest
from kubernetes import client

from continuum.operator.adapters.kube import MemberClients
from continuum.operator.adapters.member_gate import MemberUnavailableError
from continuum.operator.api import MemberCluster

pytestmark = pytest.mark.unit


def member(secret_namespace: str) -> MemberCluster:
    return MemberCluster.model_validate({
        "apiVersion": "continuum.dev/v1alpha1", "kind": "MemberCluster",
        "metadata": {"name": "edge"},
        "spec": {"tier": "Edge", "site": "s", "region": "r",
                 "kubeconfigSecretRef": {"name": "edge", "namespace": secret_namespace}},
    })  # fmt: skip


def test_a_secret_in_another_namespace_is_refused_before_any_request() -> None:
    hub = client.Configuration()
    hub.host = "http://127.0.0.1:9"  # nothing listens: a request would fail otherwise
    clients = MemberClients(client.ApiClient(hub), secret_namespaces=("continuum-system",))
    with pytest.raises(MemberUnavailableError) as refused:
        clients.for_member(member("kube-system"))
    assert refused.value.reason == "SecretNamespaceNotAllowed"
    assert refused.value.message.startswith("spec.kubeconfigSecretRef.namespace:")
    assert clients.secret_namespace_refusal(member("continuum-system")) is None
