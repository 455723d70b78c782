"""What every handler shares: clients, the clock, settings. Built once at startup, kept in
Kopf's memo; it holds no state that is not also in the API server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kubernetes import client

from continuum.operator.adapters.hub import Hub
from continuum.operator.adapters.inventory import MemberInventory
from continuum.operator.adapters.kube import MemberClients
from continuum.operator.api import MemberCluster

SYSTEM_NAMESPACE = "continuum-system"
MEMBER_LIST_TTL_S = 1.0


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class OperatorConfig:
    system_namespace: str = SYSTEM_NAMESPACE
    cycle_interval_s: float = 2.0
    probe_interval_s: float = 10.0
    status_interval_s: float = 3.0
    policy: str = "continuum"
    # 0: no admission webhook; the reconcile still refuses what it would have refused.
    webhook_port: int = 0


@dataclass
class OperatorContext:
    hub_api: client.ApiClient
    config: OperatorConfig = field(default_factory=OperatorConfig)
    clock: Callable[[], datetime] = utc_now
    # Set by any handler that saw a change the scheduler should act on now, not at the next tick.
    wake_scheduler: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.hub = Hub(self.hub_api)
        self._member_list: tuple[float, list[MemberCluster]] | None = None
        self._member_lock = threading.Lock()
        self.members = MemberClients(self.hub_api)
        self.inventory = MemberInventory()

    def member_clusters(self) -> list[MemberCluster]:
        """The registered members, listed at most once a second for all the handlers that ask:
        every Placement's pass needs them, and they change rarely."""
        with self._member_lock:
            cached = self._member_list
            if cached is not None and time.monotonic() - cached[0] < MEMBER_LIST_TTL_S:
                return cached[1]
            members = self.hub.list(MemberCluster).valid
            self._member_list = (time.monotonic(), members)
            return members
