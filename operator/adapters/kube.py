"""Kubernetes clients: the hub's, and each member's from its kubeconfig Secret in the hub.

Member clients are cached by the Secret's resourceVersion, so a rotated kubeconfig takes effect
on the next use and an unchanged one costs no parsing. A member's kubeconfig is data written by
whoever may write Secrets in the operator's namespace: it is checked before the client sees it
(`continuum.operator.api.kubeconfig`: no plugins, no file paths), and only Secrets in the
namespaces the operator was given are read. Nothing read from a Secret is ever put in a message:
problems name fields, connection errors are described by kind, and what a member says back is
redacted of the Secret's strings.

Every request to a member passes its gate (`member_gate`), with a short timeout and no retries
of urllib3's own: one hung edge site costs its own work only.
"""

from __future__ import annotations

import base64
import binascii
import errno
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from continuum.operator.adapters.member_gate import (
    GatedApiClient,
    MemberGate,
    MemberUnavailableError,
)
from continuum.operator.api import MemberCluster
from continuum.operator.api.kubeconfig import (
    check_kubeconfig,
    endpoint_digest,
    parse_kubeconfig,
    redact,
    secret_strings,
)

MEMBER_REQUEST_TIMEOUT_S = 5.0
HUB_REQUEST_TIMEOUT_S = 10.0
SECRET_RECHECK_S = 5.0
DEFAULT_SECRET_NAMESPACE = "continuum-system"
# Connections kept per API server: the mirrors' watches each hold one, and the scheduling
# cycle's writers, the placement workers and the probes share the rest. The client's default
# (5 per core) is smaller than that, and a request beyond the pool opens a new TLS connection
# and throws it away afterwards, which under a burst costs more than the request itself.
CONNECTIONS_PER_SERVER = 48

__all__ = [
    "HUB_REQUEST_TIMEOUT_S",
    "MEMBER_REQUEST_TIMEOUT_S",
    "MemberClients",
    "MemberUnavailableError",
    "api_client",
    "describe_connection_error",
    "hub_client",
]


def hub_client(kubeconfig: str | None) -> client.ApiClient:
    """The hub's client: from a kubeconfig file, or in-cluster when none is given."""
    return api_client(kubeconfig)


def api_client(kubeconfig: str | None, retries: bool = True) -> client.ApiClient:
    """A client from a kubeconfig file, or in-cluster when none is given. `retries=False` turns
    urllib3's own retries off, for callers that retry on their own schedule and time their
    requests."""
    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        config.load_incluster_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = CONNECTIONS_PER_SERVER
    if not retries:
        configuration.retries = False
    return client.ApiClient(configuration)


def describe_connection_error(error: BaseException) -> str:
    """What went wrong with a connection, by kind: the exception's own text names the host,
    which comes from the Secret."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        described = _described(cause)
        if described:
            return described
        cause = getattr(cause, "reason", None) or cause.__cause__ or cause.__context__
        if not isinstance(cause, BaseException):
            cause = None
    return f"the connection failed ({type(error).__name__})"


def _described(error: BaseException) -> str | None:
    if isinstance(error, urllib3.exceptions.NameResolutionError | socket.gaierror):
        return "the server's name does not resolve"
    if isinstance(error, urllib3.exceptions.NewConnectionError):
        return None  # a ConnectTimeoutError by descent: what went wrong is its cause
    if isinstance(error, urllib3.exceptions.ConnectTimeoutError):
        return "no connection within the timeout"
    if isinstance(error, (urllib3.exceptions.ReadTimeoutError, TimeoutError, socket.timeout)):
        return "no answer within the timeout"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"the server's certificate was not trusted (verify code {error.verify_code})"
    if isinstance(error, ssl.SSLError | urllib3.exceptions.SSLError):
        return "the TLS handshake failed"
    if isinstance(error, ConnectionRefusedError):
        return "the connection was refused"
    if isinstance(error, ConnectionResetError | urllib3.exceptions.ProtocolError):
        return "the connection was dropped"
    if isinstance(error, urllib3.exceptions.ProxyError):
        return "the proxy failed"
    if isinstance(error, OSError) and error.errno is not None and error.errno in errno.errorcode:
        return f"the connection failed ({errno.errorcode[error.errno]})"
    return None


@dataclass
class _Cached:
    """What one version of a member's Secret gave: a client, or why it gives none (kept too,
    so that every pass over a member with a bad Secret does not read it again)."""

    resource_version: str
    checked_at: float
    api: GatedApiClient | None = None
    refusal: MemberUnavailableError | None = None
    secrets: frozenset[str] = frozenset()
    endpoint: str | None = None

    def client(self) -> GatedApiClient:
        if self.api is None:
            assert self.refusal is not None
            raise MemberUnavailableError(self.refusal.reason, self.refusal.message)
        return self.api


class MemberClients:
    """Clients per member. The Secret is read again at most every `recheck_s`, so that many
    handlers asking at once cost one read, and a rotated kubeconfig is used within seconds."""

    def __init__(
        self,
        hub: client.ApiClient,
        secret_namespaces: Collection[str] = (DEFAULT_SECRET_NAMESPACE,),
        allowed_exec_commands: Collection[str] = (),
        timeout_s: float = MEMBER_REQUEST_TIMEOUT_S,
        recheck_s: float = SECRET_RECHECK_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hub = client.CoreV1Api(hub)
        self.secret_namespaces = frozenset(secret_namespaces)
        self.allowed_exec_commands = frozenset(allowed_exec_commands)
        self.timeout_s, self.recheck_s, self.clock = timeout_s, recheck_s, clock
        self._cache: dict[str, _Cached] = {}
        self._gates: dict[str, MemberGate] = {}
        self._lock = threading.Lock()

    def gate(self, member: str) -> MemberGate:
        with self._lock:
            gate = self._gates.get(member)
            if gate is None:
                gate = self._gates[member] = MemberGate(member)
            return gate

    def for_member(self, member: MemberCluster) -> GatedApiClient:
        """The member's client; MemberUnavailableError when its Secret gives none."""
        name = member.metadata.name or ""
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None and self.clock() - cached.checked_at < self.recheck_s:
            return cached.client()
        reference = member.spec.kubeconfig_secret_ref
        if reference is None:
            raise MemberUnavailableError(
                "PullMember", "a Pull member has no kubeconfig: its agent dials the hub"
            )
        refusal = self.secret_namespace_refusal(member)
        if refusal is not None:
            raise refusal
        where = f"Secret {reference.namespace}/{reference.name}"
        try:
            secret = self._hub.read_namespaced_secret(
                reference.name, reference.namespace, _request_timeout=HUB_REQUEST_TIMEOUT_S
            )
        except ApiException as error:
            if error.status == 404:
                raise MemberUnavailableError("SecretNotFound", f"{where} does not exist") from None
            if error.status == 403:
                raise MemberUnavailableError(
                    "SecretForbidden", f"the operator may not read {where}"
                ) from None
            raise
        version = str(secret.metadata.resource_version) if secret.metadata else ""
        if cached is not None and cached.resource_version == version:
            cached.checked_at = self.clock()
            return cached.client()
        try:
            encoded = (secret.data or {}).get(reference.key)
            built = self._build(name, version, str(encoded or ""), where, reference.key)
        except MemberUnavailableError as refusal:
            built = _Cached(version, self.clock(), refusal=refusal)
        with self._lock:
            previous = self._cache.get(name)
            self._cache[name] = built
        if previous is not None and previous.api is not None:
            previous.api.close()
        return built.client()

    def secret_namespace_refusal(self, member: MemberCluster) -> MemberUnavailableError | None:
        """Why the member's Secret may not be read, when its namespace is not one of ours."""
        reference = member.spec.kubeconfig_secret_ref
        if reference is None or reference.namespace in self.secret_namespaces:
            return None
        return MemberUnavailableError(
            "SecretNamespaceNotAllowed",
            f"spec.kubeconfigSecretRef.namespace: the operator reads member Secrets only in "
            f"{', '.join(sorted(self.secret_namespaces))} (--secret-namespace)",
        )

    def _build(
        self, member: str, version: str, encoded: str | None, where: str, key: str
    ) -> _Cached:
        if not encoded:
            raise MemberUnavailableError("KubeconfigMissing", f"{where} has no key {key!r}")
        where = f"{where} key {key!r}"
        try:
            text = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise MemberUnavailableError("KubeconfigInvalid", f"{where} is not base64") from None
        document, problem = parse_kubeconfig(text)
        if document is not None:
            problem = check_kubeconfig(document, self.allowed_exec_commands)
        if problem is not None:
            raise MemberUnavailableError(problem.reason, f"{where}: {problem.message}")
        assert document is not None
        configuration = client.Configuration()
        try:
            config.load_kube_config_from_dict(document, client_configuration=configuration)
            endpoint = endpoint_digest(document)
        except Exception as error:  # its messages may quote the kubeconfig
            raise MemberUnavailableError(
                "KubeconfigInvalid",
                f"{where}: the kubernetes client cannot use it ({type(error).__name__})",
            ) from None
        configuration.connection_pool_maxsize = CONNECTIONS_PER_SERVER
        # The operator's passes and probes retry on their own schedule; urllib3's retries would
        # multiply a hung member's timeout, and log the member's address.
        configuration.retries = False
        api = GatedApiClient(
            configuration, self.gate(member), self.timeout_s, describe_connection_error
        )
        return _Cached(version, self.clock(), api, None, secret_strings(document), endpoint)

    def redact(self, member: str, message: str) -> str:
        """`message`, which may hold what the member said back, without the strings of the
        member's kubeconfig."""
        with self._lock:
            cached = self._cache.get(member)
        return redact(message, cached.secrets) if cached is not None else message

    def endpoint(self, member: str) -> str | None:
        """A digest of the member's server and CA, once its kubeconfig has been loaded."""
        with self._lock:
            cached = self._cache.get(member)
        return cached.endpoint if cached is not None else None

    def close(self) -> None:
        with self._lock:
            for cached in self._cache.values():
                if cached.api is not None:
                    cached.api.close()
            self._cache.clear()


def api_status_message(error: ApiException) -> str:
    """The message of the Status the API server sent back, else the HTTP reason."""
    try:
        status = json.loads(error.body or "")
    except (TypeError, ValueError):
        status = None
    message = status.get("message") if isinstance(status, dict) else None
    return str(message or error.reason)[:512]
