"""Strings that reach a member cluster or a message are refused, naming the field, when they are
not what they claim to be; the same cases go through kube-apiserver in
tests/integration/test_api_admission.py."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any

import pytest
from admission_cases import BASES, CASES, Case
from pydantic import StringConstraints, TypeAdapter, ValidationError

from continuum.operator.api import FieldError, MemberCluster, Resource, validate_resource
from continuum.operator.api.base import COMMAND_LINE, IMAGE_REFERENCE, PLAIN_TEXT, URI
from continuum.operator.api.crd import DEFINITIONS
from continuum.operator.api.schema import structural_schema

pytestmark = pytest.mark.unit

REORDERING = {0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def verdict(case: Case) -> Resource | list[FieldError]:
    namespace = "team-a" if BASES[case.base]["kind"] == "MLJob" else None
    return validate_resource(case.manifest("object", namespace))


def test_api_strings_every_base_object_is_valid() -> None:
    for name, base in BASES.items():
        result = validate_resource({**base, "metadata": {"name": "object", "namespace": "a"}})
        assert not isinstance(result, list), (name, result)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_api_strings_refused_with_the_field_named(case: Case) -> None:
    result = verdict(case)
    if case.refused:
        assert isinstance(result, list), f"{case} was taken"
        assert [error.path for error in result] == [case.field], result
    else:
        assert not isinstance(result, list), result


EVERY_CODE_POINT = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
"""All but the surrogates, which no JSON text carries."""


def _refused_code_points(
    pattern: str, before: str = "x", code_points: list[int] = EVERY_CODE_POINT
) -> set[int]:
    """The code points that `pattern`, run by pydantic's regex engine, refuses after `before`."""
    texts = TypeAdapter(list[Annotated[str, StringConstraints(pattern=pattern)]])
    try:
        texts.validate_python([f"{before}{chr(c)}" for c in code_points])
    except ValidationError as error:
        return {code_points[int(detail["loc"][0])] for detail in error.errors()}
    return set()


def test_api_strings_free_text_refuses_exactly_the_hidden_characters() -> None:
    controls = {c for c in range(0x110000) if unicodedata.category(chr(c)) == "Cc"}
    assert controls == {*range(0x00, 0x20), *range(0x7F, 0xA0)}
    hidden = controls | REORDERING
    assert _refused_code_points(PLAIN_TEXT) == hidden
    assert _refused_code_points(COMMAND_LINE) == hidden - {ord("\t"), ord("\n")}
    assert _refused_code_points(URI, before="s3://b") == hidden | {ord(" ")}


def test_api_strings_messages_name_each_hidden_character_by_code_point() -> None:
    for code_point in sorted(_refused_code_points(PLAIN_TEXT)):
        reason = f"batch{chr(code_point)}"
        case = Case("Inference", "spec.objectives.latencyOptOutReason", reason, True)
        error = _only_error(verdict(case))
        assert error.message.endswith(f"; found U+{code_point:04X} at index 5"), error


def test_api_strings_image_references_are_ascii_without_whitespace() -> None:
    allowed = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:/@+[]")
    # ASCII, Latin and the hidden characters; beyond, a sample (each refusal costs an error).
    sample = [*range(0x3000), 0xFEFF, 0xFF0F, 0x1F600, 0x10FFFF]
    assert _refused_code_points(IMAGE_REFERENCE, code_points=sample) == set(sample) - allowed


def _only_error(result: Resource | list[FieldError]) -> FieldError:
    assert isinstance(result, list)
    (error,) = result
    return error


def test_api_strings_messages_say_what_the_value_should_be_and_where_it_hides() -> None:
    image = Case("Training", "spec.ray.image", "ray\x1b[2J", True)
    error = _only_error(verdict(image))
    assert error.message.startswith("must be a container image reference such as")
    assert error.message.endswith("; found U+001B at index 3")
    assert "\x1b" not in str(error)

    entrypoint = _only_error(verdict(Case("Training", "spec.ray.entrypoint", "a\u202eb", True)))
    assert entrypoint.message.startswith("must be a command line: tab and newline may appear")
    assert entrypoint.message.endswith("; found U+202E at index 1")

    uri = _only_error(
        verdict(Case("Training", "spec.faultTolerance.checkpoint.uri", "s3://a b", True))
    )
    assert uri.message.startswith("must be a URI such as s3://bucket/path")
    assert "found" not in uri.message


def test_api_strings_a_bad_map_key_is_named_at_the_map() -> None:
    key = Case("MemberCluster", "spec.labels", "pool\x1b", True, as_key=True)
    error = _only_error(verdict(key))
    assert error == FieldError(
        "spec.labels",
        "every key must be a label key: an optional DNS subdomain and '/', then a name of letters, "
        "digits, '-', '_' and '.', starting and ending with a letter or digit; "
        "key 'pool\\x1b' is not",
    )
    long_key = Case("MemberCluster", "spec.labels", "k" * 400, True, as_key=True)
    error = _only_error(verdict(long_key))
    assert error.path == "spec.labels"
    assert error.message == f"key {'k' * 64!r}...: String should have at most 317 characters"
    assert error.cause == "FieldValueTooLong"


def test_api_strings_label_maps_check_their_keys_in_cel() -> None:
    (member,) = (d for d in DEFINITIONS if d.kind == "MemberCluster")
    labels = structural_schema(member.spec)["properties"]["labels"]
    assert "patternProperties" not in labels
    assert "propertyNames" not in labels
    assert labels["additionalProperties"]["pattern"].startswith("^(([A-Za-z0-9]")
    (rule,) = labels["x-kubernetes-validations"]
    assert rule["rule"].startswith("self.all(k, size(k) >= 1 && size(k) <= 317 && k.matches(r'^(")
    assert rule["message"].startswith("every key must be a label key: ")
    assert rule["message"].endswith(", at most 317 characters long")


def test_api_strings_keys_without_constraints_stay_a_plain_map() -> None:
    status: Any = next(d for d in DEFINITIONS if d.kind == "MemberCluster").status
    latencies = structural_schema(status)["properties"]["latencyToSites"]
    assert "x-kubernetes-validations" not in latencies
    assert latencies["additionalProperties"]["type"] == "number"


def test_api_strings_member_labels_still_select() -> None:
    member = validate_resource(
        Case("MemberCluster", "spec.labels", "a.io/b", False, True).manifest("m")
    )
    assert isinstance(member, MemberCluster)
    assert member.spec.labels == {"pool": "gpu", "a.io/b": "x"}
