"""The in-cluster webhook's certificates: kept in a Secret of the system namespace, made and
renewed by the operator unless cert-manager makes them, and the CA put in the
ValidatingWebhookConfiguration's caBundle.

The Secret holds tls.crt, tls.key and ca.crt (a kubernetes.io/tls Secret, as cert-manager
writes it) and, when the operator made it, ca.key: its own CA signs each renewed serving
certificate, so the caBundle stays the same across renewals and no request meets a
certificate the API server does not trust yet. Two replicas that renew at once cannot both
win: each write carries the resourceVersion read, and the loser reads the winner's.
"""

from __future__ import annotations

import base64
import datetime
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from continuum.operator.adapters.admission_server import AdmissionServer
from continuum.operator.adapters.member_gate import CONNECTION_ERRORS
from continuum.operator.adapters.webhook_certs import (
    TlsMaterial,
    ca_usable,
    issue_serving,
    needs_renewal,
    new_ca,
)

LOG = logging.getLogger(__name__)
CONFLICT, NOT_FOUND = 409, 404
# How often the certificate is looked at again (renewed, or reread from the Secret), and how
# often while there is none yet (cert-manager has not written it).
CHECK_S = 3600.0
WAIT_S = 2.0


def _decode(data: Mapping[str, Any], key: str) -> bytes | None:
    value = data.get(key)
    return base64.b64decode(value) if isinstance(value, str) and value else None


def _material(secret: client.V1Secret | None) -> TlsMaterial | None:
    data = (secret.data if secret is not None else None) or {}
    certificate, key, ca = (_decode(data, name) for name in ("tls.crt", "tls.key", "ca.crt"))
    if certificate is None or key is None or ca is None:
        return None
    return TlsMaterial(certificate, key, ca)


class WebhookCertificates:
    """The Secret `name` in `namespace`, for the Service names `dns_names`."""

    def __init__(
        self,
        core: client.CoreV1Api,
        namespace: str,
        name: str,
        dns_names: list[str],
        manage: bool = True,
        now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self.core, self.namespace, self.name = core, namespace, name
        self.dns_names, self.manage, self.now = dns_names, manage, now

    def _read(self) -> client.V1Secret | None:
        try:
            secret: client.V1Secret = self.core.read_namespaced_secret(self.name, self.namespace)
        except ApiException as error:
            if error.status == NOT_FOUND:
                return None
            raise
        return secret

    def current(self) -> TlsMaterial | None:
        """What the Secret holds now (cert-manager's, or the operator's), if complete."""
        return _material(self._read())

    def ensure(self) -> TlsMaterial | None:
        """The Secret's certificates, made or renewed first if the operator manages them and
        they are missing, for other names or near their end. None while cert-manager has not
        written them yet."""
        for _ in range(3):
            secret = self._read()
            material = _material(secret)
            now = self.now()
            if not self.manage or not needs_renewal(material, self.dns_names, now):
                return material
            renewed = self._renewed(secret, now)
            try:
                if secret is None:
                    self.core.create_namespaced_secret(self.namespace, renewed)
                else:
                    assert renewed.metadata is not None and secret.metadata is not None
                    renewed.metadata.resource_version = secret.metadata.resource_version
                    self.core.replace_namespaced_secret(self.name, self.namespace, renewed)
            except ApiException as error:
                if error.status == CONFLICT:
                    continue  # another replica wrote it first: read it again
                raise
            LOG.info("made the webhook's serving certificate (Secret %s/%s) for %s",
                     self.namespace, self.name, ", ".join(self.dns_names))  # fmt: skip
            return _material(renewed)
        return _material(self._read())

    def _renewed(self, secret: client.V1Secret | None, now: datetime.datetime) -> client.V1Secret:
        data = (secret.data if secret is not None else None) or {}
        ca, ca_key = _decode(data, "ca.crt"), _decode(data, "ca.key")
        if ca is None or ca_key is None or not ca_usable(ca, now):
            ca, ca_key = new_ca(f"continuum-webhook-ca.{self.namespace}", now)
        certificate, key = issue_serving(ca, ca_key, self.dns_names, now)
        encoded = {
            name: base64.b64encode(value).decode()
            for name, value in (("tls.crt", certificate), ("tls.key", key),
                                ("ca.crt", ca), ("ca.key", ca_key))
        }  # fmt: skip
        return client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=self.name,
                namespace=self.namespace,
                labels={"app.kubernetes.io/managed-by": "continuum"},
            ),
            type="kubernetes.io/tls",
            data=encoded,
        )


def put_ca_bundle(
    admission: client.AdmissionregistrationV1Api, configuration: str, ca: bytes
) -> bool:
    """Puts `ca` in every webhook of the ValidatingWebhookConfiguration that does not have it;
    True if it wrote."""
    found = admission.read_validating_webhook_configuration(configuration)
    bundle = base64.b64encode(ca).decode()
    webhooks: list[client.V1ValidatingWebhook] = found.webhooks or []
    patch = [
        {"op": "replace" if webhook.client_config.ca_bundle else "add",
         "path": f"/webhooks/{index}/clientConfig/caBundle", "value": bundle}
        for index, webhook in enumerate(webhooks)
        if webhook.client_config.ca_bundle != bundle
    ]  # fmt: skip
    if not patch:
        return False
    admission.patch_validating_webhook_configuration(configuration, patch)
    LOG.info("put the webhook's CA in ValidatingWebhookConfiguration %s", configuration)
    return True


def keep_serving(
    server: AdmissionServer,
    certificates: WebhookCertificates,
    admission: client.AdmissionregistrationV1Api,
    configuration: str | None,
    stop: threading.Event,
) -> None:
    """Starts `server` once the Secret has a certificate, gives it each renewed one, and keeps
    the CA in `configuration`'s caBundle (None: another, cert-manager, keeps it), until `stop`."""
    served: TlsMaterial | None = None
    while not stop.is_set():
        try:
            material = certificates.ensure()
            if material is not None and material != served:
                server.load(material)
                if served is None:
                    server.start()
                    LOG.info("serving the webhook on port %d", server.port)
                served = material
            if material is not None and configuration:
                put_ca_bundle(admission, configuration, material.ca)
        except (ApiException, ValueError, *CONNECTION_ERRORS) as error:
            # The next look tries again; the status alone, since a body may quote the Secret.
            LOG.warning("the webhook's certificate: %s %s", type(error).__name__,
                        getattr(error, "status", "") or "")  # fmt: skip
        if served is None:
            LOG.info("waiting for the webhook's certificate in Secret %s/%s",
                     certificates.namespace, certificates.name)  # fmt: skip
        stop.wait(WAIT_S if served is None else CHECK_S)
