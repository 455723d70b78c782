"""Pull members and their work: the rules that keep Push and Pull apart, the agent's times,
and the MemberWork names."""

from __future__ import annotations

from typing import Any

import pytest

from continuum.operator.api import MemberCluster, validate_resource
from continuum.operator.api.membercluster import MemberMode
from continuum.operator.api.work import (
    MAX_WORK_NAME,
    MemberWork,
    member_namespace,
    work_name,
)

pytestmark = pytest.mark.unit


def member(**spec: Any) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "apiVersion": "continuum.dev/v1alpha1",
        "kind": "MemberCluster",
        "metadata": {"name": "delft"},
        "spec": {"tier": "Edge", "site": "delft", "region": "eu-west"},
    }
    manifest["spec"].update(spec)
    return manifest


def errors_of(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    result = validate_resource(manifest)
    assert isinstance(result, list), f"expected errors, got {result!r}"
    return [(error.path, error.message) for error in result]


def test_a_push_member_is_the_default_and_needs_its_kubeconfig() -> None:
    pushed = validate_resource(member(kubeconfigSecretRef={"name": "delft"}))
    assert isinstance(pushed, MemberCluster)
    assert pushed.spec.mode == MemberMode.PUSH
    assert errors_of(member()) == [
        ("spec.kubeconfigSecretRef", "Push members need spec.kubeconfigSecretRef")
    ]


def test_a_pull_member_has_no_kubeconfig_and_takes_the_default_times() -> None:
    pulled = validate_resource(member(mode="Pull"))
    assert isinstance(pulled, MemberCluster)
    assert pulled.spec.timing.lease_duration_seconds == 15
    assert pulled.spec.timing.renew_interval_seconds == 5
    assert pulled.spec.timing.fence_after_seconds == 15
    assert errors_of(member(mode="Pull", kubeconfigSecretRef={"name": "delft"})) == [
        ("spec.kubeconfigSecretRef", "Pull members have no kubeconfig: their agent dials the hub")
    ]


def test_the_agent_times_are_for_pull_members_and_renew_well_within_the_lease() -> None:
    assert errors_of(
        member(kubeconfigSecretRef={"name": "delft"}, agent={"leaseDurationSeconds": 20})
    ) == [("spec.agent", "spec.agent is for Pull members")]
    assert errors_of(
        member(mode="Pull", agent={"leaseDurationSeconds": 10, "renewIntervalSeconds": 6})
    ) == [
        (
            "spec.agent.renewIntervalSeconds",
            "renewIntervalSeconds must be at most half of leaseDurationSeconds",
        )
    ]
    assert any(
        path == "spec.agent.fenceAfterSeconds"
        for path, _ in errors_of(member(mode="Pull", agent={"fenceAfterSeconds": 1}))
    )


def test_a_work_name_is_namespace_dot_job_and_shortened_past_the_limit() -> None:
    assert work_name("team-a", "train") == "team-a.train"
    assert member_namespace("delft") == "continuum-member-delft"
    long_job = "a" * 253
    shortened = work_name("team-a", long_job)
    assert len(shortened) <= MAX_WORK_NAME
    assert shortened != work_name("team-b", long_job)
    assert shortened[-1].isalnum()


def test_a_member_work_round_trips_with_its_rendered_manifests() -> None:
    manifest = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "train-0", "labels": {"continuum.dev/shard": "0"}},
        "spec": {"entrypoint": "python train.py", "anything": {"kept": [1, 2]}},
    }
    body = {
        "apiVersion": "continuum.dev/v1alpha1",
        "kind": "MemberWork",
        "metadata": {"name": "team-a.train", "namespace": "continuum-member-delft"},
        "spec": {
            "member": "delft",
            "jobRef": {"namespace": "team-a", "name": "train", "uid": "u-1"},
            "placementEpoch": 3,
            "resources": [
                {
                    "kind": "RayJob",
                    "name": "train-0",
                    "shard": 0,
                    "epoch": 2,
                    "onDisconnect": "Fence",
                    "manifest": manifest,
                }
            ],
        },
    }
    work = validate_resource(body)
    assert isinstance(work, MemberWork)
    assert work.spec.resources[0].manifest == manifest
    assert work.to_dict()["spec"]["resources"][0]["manifest"] == manifest
    duplicated = {**body, "spec": {**body["spec"], "resources": body["spec"]["resources"] * 2}}
    assert any(path == "spec.resources" for path, _ in errors_of(duplicated))
