"""A self-signed serving certificate for the admission webhook on loopback.

Kopf can make one itself, but through oscrypto, which cannot read the version of OpenSSL 3 on
this platform; the `cryptography` package can. The API server is given the certificate itself
as the webhook's caBundle.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALID_FOR = datetime.timedelta(days=365)


@dataclass(frozen=True)
class ServingCertificate:
    certfile: Path
    pkeyfile: Path
    pem: bytes


def self_signed(directory: Path, host: str = "127.0.0.1") -> ServingCertificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"continuum-webhook-{host}")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    certfile, pkeyfile = directory / "webhook.crt", directory / "webhook.key"
    certfile.write_bytes(pem)
    pkeyfile.touch(mode=0o600)
    pkeyfile.write_bytes(_pem_key(key))
    return ServingCertificate(certfile, pkeyfile, pem)


# In a cluster: a CA of the operator's own and a serving certificate for the webhook's Service
# names, both kept in a Secret (adapters/webhook_tls.py), renewed well before they expire.
SERVING_VALID_FOR = datetime.timedelta(days=90)
CA_VALID_FOR = datetime.timedelta(days=3650)
RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class TlsMaterial:
    """PEM bytes, as a kubernetes.io/tls Secret holds them (tls.crt, tls.key, ca.crt)."""

    certificate: bytes
    key: bytes
    ca: bytes


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def new_ca(name: str, now: datetime.datetime) -> tuple[bytes, bytes]:
    """A CA certificate and its key (PEM), to sign the webhook's serving certificates."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CA_VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def issue_serving(
    ca_pem: bytes, ca_key_pem: bytes, dns_names: list[str], now: datetime.datetime
) -> tuple[bytes, bytes]:
    """A serving certificate for `dns_names` signed by the CA, and its key (PEM)."""
    ca = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the webhook CA's key is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + SERVING_VALID_FOR)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in dns_names]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def needs_renewal(
    material: TlsMaterial | None, dns_names: list[str], now: datetime.datetime
) -> bool:
    """Whether the serving certificate is missing, unreadable, for other names, or within
    RENEW_BEFORE of its end."""
    if material is None:
        return True
    try:
        certificate = x509.load_pem_x509_certificate(material.certificate)
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, x509.ExtensionNotFound):
        return True
    if sorted(names.value.get_values_for_type(x509.DNSName)) != sorted(dns_names):
        return True
    return certificate.not_valid_after_utc - now < RENEW_BEFORE


def ca_usable(ca_pem: bytes, now: datetime.datetime) -> bool:
    """Whether the CA can sign another serving certificate that it outlives."""
    try:
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError:
        return False
    return ca.not_valid_after_utc - now > SERVING_VALID_FOR + RENEW_BEFORE
