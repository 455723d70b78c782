"""Certificates for one testbed cluster, made with the openssl command line.

Each cluster gets its own CA, so a client of one cluster cannot talk to another by mistake.
openssl is used rather than a Python library so that `python e2e/testbed.py` runs on a bare
interpreter, before any virtualenv exists.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

VALID_DAYS = 30
LOOPBACK = "127.0.0.1"
CURVE = "prime256v1"


@dataclass(frozen=True)
class ClientCert:
    cert: Path
    key: Path


@dataclass(frozen=True)
class ClusterPki:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def serving_names(self) -> Path:
        """The serving certificate's subject alternative names, as they were asked for."""
        return self.directory / "apiserver.san"

    @property
    def service_account_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def service_account_pub(self) -> Path:
        return self.directory / "sa.pub"

    def client(self, name: str) -> ClientCert:
        return ClientCert(self.directory / f"{name}.crt", self.directory / f"{name}.key")

    def is_complete(self, client_names: tuple[str, ...]) -> bool:
        paths = [
            self.ca_cert,
            self.serving_cert,
            self.service_account_key,
            self.service_account_pub,
        ]
        for name in client_names:
            paths += [self.client(name).cert, self.client(name).key]
        return all(path.exists() for path in paths)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _new_key(path: Path) -> None:
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{CURVE}", "-out", str(path)
    )
    path.chmod(0o600)


def _sign(pki: ClusterPki, key: Path, cert: Path, subject: str, extensions: list[str]) -> None:
    csr = cert.with_suffix(".csr")
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    extfile = cert.with_suffix(".ext")
    extfile.write_text("\n".join(extensions) + "\n")
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(pki.ca_cert), "-CAkey", str(pki.ca_key),
        "-CAcreateserial", "-days", str(VALID_DAYS), "-extfile", str(extfile), "-out", str(cert),
    )  # fmt: skip
    csr.unlink()
    extfile.unlink()


def _subject_alt_names(addresses: Sequence[str]) -> str:
    return ",".join([*(f"IP:{address}" for address in addresses), "DNS:localhost"])


def _sign_serving(pki: ClusterPki, cluster: str, names: str) -> None:
    _sign(
        pki, pki.serving_key, pki.serving_cert, f"/CN={cluster}-apiserver",
        ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
         "extendedKeyUsage=serverAuth", f"subjectAltName={names}"],
    )  # fmt: skip
    pki.serving_names.write_text(names + "\n")


def create_cluster_pki(
    directory: Path,
    cluster: str,
    clients: dict[str, tuple[str, str]],
    addresses: Sequence[str] = (LOOPBACK,),
) -> ClusterPki:
    """Creates the CA, the API server's serving certificate (for `addresses` and localhost),
    the service-account signing key, and one client certificate per entry of `clients`
    (name -> (common name, organisation)).

    Kubernetes takes a client certificate's CN as the user name and its O as the group.
    An existing, complete set is kept, so that restarting a cluster keeps its kubeconfigs valid;
    if the serving certificate names other addresses, only it is made again, by the same CA.
    """
    pki = ClusterPki(directory)
    names = _subject_alt_names(addresses)
    if pki.is_complete(tuple(clients)):
        # A set made before the record of its names was kept was made for loopback only.
        recorded = pki.serving_names.read_text().strip() if pki.serving_names.exists() else None
        if (recorded or _subject_alt_names((LOOPBACK,))) != names:
            _sign_serving(pki, cluster, names)
        return pki
    directory.mkdir(parents=True, exist_ok=True)
    _new_key(pki.ca_key)
    _openssl(
        "req", "-x509", "-new", "-key", str(pki.ca_key),
        "-subj", f"/CN=continuum-testbed-{cluster}-ca", "-days", str(VALID_DAYS),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", str(pki.ca_cert),
    )  # fmt: skip
    _new_key(pki.serving_key)
    _sign_serving(pki, cluster, names)
    _new_key(pki.service_account_key)
    _openssl(
        "pkey", "-in", str(pki.service_account_key), "-pubout", "-out", str(pki.service_account_pub)
    )
    for name, (common_name, organisation) in clients.items():
        client = pki.client(name)
        _new_key(client.key)
        _sign(
            pki, client.key, client.cert, f"/O={organisation}/CN={common_name}",
            ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature",
             "extendedKeyUsage=clientAuth"],
        )  # fmt: skip
    return pki
