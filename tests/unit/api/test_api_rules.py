"""Each cross-field rule refuses what it should, with the field path and message of its CEL twin."""

from __future__ import annotations

import copy
from types import MappingProxyType
from typing import Any

import pytest

from continuum.operator.api import (
    FieldError,
    MLJob,
    MLJobSpec,
    Placement,
    format_errors,
    validate_as,
    validate_resource,
)

pytestmark = pytest.mark.unit


def mljob(**spec: Any) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "apiVersion": "continuum.dev/v1alpha1",
        "kind": "MLJob",
        "metadata": {"name": "job", "namespace": "team-a", "managedFields": [{"manager": "x"}]},
        "spec": {
            "mode": "Training",
            "tenant": "team-a",
            "shards": {"count": 3, "resources": {"cpu": "2", "memory": "4Gi"}},
            "ray": {"image": "rayproject/ray:2.50.0", "entrypoint": "python train.py"},
        },
    }
    manifest["spec"].update(spec)
    return manifest


# An Inference job's entrypoint is the Ray Serve import path.
SERVE = MappingProxyType({"image": "rayproject/ray:2.50.0", "entrypoint": "detector.serve:app"})


def inference(**spec: Any) -> dict[str, Any]:
    return mljob(mode="Inference", ray=dict(SERVE), **spec)


def federated_shards(count: int) -> dict[str, Any]:
    return {"count": count, "resources": {"cpu": "2", "memory": "4Gi"}}


def errors_of(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    result = validate_resource(manifest)
    assert isinstance(result, list), f"expected errors, got {result!r}"
    return [(error.path, error.message) for error in result]


def test_api_rules_valid_job_passes() -> None:
    job = validate_resource(mljob())
    assert isinstance(job, MLJob)
    assert job.spec.shards.gang_size == 3


def test_api_rules_min_available_must_not_exceed_count() -> None:
    shards = {"count": 2, "minAvailable": 3, "resources": {"cpu": 1, "memory": "1Gi"}}
    assert errors_of(mljob(shards=shards)) == [
        ("spec.shards.minAvailable", "shards.minAvailable must not exceed shards.count")
    ]
    shards["minAvailable"] = 2
    assert isinstance(validate_resource(mljob(shards=shards)), MLJob)


@pytest.mark.parametrize("residency", ["Site", "Region"])
def test_api_rules_residency_needs_a_site(residency: str) -> None:
    data = [{"name": "cam", "site": "edge-a"}, {"name": "lidar", "residency": residency}]
    assert errors_of(mljob(data=data)) == [
        ("spec.data[1].site", "site is required when residency is Site or Region")
    ]


def test_api_rules_residency_any_needs_no_site() -> None:
    assert isinstance(validate_resource(mljob(data=[{"name": "logs"}])), MLJob)


def test_api_rules_inference_needs_a_latency_objective() -> None:
    message = (
        "Inference jobs need objectives.latencyP99Ms, "
        "or objectives.latencyOptOutReason to say why not"
    )
    expected = [("spec.objectives.latencyP99Ms", message)]
    assert errors_of(inference()) == expected
    assert errors_of(inference(objectives={"deadlineSeconds": 60})) == expected
    for objectives in ({"latencyP99Ms": 50}, {"latencyOptOutReason": "offline batch scoring"}):
        assert isinstance(validate_resource(inference(objectives=objectives)), MLJob)


def test_api_rules_latency_objective_or_opt_out_not_both() -> None:
    objectives = {"latencyP99Ms": 50, "latencyOptOutReason": "batch"}
    assert errors_of(inference(objectives=objectives)) == [
        (
            "spec.objectives.latencyOptOutReason",
            "set objectives.latencyP99Ms or objectives.latencyOptOutReason, not both",
        )
    ]


def test_api_rules_federated_needs_a_data_site() -> None:
    expected = [("spec.data", "Federated jobs need at least one data source, each with a site")]
    assert errors_of(mljob(mode="Federated")) == expected
    no_site = [{"name": "logs"}]
    assert errors_of(mljob(mode="Federated", data=no_site, shards=federated_shards(2))) == expected
    two_sites = [{"name": "a", "site": "edge-a"}, {"name": "b", "site": "a"}]
    three = [*two_sites, {"name": "c"}]
    assert errors_of(mljob(mode="Federated", data=three, shards=federated_shards(4))) == expected
    job = validate_resource(mljob(mode="Federated", data=two_sites, shards=federated_shards(3)))
    assert isinstance(job, MLJob)
    assert job.spec.data_sites == ["edge-a", "a"]


def test_api_rules_federated_has_one_shard_per_site_plus_the_aggregator() -> None:
    two_sites = [{"name": "a", "site": "edge-a"}, {"name": "b", "site": "edge-b"}]
    assert errors_of(mljob(mode="Federated", data=two_sites, shards=federated_shards(2))) == [
        (
            "spec.shards.count",
            "a Federated job has one shard per data source plus the cloud aggregator, "
            "so shards.count must be the number of data sources + 1",
        )
    ]


@pytest.mark.parametrize("threshold", [-0.1, 1.01])
def test_api_rules_risk_threshold_is_a_probability(threshold: float) -> None:
    tolerance = {"proactive": {"enabled": True, "riskThreshold": threshold}}
    ((path, _),) = errors_of(mljob(faultTolerance=tolerance))
    assert path == "spec.faultTolerance.proactive.riskThreshold"


def test_api_rules_data_names_are_unique() -> None:
    data = [{"name": "cam", "site": "a"}, {"name": "cam", "site": "b"}]
    assert errors_of(mljob(data=data)) == [
        ("spec.data", "name must be unique within the list; repeated: cam")
    ]


@pytest.mark.parametrize(
    ("term", "ok"),
    [
        ({"key": "zone", "operator": "In", "values": ["x"]}, True),
        ({"key": "zone", "operator": "In"}, False),
        ({"key": "zone", "operator": "Exists"}, True),
        ({"key": "zone", "operator": "DoesNotExist", "values": ["x"]}, False),
    ],
)
def test_api_rules_selector_values_match_the_operator(term: dict[str, Any], ok: bool) -> None:
    placement = {"clusterSelector": {"matchExpressions": [term]}}
    result = validate_resource(mljob(placement=placement))
    if ok:
        assert isinstance(result, MLJob)
    else:
        assert errors_of(mljob(placement=placement))[0][0] == (
            "spec.placement.clusterSelector.matchExpressions[0].values"
        )


@pytest.mark.parametrize(
    ("toleration", "path"),
    [
        ({"operator": "Equal", "value": "x"}, "key"),
        ({"key": "flaky", "operator": "Exists", "value": "x"}, "value"),
    ],
)
def test_api_rules_tolerations(toleration: dict[str, Any], path: str) -> None:
    placement = {"tolerations": [toleration]}
    ((found, _),) = errors_of(mljob(placement=placement))
    assert found == f"spec.placement.tolerations[0].{path}"


def test_api_rules_migration_must_move() -> None:
    placement: dict[str, Any] = {
        "apiVersion": "continuum.dev/v1alpha1",
        "kind": "Placement",
        "metadata": {"name": "job"},
        "spec": {
            "jobRef": {"name": "job"},
            "epoch": 2,
            "migrations": [
                {
                    "shard": 0,
                    "from": "a",
                    "to": "a",
                    "reason": "Failure",
                    "time": "2026-01-01T00:00:00Z",
                }
            ],
        },
    }
    assert errors_of(placement) == [
        ("spec.migrations[0].to", "a migration's from and to must differ")
    ]
    placement["spec"]["migrations"][0]["to"] = "b"
    assert isinstance(validate_resource(placement), Placement)


def test_api_rules_several_errors_are_all_reported() -> None:
    manifest = mljob(
        mode="Inference",
        shards={"count": 1, "minAvailable": 2, "resources": {"cpu": "-1", "memory": "1Gi"}},
        ray={"image": "", "entrypoint": "x", "runtimeEnvv": {}},
    )
    paths = [path for path, _ in errors_of(manifest)]
    assert paths == ["spec.shards.resources.cpu", "spec.ray.image", "spec.ray.runtimeEnvv"]


def test_api_rules_typo_is_named_as_unknown_field() -> None:
    manifest = mljob()
    manifest["spec"]["shards"]["minAvailible"] = 1
    result = validate_resource(manifest)
    assert result == [
        FieldError("spec.shards.minAvailible", "unknown field", "FieldValueNotSupported")
    ]


def test_api_rules_missing_field_is_required() -> None:
    manifest = mljob()
    del manifest["spec"]["tenant"]
    assert errors_of(manifest) == [("spec.tenant", "Required value")]


def test_api_rules_spec_alone_with_prefix() -> None:
    spec = copy.deepcopy(mljob()["spec"])
    spec["shards"]["minAvailable"] = 9
    errors = validate_as(MLJobSpec, spec, prefix="spec")
    assert isinstance(errors, list)
    assert format_errors(errors) == (
        "spec.shards.minAvailable: shards.minAvailable must not exceed shards.count"
    )


def test_api_rules_kind_and_version_are_checked() -> None:
    assert errors_of({**mljob(), "kind": "Pod"})[0][0] == "kind"
    assert errors_of({**mljob(), "apiVersion": "v1"})[0][0] == "apiVersion"


def test_api_rules_accepts_read_only_mappings_as_kopf_hands_them_over() -> None:
    manifest = mljob()
    manifest["spec"] = MappingProxyType(manifest["spec"])
    assert isinstance(validate_resource(MappingProxyType(manifest)), MLJob)
