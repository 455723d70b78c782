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
    pkeyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ServingCertificate(certfile, pkeyfile, pem)
