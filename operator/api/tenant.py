"""Tenant: a team sharing the continuum, with a fair-share weight and a nominal quota."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from continuum.operator.api.base import DNS_LABEL, ListMap, ListSet, SpecModel, StatusModel
from continuum.operator.api.common import (
    API_VERSION,
    Condition,
    ObjectMeta,
    Resource,
    ResourceAmounts,
)

NamespaceName = Annotated[str, StringConstraints(max_length=63, pattern=DNS_LABEL)]


class TenantSpec(SpecModel):
    weight: float = Field(default=1.0, gt=0, le=1000, allow_inf_nan=False)
    """Share in weighted dominant-resource fairness, relative to the other tenants."""
    nominal_quota: ResourceAmounts | None = None
    """What the tenant is guaranteed; a resource left out is not limited."""
    namespaces: Annotated[list[NamespaceName], ListSet()] = Field(
        default_factory=list, max_length=256
    )
    """Namespaces whose MLJobs may name this tenant; empty allows every namespace."""


class TenantStatus(StatusModel):
    conditions: Annotated[list[Condition], ListMap("type")] = Field(
        default_factory=list, max_length=32
    )
    allocated: ResourceAmounts | None = None
    """What the tenant's placed shards hold across the member clusters."""
    observed_generation: int | None = Field(default=None, ge=0)


class Tenant(Resource):
    """A tenant (cluster-scoped)."""

    api_version: Literal["continuum.dev/v1alpha1"] = API_VERSION
    kind: Literal["Tenant"] = "Tenant"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: TenantSpec
    status: TenantStatus | None = None
