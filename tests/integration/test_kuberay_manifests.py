"""The shard manifests against real kube-apiservers holding the KubeRay v1.7.0 CRDs.

Strict field validation makes an unknown field an error instead of a field silently pruned, so
an accepted manifest whose read-back keeps every field we sent is one KubeRay will see whole. The
status then comes from the KubeRay stand-in (e2e/kuberay_sim.py), since no kubelet runs here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from continuum.operator.api import ShardState
from continuum.operator.api.shard_resources import SHARD_LABELS, job_selector
from continuum.operator.reconcile.kuberay import build_shard_resource, needs_update, observe_shard
from e2e import kuberay_sim
from e2e.pytest_plugin import RunningTestbed
from tests.integration.kuberay_manifests import (
    assert_kept_whole,
    create_strictly,
    example_job,
    read_back,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def member_namespace(testbed: RunningTestbed) -> Iterator[str]:
    """A fresh namespace of the same name in every member: a job's shards share its namespace."""
    name = f"kr-{uuid.uuid4().hex[:10]}"
    for member in testbed.members:
        testbed.kubectl("create", "namespace", name, cluster=member)
    try:
        yield name
    finally:
        for member in testbed.members:
            testbed.kubectl(
                "delete", "namespace", name, "--wait=false", cluster=member, check=False
            )


@pytest.fixture
def member_apis(testbed: RunningTestbed) -> Iterator[list[client.ApiClient]]:
    apis = [
        config.new_client_from_config(config_file=str(member.kubeconfig))  # type: ignore[no-untyped-call]
        for member in testbed.members
    ]
    try:
        yield apis
    finally:
        for api in apis:
            api.close()


def test_training_shards_are_accepted_whole_then_run_and_succeed(
    testbed: RunningTestbed, member_namespace: str, member_apis: list[client.ApiClient]
) -> None:
    job = example_job(member_namespace, "Training")
    api = member_apis[0]
    manifests = [build_shard_resource(job, shard, epoch=1) for shard in range(2)]
    for manifest in manifests:
        create_strictly(api, manifest)
        served = read_back(api, manifest)
        assert_kept_whole(manifest, served)
        # The server defaults fields we leave out; needs_update above had to ignore them.
        assert served["spec"]["submissionMode"] == "K8sJobMode"
        assert observe_shard(served).state == ShardState.PENDING

    assert len(kuberay_sim.advance(api, member_namespace, to="Initializing")) == 2
    assert {observe_shard(read_back(api, m)).state for m in manifests} == {ShardState.STARTING}
    kuberay_sim.advance(api, member_namespace, to="Running")
    assert {observe_shard(read_back(api, m)).state for m in manifests} == {ShardState.RUNNING}
    kuberay_sim.advance(api, member_namespace, to="Succeeded")
    finished = [read_back(api, m) for m in manifests]
    assert {observe_shard(f).state for f in finished} == {ShardState.SUCCEEDED}
    # A status written later still does not count as drift.
    assert not any(needs_update(m, f) for m, f in zip(manifests, finished, strict=True))


def test_federated_participants_and_aggregator_across_members(
    testbed: RunningTestbed, member_namespace: str, member_apis: list[client.ApiClient]
) -> None:
    job = example_job(member_namespace, "Federated")
    # Participants on the edge members, the aggregator on the last (cloud) member.
    assignments = [(0, 0), (1, 1), (2, 2), (3, len(member_apis) - 1)]
    for shard, member in assignments:
        manifest = build_shard_resource(job, shard, epoch=2)
        create_strictly(member_apis[member], manifest)
        assert_kept_whole(manifest, read_back(member_apis[member], manifest))

    for api in member_apis:
        kuberay_sim.advance(api, member_namespace, to="Running", selector=job_selector("federated"))
    for shard, member in assignments:
        served = read_back(member_apis[member], build_shard_resource(job, shard, epoch=2))
        assert observe_shard(served).state == ShardState.RUNNING
        env = {
            variable["name"]: variable["value"]
            for variable in served["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"][
                "containers"
            ][0]["env"]
        }
        role = "aggregator" if shard == 3 else "participant"
        assert (env["CONTINUUM_ROLE"], served["metadata"]["labels"][SHARD_LABELS.role]) == (
            role,
            role,
        )

    failing = member_apis[0]
    kuberay_sim.advance(failing, member_namespace, to="Failed")
    failed = observe_shard(read_back(failing, build_shard_resource(job, 0, epoch=2)))
    assert failed.state == ShardState.FAILED
    assert "AppFailed" in failed.message


def test_inference_shard_is_accepted_whole_and_serves(
    testbed: RunningTestbed, member_namespace: str, member_apis: list[client.ApiClient]
) -> None:
    job = example_job(member_namespace, "Inference")
    api = member_apis[-1]
    manifest = build_shard_resource(job, 0, epoch=5)
    create_strictly(api, manifest)
    assert_kept_whole(manifest, read_back(api, manifest))

    kuberay_sim.advance(api, member_namespace, to="Initializing")
    assert observe_shard(read_back(api, manifest)).state == ShardState.STARTING
    kuberay_sim.advance(api, member_namespace, to="Running")
    served = read_back(api, manifest)
    assert observe_shard(served).state == ShardState.RUNNING
    assert served["status"]["serviceStatus"] == "Running"
    # A RayService never completes: asking for Succeeded leaves it serving.
    assert kuberay_sim.advance(api, member_namespace, to="Succeeded") == []
    assert observe_shard(read_back(api, manifest)).state == ShardState.RUNNING


def test_the_stand_in_controller_starts_new_shards_step_by_step(
    testbed: RunningTestbed, member_namespace: str, member_apis: list[client.ApiClient]
) -> None:
    api = member_apis[1]
    manifests = [
        build_shard_resource(example_job(member_namespace, "Training"), 0, epoch=1),
        build_shard_resource(example_job(member_namespace, "Inference"), 0, epoch=1),
    ]
    for manifest in manifests:
        create_strictly(api, manifest)
    states = []
    for _ in range(3):
        kuberay_sim.start(api, member_namespace)
        states.append([observe_shard(read_back(api, m)).state for m in manifests])
    assert states == [
        [ShardState.STARTING, ShardState.STARTING],
        [ShardState.RUNNING, ShardState.RUNNING],
        [ShardState.RUNNING, ShardState.RUNNING],
    ]


def test_the_schema_check_can_fail_a_wrong_typed_field_is_refused_with_422(
    testbed: RunningTestbed, member_namespace: str, member_apis: list[client.ApiClient]
) -> None:
    manifest = build_shard_resource(example_job(member_namespace, "Training"), 0, epoch=1)
    workers = manifest["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    workers["replicas"] = "two"
    with pytest.raises(ApiException) as raised:
        create_strictly(member_apis[0], manifest)
    assert raised.value.status == 422
    causes = json.loads(raised.value.body or "{}")["details"]["causes"]
    assert "spec.rayClusterSpec.workerGroupSpecs[0].replicas" in [c.get("field") for c in causes]


def test_strict_validation_refuses_an_unknown_field_instead_of_pruning_it(
    testbed: RunningTestbed, member_namespace: str, member_apis: list[client.ApiClient]
) -> None:
    manifest = build_shard_resource(example_job(member_namespace, "Inference"), 0, epoch=1)
    manifest["spec"]["rayClusterConfig"]["headGroupSpec"]["replicas"] = 1
    with pytest.raises(ApiException) as raised:
        create_strictly(member_apis[0], manifest)
    assert raised.value.status == 400
    message = json.loads(raised.value.body or "{}")["message"]
    assert 'unknown field "spec.rayClusterConfig.headGroupSpec.replicas"' in message
