"""What to write in one member for one job: the plan the hub's convergence and a Pull member's
agent both carry out. Pure data; `reconcile.shards.plan_cluster` makes it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Manifest = dict[str, Any]


@dataclass(frozen=True)
class ClusterPlan:
    create: tuple[Manifest, ...] = ()
    # (desired manifest, the observed object it replaces, for its resourceVersion)
    update: tuple[tuple[Manifest, Manifest], ...] = ()
    delete: tuple[Manifest, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.create or self.update or self.delete)
