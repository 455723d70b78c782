"""The webhook's certificates kept in a Secret and its CA put in the webhook configuration,
against the testbed's API server: made once, kept while good, renewed for new names with the
same CA, and two replicas renewing at once leave one certificate."""

from __future__ import annotations

import base64
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from kubernetes import client

from continuum.operator.adapters.webhook_tls import WebhookCertificates, put_ca_bundle

pytestmark = pytest.mark.integration

NAMES = ["hook", "hook.ns", "hook.ns.svc"]


def test_the_certificate_is_made_once_kept_and_renewed_for_new_names_with_the_same_ca(
    hub_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(hub_api)
    made = WebhookCertificates(core, namespace, "hook-tls", NAMES).ensure()
    assert made is not None
    assert WebhookCertificates(core, namespace, "hook-tls", NAMES).ensure() == made
    renamed = WebhookCertificates(
        core, namespace, "hook-tls", [*NAMES, "hook.ns.svc.cluster.local"]
    )
    renewed = renamed.ensure()
    assert renewed is not None and renewed.certificate != made.certificate
    assert renewed.ca == made.ca  # the caBundle stays valid across renewals
    # cert-manager's Secret is read, never written.
    assert WebhookCertificates(core, namespace, "absent", NAMES, manage=False).ensure() is None


def test_two_replicas_renewing_at_once_leave_one_certificate(
    hub_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(hub_api)
    replicas = [WebhookCertificates(core, namespace, "raced", NAMES) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda replica: replica.ensure(), replicas))
    stored = WebhookCertificates(core, namespace, "raced", NAMES).current()
    assert stored is not None
    assert all(result is not None and result.ca == stored.ca for result in results)


def test_the_ca_is_put_in_every_webhook_of_its_configuration_once(
    hub_api: client.ApiClient, namespace: str
) -> None:
    admission = client.AdmissionregistrationV1Api(hub_api)
    name = f"hook-{uuid.uuid4().hex[:6]}"
    webhook = {
        "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Ignore",
        "clientConfig": {"service": {"name": "hook", "namespace": namespace, "path": "/v"}},
        "rules": [{"apiGroups": ["continuum.dev"], "apiVersions": ["v1alpha1"],
                   "operations": ["CREATE"], "resources": ["tenants"]}],
    }  # fmt: skip
    admission.create_validating_webhook_configuration({
        "metadata": {"name": name},
        "webhooks": [{**webhook, "name": "a.hook.dev"}, {**webhook, "name": "b.hook.dev"}],
    })  # fmt: skip
    try:
        ca = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        assert put_ca_bundle(admission, name, ca)
        assert not put_ca_bundle(admission, name, ca)
        found = admission.read_validating_webhook_configuration(name)
        assert {w.client_config.ca_bundle for w in found.webhooks} == {
            base64.b64encode(ca).decode()
        }
    finally:
        admission.delete_validating_webhook_configuration(name)
