"""The generated CRDs: structural schemas, names and columns as designed, no drift from crds/."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from continuum.operator.api.crd import DEFINITIONS, build_crd, rendered_crds
from continuum.operator.api.schema import SchemaTranslationError, structural_schema
from continuum.operator.cli import crds as crdgen

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
SCALARS = {"string", "integer", "number", "boolean"}
INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]
PYTHON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
}
TYPE_META = {".apiVersion", ".kind"}  # the API server's own fields, bounded by it
FORBIDDEN = {"$ref", "$defs", "definitions", "oneOf", "allOf", "not", "const", "nullable", "title"}


def structural_violations(node: dict[str, Any], path: str = "") -> Iterator[str]:
    """What kube-apiserver would refuse in a structural schema, plus this project's own bounds
    (every list, map and free string has a maximum, which keeps CEL cost estimates low)."""
    for key in FORBIDDEN & node.keys():
        yield f"{path}: {key}"
    if node.get("uniqueItems"):
        yield f"{path}: uniqueItems"
    if "anyOf" in node and (
        node["anyOf"] != INT_OR_STRING or not node.get("x-kubernetes-int-or-string")
    ):
        yield f"{path}: anyOf other than int-or-string"
    kind = node.get("type")
    free = node.get("x-kubernetes-int-or-string") or node.get(
        "x-kubernetes-preserve-unknown-fields"
    )
    if kind is None and not free:
        yield f"{path}: no type"
    if kind is not None and kind not in SCALARS | {"object", "array"}:
        yield f"{path}: type {kind}"
    for bound in ("exclusiveMinimum", "exclusiveMaximum"):
        if bound in node and node[bound] is not True:
            yield f"{path}: {bound} must be the boolean form"
    unbounded = "maxLength" not in node and node.get("format") != "date-time"
    if kind == "string" and unbounded and path not in TYPE_META:
        yield f"{path}: string without maxLength"
    if node.get("x-kubernetes-int-or-string") and "maxLength" not in node:
        yield f"{path}: int-or-string without maxLength"
    if kind == "array":
        yield from _array_violations(node, path)
    if kind == "object":
        yield from _object_violations(node, path)
    if (
        "default" in node
        and kind in SCALARS
        and not isinstance(node["default"], PYTHON_TYPES[kind])
    ):
        yield f"{path}: default {node['default']!r} is not a {kind}"


def _array_violations(node: dict[str, Any], path: str) -> Iterator[str]:
    if "items" not in node:
        yield f"{path}: array without items"
        return
    if "maxItems" not in node:
        yield f"{path}: array without maxItems"
    items = node["items"]
    yield from structural_violations(items, f"{path}[]")
    list_type = node.get("x-kubernetes-list-type")
    if list_type == "set" and items.get("type") not in SCALARS:
        yield f"{path}: a set of non-scalars"
    if list_type == "map":
        for key in node.get("x-kubernetes-list-map-keys", []) or [None]:
            field = items.get("properties", {}).get(key)
            if field is None or field.get("type") not in SCALARS:
                yield f"{path}: map key {key} is not a scalar property"
            elif key not in items.get("required", []) and "default" not in field:
                yield f"{path}: map key {key} is neither required nor defaulted"


def _object_violations(node: dict[str, Any], path: str) -> Iterator[str]:
    properties = node.get("properties")
    additional = node.get("additionalProperties")
    if properties is not None and additional is not None:
        yield f"{path}: properties and additionalProperties together"
    if isinstance(additional, bool):
        yield f"{path}: additionalProperties {additional}"
    opaque = node.get("x-kubernetes-preserve-unknown-fields") or path == ".metadata"
    if properties is None and additional is None and not opaque:
        yield f"{path}: object with no properties"
    if isinstance(additional, dict):
        if "maxProperties" not in node:
            yield f"{path}: map without maxProperties"
        yield from structural_violations(additional, f"{path}.*")
    for name in node.get("required", []):
        if name not in (properties or {}):
            yield f"{path}: required {name} is not a property"
    for name, child in (properties or {}).items():
        yield from structural_violations(child, f"{path}.{name}")
    for rule in node.get("x-kubernetes-validations", []):
        if not rule.get("rule") or not rule.get("message"):
            yield f"{path}: a CEL rule without rule or message"
        if "fieldPath" in rule and not _resolves(node, rule["fieldPath"]):
            yield f"{path}: fieldPath {rule['fieldPath']} is not in the schema"


def _resolves(node: dict[str, Any], field_path: str) -> bool:
    current: dict[str, Any] | None = node
    for name in field_path.removeprefix(".").split("."):
        current = (current or {}).get("properties", {}).get(name)
    return current is not None


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda d: d.kind)
def test_api_crds_schema_is_structural(definition: Any) -> None:
    schema = build_crd(definition)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert list(structural_violations(schema)) == []


def test_api_crds_checker_catches_what_kube_apiserver_refuses() -> None:
    bad = {
        "type": "object",
        "properties": {
            "a": {"$ref": "#/$defs/A"},
            "b": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "c": {
                "type": "array",
                "items": {"type": "string", "maxLength": 1},
                "uniqueItems": True,
            },
            "d": {"type": "object", "additionalProperties": True},
            "e": {"type": "number", "exclusiveMinimum": 0},
        },
    }
    found = " ".join(structural_violations(bad))
    for fragment in (
        "$ref",
        "anyOf",
        "uniqueItems",
        "maxItems",
        "additionalProperties True",
        "exclusiveMinimum",
    ):
        assert fragment in found


def test_api_crds_names_scope_and_columns() -> None:
    crds = {crd["spec"]["names"]["kind"]: crd for crd in map(build_crd, DEFINITIONS)}
    expected = {
        "MLJob": ("Namespaced", ["mlj"], ["Tenant", "Phase", "Ready", "Clusters", "Age"]),
        "Placement": ("Namespaced", ["plc"], ["Job", "Epoch", "Applied", "Age"]),
        "MemberCluster": ("Cluster", ["mc"], ["Tier", "Site", "Reachable", "Ready", "Age"]),
        "Tenant": ("Cluster", ["tnt"], ["Weight", "Age"]),
    }
    for kind, (scope, short_names, columns) in expected.items():
        spec = crds[kind]["spec"]
        (version,) = spec["versions"]
        assert spec["group"] == "continuum.dev"
        assert version["name"] == "v1alpha1"
        assert spec["scope"] == scope
        assert spec["names"]["shortNames"] == short_names
        assert spec["names"]["categories"] == ["continuum"]
        assert version["subresources"] == {"status": {}}
        shown = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
        assert shown == columns


def _rules(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, str]]:
    for rule in schema.get("x-kubernetes-validations", []):
        yield path + rule.get("fieldPath", ""), rule["message"]
    for name, child in schema.get("properties", {}).items():
        yield from _rules(child, f"{path}.{name}")
    if "items" in schema:
        yield from _rules(schema["items"], f"{path}[]")


def test_api_crds_cel_rules_carry_the_python_messages() -> None:
    (mljob,) = (d for d in DEFINITIONS if d.kind == "MLJob")
    rules = dict(_rules(structural_schema(mljob.spec), ".spec"))
    assert rules[".spec.shards.minAvailable"] == "shards.minAvailable must not exceed shards.count"
    assert rules[".spec.data[].site"] == "site is required when residency is Site or Region"
    assert rules[".spec.objectives.latencyP99Ms"].startswith("Inference jobs need")
    assert rules[".spec.data"] == "Federated jobs need at least one data source, each with a site"
    assert rules[".spec.mode"] == "mode is immutable"
    assert rules[".spec.ray.entrypoint"].startswith("an Inference job's ray.entrypoint is the")


def test_api_crds_committed_files_are_current() -> None:
    """The golden test: drift between the models and crds/ (or the chart's copies) fails here."""
    for name, content in rendered_crds().items():
        for directory in ("crds", "charts/continuum/crds"):
            path = REPO / directory / name
            assert path.read_text(encoding="utf-8") == content, (
                f"{path} is stale: run `continuum crds`"
            )


def test_api_crds_generation_is_deterministic_and_parses() -> None:
    first, second = rendered_crds(), rendered_crds()
    assert first == second
    for content in first.values():
        assert yaml.safe_load(content)["kind"] == "CustomResourceDefinition"


def _run(root: Path, *flags: str) -> int:
    parser = argparse.ArgumentParser()
    crdgen.add_arguments(parser)
    return crdgen.run(parser.parse_args(["--root", str(root), *flags]))


def test_api_crds_check_names_each_drifted_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(tmp_path, "--check") == 1
    assert _run(tmp_path) == 0
    assert _run(tmp_path, "--check") == 0
    capsys.readouterr()

    (tmp_path / "crds/tenants.continuum.dev.yaml").write_text("edited\n", encoding="utf-8")
    (tmp_path / "charts/continuum/crds/old.continuum.dev.yaml").write_text("x\n", encoding="utf-8")
    assert _run(tmp_path, "--check") == 1
    report = capsys.readouterr().err
    assert "crds/tenants.continuum.dev.yaml" in report
    assert "old.continuum.dev.yaml" in report
    assert "mljobs" not in report

    assert _run(tmp_path) == 0
    assert not (tmp_path / "charts/continuum/crds/old.continuum.dev.yaml").exists()
    assert _run(tmp_path, "--check") == 0


def test_api_crds_translation_refuses_what_it_cannot_express() -> None:
    class Loose(BaseModel):
        anything: object
        either: int | str

    with pytest.raises(SchemaTranslationError):
        structural_schema(Loose)
