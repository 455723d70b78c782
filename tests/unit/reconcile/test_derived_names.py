"""Every name and label Continuum derives from an MLJob fits Kubernetes' limits, for any valid
MLJob name: a name the hub refuses (a 64-character job label, say) makes a Placement that can
never be written."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from continuum.operator.api import MLJob, PlacementSpec
from continuum.operator.api.manifests import placement_manifest
from continuum.operator.reconcile.kuberay import build_shard_resource

pytestmark = pytest.mark.unit
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
DNS_1123_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
# Up to 253 characters: labels of 63 joined by dots.
DNS_SUBDOMAIN = (
    st.lists(st.from_regex(DNS_1123_LABEL, fullmatch=True), min_size=1, max_size=6)
    .map(".".join)
    .filter(lambda name: len(name) <= 253)
)


def job(name: str) -> MLJob:
    return MLJob.model_validate({
        "apiVersion": "continuum.dev/v1alpha1", "kind": "MLJob",
        "metadata": {"name": name, "namespace": "ns", "uid": "6a1f0c2e-uid"},
        "spec": {"mode": "Training", "tenant": "t",
                 "shards": {"count": 1, "resources": {"cpu": "1", "memory": "1Gi"}},
                 "ray": {"image": "rayproject/ray:2.50.0", "entrypoint": "python t.py"}},
    })  # fmt: skip


def assert_labels_valid(labels: dict[str, str]) -> None:
    for key, value in labels.items():
        assert len(value) <= 63 and LABEL_VALUE.match(value), (key, value)


@given(DNS_SUBDOMAIN)
@example("a" * 64)
@example(".".join(["b" * 63] * 4)[:253].rstrip("."))
def test_every_label_on_a_placement_and_a_shard_resource_is_a_valid_label_value(name: str) -> None:
    spec = PlacementSpec.model_validate({"jobRef": {"name": name}, "epoch": 1})
    placement = placement_manifest(job(name), spec)
    assert placement["metadata"]["name"] == name  # a Placement takes any name its job takes
    assert_labels_valid(placement["metadata"]["labels"])
    resource = build_shard_resource(job(name), 0, epoch=1)
    assert_labels_valid(resource["metadata"]["labels"])
    pod_labels = resource["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["metadata"]
    assert_labels_valid(pod_labels["labels"])
