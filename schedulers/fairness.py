"""Weighted Dominant Resource Fairness over the whole continuum.

A tenant's dominant share is the largest, over cpu, memory and gpu, of its usage divided by the
total healthy capacity of all clusters; its weighted dominant share divides that by its weight.
Its fair share is weight / (sum of the weights of active tenants), in dominant-share units.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

import numpy as np

from continuum.schedulers.arrays import FloatArray
from continuum.schedulers.model import Tenant


def dominant_share(usage: FloatArray, total: FloatArray) -> float:
    positive = total > 0
    if not positive.any():
        return 0.0
    return float((usage[positive] / total[positive]).max(initial=0.0))


def fair_shares(weights: Mapping[str, float], active: Sequence[str]) -> dict[str, float]:
    weight_sum = sum(weights[name] for name in active)
    return {name: weights[name] / weight_sum for name in active} if weight_sum else {}


def jain_index(values: Sequence[float]) -> float:
    """(sum x)^2 / (n * sum x^2); 1 when all are equal, 1/n when one has everything."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0 or not (array**2).sum():
        return 1.0
    return float(array.sum() ** 2 / (array.size * (array**2).sum()))


def water_fill(demands: Mapping[str, float], weights: Mapping[str, float]) -> dict[str, float]:
    """Weighted max-min fair shares of a unit of capacity, each capped by its own demand."""
    remaining = dict(demands)
    shares = dict.fromkeys(demands, 0.0)
    capacity = 1.0
    while remaining and capacity > 1e-12:
        weight_sum = sum(weights[name] for name in remaining)
        level = capacity / weight_sum
        capped = {n: d for n, d in remaining.items() if d - shares[n] <= level * weights[n]}
        if not capped:
            for name in remaining:
                shares[name] += level * weights[name]
            break
        for name in capped:
            capacity -= remaining[name] - shares[name]
            shares[name] = remaining.pop(name)
    return shares


class DrfQueue:
    """Hands out jobs tenant by tenant, always to the lowest weighted dominant share.

    With quotas on, a tenant whose next job fits in its nominal quota goes before any tenant
    that would have to borrow, so borrowing only takes what the others leave idle.
    Shares are kept as plain floats: this runs once per job, where numpy's per-call overhead
    on three numbers would dominate.
    """

    def __init__(
        self,
        jobs_by_tenant: Mapping[str, Sequence[int]],
        demand_of_job: FloatArray,
        usage: Mapping[str, FloatArray],
        tenants: Mapping[str, Tenant],
        total: FloatArray,
        use_quota: bool,
    ) -> None:
        self._queues = {name: list(reversed(jobs)) for name, jobs in jobs_by_tenant.items()}
        # (jobs × resources): what each job asks for in all.
        self._demand: list[list[float]] = np.asarray(demand_of_job, dtype=np.float64).tolist()
        self._usage = {name: [float(v) for v in usage[name]] for name in jobs_by_tenant}
        self._weights = {name: tenants[name].weight for name in jobs_by_tenant}
        self._quota = {
            name: tenants[name].quota.as_tuple()  # type: ignore[union-attr]
            for name in jobs_by_tenant
            if use_quota and tenants[name].quota is not None
        }
        self._inverse_total = [1.0 / float(v) if v > 0 else 0.0 for v in total]
        self._heap: list[tuple[bool, float, str]] = []
        for name in sorted(self._queues):
            self._push(name)

    def _push(self, name: str) -> None:
        queue = self._queues[name]
        if not queue:
            return
        usage = self._usage[name]
        quota = self._quota.get(name)
        borrowing = False
        if quota is not None:
            demand = self._demand[queue[-1]]
            borrowing = any(u + d > q + 1e-9 for u, d, q in zip(usage, demand, quota, strict=True))
        inverse = self._inverse_total
        share = max(usage[0] * inverse[0], usage[1] * inverse[1], usage[2] * inverse[2])
        heapq.heappush(self._heap, (borrowing, share / self._weights[name], name))

    def pop(self) -> int | None:
        """The next job to try, or None when every queue is empty."""
        if not self._heap:
            return None
        _, _, name = heapq.heappop(self._heap)
        return self._queues[name].pop()

    def settle(self, tenant: str, placed: FloatArray) -> None:
        """Charge what the popped job got (possibly nothing) and requeue its tenant."""
        usage = self._usage[tenant]
        first, second, third = placed.tolist()
        usage[0] += first
        usage[1] += second
        usage[2] += third
        self._push(tenant)
