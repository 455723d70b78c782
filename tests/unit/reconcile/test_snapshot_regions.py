"""Regions in the operator's snapshot come from MemberClusters only: a data site no member is at
has no region, and the Scheduled message says so instead of naming an empty region."""

from __future__ import annotations

from typing import Any

import pytest

from continuum.operator.api import MemberCluster, MLJob, Tenant
from continuum.operator.reconcile.snapshot import build_snapshot
from continuum.schedulers import schedule

pytestmark = pytest.mark.unit


def member(name: str, site: str, region: str, tier: str = "Edge") -> MemberCluster:
    reachable = {"type": "Reachable", "status": "True", "reason": "Probed",
                 "lastTransitionTime": "2026-03-01T10:00:00Z"}  # fmt: skip
    return MemberCluster.model_validate({
        "metadata": {"name": name},
        "spec": {"tier": tier, "site": site, "region": region,
                 "kubeconfigSecretRef": {"name": name}, "capacity": {"cpu": 8, "memory": "32Gi"}},
        "status": {"conditions": [reachable]},
    })  # fmt: skip


def regional_job(uid: str, data: list[dict[str, Any]]) -> MLJob:
    # The snapshot keeps what it made of a job by uid and generation: one uid per spec.
    return MLJob.model_validate({
        "metadata": {"name": "regional", "namespace": "team-a", "uid": uid, "generation": 1},
        "spec": {"mode": "Training", "tenant": "team-a",
                 "shards": {"count": 1, "resources": {"cpu": "1", "memory": "1Gi"}},
                 "ray": {"image": "rayproject/ray:2.50.0", "entrypoint": "python t.py"},
                 "data": data},
    })  # fmt: skip


MEMBERS = (
    member("member-1", "edge-a", "eu-west"),
    member("member-2", "edge-b", "eu-west"),
    member("member-3", "edge-c", "eu-east"),
    member("member-4", "cloud", "eu-central", tier="Cloud"),
)
TENANTS = (Tenant.model_validate({"metadata": {"name": "team-a"}, "spec": {}}),)


def test_a_data_site_without_a_member_is_in_no_known_region() -> None:
    job = regional_job("u-edge-x", [{"name": "cam", "site": "edge-x", "residency": "Region"}])
    snapshot = build_snapshot(MEMBERS, TENANTS, [job], {})
    assert {site.name: site.region for site in snapshot.sites} == {
        "edge-a": "eu-west",
        "edge-b": "eu-west",
        "edge-c": "eu-east",
        "cloud": "eu-central",
    }
    (unschedulable,) = schedule(snapshot).unschedulable
    assert unschedulable.reason == (
        "residency=Region: data site edge-x is in no known region "
        "(no cluster is at site edge-x), which excludes all 4 clusters."
    )


def test_a_data_site_at_a_member_is_in_that_members_region() -> None:
    job = regional_job("u-edge-a", [{"name": "cam", "site": "edge-a", "residency": "Region"}])
    result = schedule(build_snapshot(MEMBERS, TENANTS, [job], {}))
    assert {decision.cluster for decision in result.decisions} <= {"member-1", "member-2"}
    assert len(result.decisions) == 1
