"""The in-cluster webhook's certificates and its HTTPS server, on loopback."""

from __future__ import annotations

import datetime
import json
import socket
import ssl
from collections.abc import Mapping
from typing import Any

import pytest
from cryptography import x509

from continuum.operator.adapters.admission_server import AdmissionServer, review_response
from continuum.operator.adapters.webhook_certs import (
    TlsMaterial,
    ca_usable,
    issue_serving,
    needs_renewal,
    new_ca,
)

pytestmark = pytest.mark.unit

NOW = datetime.datetime(2026, 12, 7, tzinfo=datetime.UTC)
NAMES = ["continuum-webhook", "continuum-webhook.ns", "continuum-webhook.ns.svc"]


def material(names: list[str], now: datetime.datetime = NOW) -> TlsMaterial:
    ca, ca_key = new_ca("test-ca", now)
    certificate, key = issue_serving(ca, ca_key, names, now)
    return TlsMaterial(certificate, key, ca)


def test_a_serving_certificate_is_for_the_service_names_and_signed_by_the_ca() -> None:
    made = material(NAMES)
    certificate = x509.load_pem_x509_certificate(made.certificate)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert names.value.get_values_for_type(x509.DNSName) == NAMES
    certificate.verify_directly_issued_by(x509.load_pem_x509_certificate(made.ca))


def test_renewal_is_due_when_missing_for_other_names_or_within_30_days_of_its_end() -> None:
    made = material(NAMES)
    assert needs_renewal(None, NAMES, NOW)
    assert not needs_renewal(made, NAMES, NOW)
    assert needs_renewal(made, NAMES[:2], NOW)
    assert not needs_renewal(made, NAMES, NOW + datetime.timedelta(days=59))
    assert needs_renewal(made, NAMES, NOW + datetime.timedelta(days=61))
    assert needs_renewal(TlsMaterial(b"not a certificate", b"", b""), NAMES, NOW)
    # The CA outlives many renewals, and is replaced before it could not.
    assert ca_usable(made.ca, NOW + datetime.timedelta(days=3000))
    assert not ca_usable(made.ca, NOW + datetime.timedelta(days=3600))


def refuse_tenants(
    operation: str, body: Mapping[str, Any], old: Mapping[str, Any] | None
) -> tuple[str, int] | None:
    tenant = (body.get("spec") or {}).get("tenant")
    return None if tenant == "known" else (f"spec.tenant: no Tenant named {tenant!r}", 422)


def review(tenant: str) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-1", "operation": "CREATE",
                        "object": {"spec": {"tenant": tenant}}}}  # fmt: skip


def test_a_review_is_answered_with_its_uid_and_the_judges_verdict() -> None:
    assert review_response(review("known"), refuse_tenants)["response"] == {
        "uid": "u-1", "allowed": True,
    }  # fmt: skip
    refused = review_response(review("other"), refuse_tenants)["response"]
    assert refused["allowed"] is False
    assert refused["status"] == {"code": 422, "message": "spec.tenant: no Tenant named 'other'"}


def post(server: AdmissionServer, ca: bytes, body: bytes) -> Any:
    """POST to the server at loopback, verifying it as the Service's name: as the API server
    dials an endpoint's IP for the name in the webhook configuration."""
    context = ssl.create_default_context(cadata=ca.decode())
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    with context.wrap_socket(raw, server_hostname="continuum-webhook.ns.svc") as tls:
        head = (f"POST /validate HTTP/1.1\r\nHost: continuum-webhook.ns.svc\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n")  # fmt: skip
        tls.sendall(head.encode() + body)
        reply = b""
        while chunk := tls.recv(65536):
            reply += chunk
    return json.loads(reply.split(b"\r\n\r\n", 1)[1])


def test_the_server_answers_over_tls_and_takes_a_renewed_certificate_without_a_restart() -> None:
    server = AdmissionServer("127.0.0.1", 0, refuse_tenants)
    first = material(NAMES, datetime.datetime.now(datetime.UTC))
    server.load(first)
    server.start()
    try:
        answer = post(server, first.ca, json.dumps(review("other")).encode())
        assert answer["response"]["allowed"] is False
        renewed = material(NAMES, datetime.datetime.now(datetime.UTC))
        server.load(renewed)
        assert post(server, renewed.ca, json.dumps(review("known")).encode())["response"]["allowed"]
        with pytest.raises(ssl.SSLCertVerificationError):  # the old CA verifies it no more
            post(server, first.ca, json.dumps(review("known")).encode())
    finally:
        server.stop()
