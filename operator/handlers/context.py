"""What every handler shares: clients, the clock, settings. Built once at startup, kept in
Kopf's memo; it holds no state that is not also in the API server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kubernetes import client

from continuum.operator.adapters.hub import Hub
from continuum.operator.adapters.kube import MemberClients

SYSTEM_NAMESPACE = "continuum-system"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class OperatorConfig:
    system_namespace: str = SYSTEM_NAMESPACE
    cycle_interval_s: float = 2.0
    probe_interval_s: float = 10.0
    status_interval_s: float = 3.0
    policy: str = "continuum"


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
        self.members = MemberClients(self.hub_api)
