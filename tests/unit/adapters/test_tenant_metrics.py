from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from continuum.operator.adapters import metrics

pytestmark = pytest.mark.unit


def shown(tenant: str, state: str) -> float | None:
    labels = {"tenant": tenant, "state": state}
    return REGISTRY.get_sample_value("continuum_tenant_shards", labels)


def test_each_tenant_has_its_pending_and_placed_shards_and_a_gone_tenant_none() -> None:
    metrics.show_tenant_shards({"research": (2, 6), "production": (0, 3)})
    assert (shown("research", "Pending"), shown("research", "Placed")) == (2.0, 6.0)
    assert (shown("production", "Pending"), shown("production", "Placed")) == (0.0, 3.0)
    metrics.show_tenant_shards({"production": (1, 2)})
    assert shown("research", "Pending") is None and shown("research", "Placed") is None
    assert shown("production", "Pending") == 1.0
    metrics.show_tenant_shards({})
