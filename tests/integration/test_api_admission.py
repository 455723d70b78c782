"""kube-apiserver refuses at apply, from the generated CRDs alone (no operator, no webhook), the
strings the models refuse, naming the same field: the patterns mean the same to Go's RE2 as to
the Rust regex engine pydantic runs, and the CEL rules the same as their Python twins."""

from __future__ import annotations

import json
import uuid

import pytest

from continuum.operator.api import validate_resource
from continuum.operator.api.base import COMMAND_LINE, IMAGE_REFERENCE, URI
from e2e.binaries import kubectl
from e2e.pytest_plugin import RunningTestbed
from tests.unit.api.admission_cases import BASES, CASES, Case

pytestmark = pytest.mark.integration


def test_api_admission_the_hub_runs_the_generated_patterns(testbed: RunningTestbed) -> None:
    crd = json.loads(testbed.kubectl("get", "crd", "mljobs.continuum.dev", "-o", "json"))
    (version,) = crd["spec"]["versions"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert spec["ray"]["properties"]["image"]["pattern"] == IMAGE_REFERENCE
    assert spec["ray"]["properties"]["entrypoint"]["pattern"] == COMMAND_LINE
    checkpoint = spec["faultTolerance"]["properties"]["checkpoint"]["properties"]
    assert checkpoint["uri"]["pattern"] == URI


@pytest.mark.parametrize("case", CASES, ids=str)
def test_api_admission_kube_apiserver_and_the_models_agree(
    case: Case, testbed: RunningTestbed, module_namespace: str
) -> None:
    kind = BASES[case.base]["kind"]
    name = f"s-{uuid.uuid4().hex[:10]}"
    namespace = module_namespace if kind == "MLJob" else None
    manifest = case.manifest(name, namespace)
    applied = kubectl(
        testbed.hub.kubeconfig, "apply", "-f", "-", stdin=json.dumps(manifest), check=False
    )
    try:
        models = validate_resource(manifest)
        if case.refused:
            assert applied.returncode != 0, f"kube-apiserver took {case}"
            assert f"{case.field}: Invalid value" in applied.stderr, applied.stderr
            assert applied.stderr.count(": Invalid value") == 1, applied.stderr
            assert isinstance(models, list), f"the models took {case}"
            assert [error.path for error in models] == [case.field]
        else:
            assert applied.returncode == 0, applied.stderr
            assert not isinstance(models, list), models
    finally:
        if applied.returncode == 0:
            where = ["--namespace", namespace] if namespace else []
            testbed.kubectl("delete", kind.lower(), name, *where, "--wait=false", check=False)
