"""Kubernetes clients: the hub's, and each member's from its kubeconfig Secret in the hub.

Member clients are cached by the Secret's resourceVersion, so a rotated kubeconfig takes effect
on the next use and an unchanged one costs no parsing. Every call to a member carries a short
timeout: one unreachable edge site must not stall the operator's handling of the others.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from continuum.operator.api import MemberCluster

MEMBER_REQUEST_TIMEOUT_S = 5.0
HUB_REQUEST_TIMEOUT_S = 10.0
SECRET_RECHECK_S = 5.0
# Connections kept per API server: the mirrors' watches each hold one, and the scheduling
# cycle's writers, the placement workers and the probes share the rest. The client's default
# (5 per core) is smaller than that, and a request beyond the pool opens a new TLS connection
# and throws it away afterwards, which under a burst costs more than the request itself.
CONNECTIONS_PER_SERVER = 48


class MemberUnavailableError(Exception):
    """The member cannot be reached; `reason` is a CamelCase condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def hub_client(kubeconfig: str | None) -> client.ApiClient:
    """The hub's client: from a kubeconfig file, or in-cluster when none is given."""
    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        config.load_incluster_config(client_configuration=configuration)
    return _pooled_client(configuration)


def member_client(kubeconfig: dict[str, Any]) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config_from_dict(kubeconfig, client_configuration=configuration)
    return _pooled_client(configuration)


def _pooled_client(configuration: client.Configuration) -> client.ApiClient:
    configuration.connection_pool_maxsize = CONNECTIONS_PER_SERVER
    return client.ApiClient(configuration)


@dataclass
class _Cached:
    resource_version: str
    api: client.ApiClient
    checked_at: float


class MemberClients:
    """Clients per member. The Secret is read again at most every `recheck_s`, so that many
    handlers asking at once cost one read, and a rotated kubeconfig is used within seconds."""

    def __init__(
        self,
        hub: client.ApiClient,
        recheck_s: float = SECRET_RECHECK_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hub = client.CoreV1Api(hub)
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()
        self.recheck_s, self.clock = recheck_s, clock

    def for_member(self, member: MemberCluster) -> client.ApiClient:
        reference = member.spec.kubeconfig_secret_ref
        name = member.metadata.name or ""
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None and self.clock() - cached.checked_at < self.recheck_s:
            return cached.api
        try:
            secret = self._hub.read_namespaced_secret(
                reference.name, reference.namespace, _request_timeout=HUB_REQUEST_TIMEOUT_S
            )
        except ApiException as error:
            if error.status == 404:
                raise MemberUnavailableError(
                    "SecretNotFound",
                    f"kubeconfig Secret {reference.namespace}/{reference.name} does not exist",
                ) from error
            raise
        version = str(secret.metadata.resource_version) if secret.metadata else ""
        if cached is not None and cached.resource_version == version:
            cached.checked_at = self.clock()
            return cached.api
        encoded = (secret.data or {}).get(reference.key)
        if not encoded:
            raise MemberUnavailableError(
                "KubeconfigMissing",
                f"Secret {reference.namespace}/{reference.name} has no key {reference.key!r}",
            )
        try:
            kubeconfig: dict[str, Any] = yaml.safe_load(base64.b64decode(encoded))
            api = member_client(kubeconfig)
        except (yaml.YAMLError, ValueError, TypeError, config.ConfigException) as error:
            raise MemberUnavailableError(
                "KubeconfigInvalid",
                f"Secret {reference.namespace}/{reference.name} key {reference.key!r}: {error}",
            ) from error
        with self._lock:
            previous = self._cache.get(name)
            self._cache[name] = _Cached(version, api, self.clock())
        if previous is not None:
            previous.api.close()
        return api

    def close(self) -> None:
        with self._lock:
            for cached in self._cache.values():
                cached.api.close()
            self._cache.clear()
