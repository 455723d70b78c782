"""Validation of raw objects, as the API server hands them over, into models or field errors.

Pure and shared: the admission webhook and the reconcile call the same function, so an install
without the webhook still refuses the same specs, with the same messages.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from continuum.operator.api.base import CROSS_FIELD_ERROR, PATTERN_MEANINGS
from continuum.operator.api.common import API_VERSION, Resource
from continuum.operator.api.membercluster import MemberCluster
from continuum.operator.api.mljob import MLJob
from continuum.operator.api.placement import Placement
from continuum.operator.api.tenant import Tenant
from continuum.operator.api.work import MemberWork

ModelT = TypeVar("ModelT", bound=BaseModel)

RESOURCE_MODELS: dict[str, type[Resource]] = {
    model.__name__: model for model in (MLJob, Placement, MemberCluster, Tenant, MemberWork)
}

# Pydantic error types -> the metav1.StatusCause type Kubernetes would report.
_CAUSES = {
    "missing": "FieldValueRequired",
    "extra_forbidden": "FieldValueNotSupported",
    "enum": "FieldValueNotSupported",
    "literal_error": "FieldValueNotSupported",
    "duplicate_key": "FieldValueDuplicate",
    "duplicate_item": "FieldValueDuplicate",
    "string_too_long": "FieldValueTooLong",
    "too_long": "FieldValueTooMany",
}


@dataclass(frozen=True)
class FieldError:
    """One refused field: `path` as Kubernetes writes it ("spec.data[0].site")."""

    path: str
    message: str
    cause: str = "FieldValueInvalid"
    """The metav1.StatusCause type, for a webhook's response."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def format_errors(errors: Sequence[FieldError]) -> str:
    """All errors in one message, as an admission response or an Event shows them."""
    return "; ".join(str(error) for error in errors)


def validate_as(
    model: type[ModelT], raw: Mapping[str, Any], prefix: str = ""
) -> ModelT | list[FieldError]:
    """`raw` as a `model`, or every field error in it. `prefix` is prepended to the paths, e.g.
    "spec" when `raw` is only the spec of an object."""
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        return [
            field_error for detail in error.errors() for field_error in _explain(detail, prefix)
        ]


def validate_resource(raw: Mapping[str, Any]) -> Resource | list[FieldError]:
    """A whole MLJob, Placement, MemberCluster, Tenant or MemberWork, chosen by its kind."""
    if raw.get("apiVersion") != API_VERSION:
        return [FieldError("apiVersion", f"must be {API_VERSION}", "FieldValueNotSupported")]
    model = RESOURCE_MODELS.get(str(raw.get("kind")))
    if model is None:
        kinds = ", ".join(RESOURCE_MODELS)
        return [FieldError("kind", f"must be one of {kinds}", "FieldValueNotSupported")]
    return validate_as(model, raw)


_KEY = "[key]"  # the last part of a map key's error location
_QUOTED_LENGTH = 64
# The characters that base.PLAIN_TEXT refuses besides Unicode's controls (category Cc): a message
# names them by code point, since printed they would be invisible or act.
_REORDERING = frozenset("\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _hidden_character(text: str) -> str:
    """Where `text` holds its first control or reordering character: "; found U+001B at index 3"."""
    for index, character in enumerate(text):
        if unicodedata.category(character) == "Cc" or character in _REORDERING:
            return f"; found U+{ord(character):04X} at index {index}"
    return ""


def _quoted(key: object) -> str:
    """A map key for a message: escaped by repr, and cut short."""
    text = str(key)
    return repr(text) if len(text) <= _QUOTED_LENGTH else repr(text[:_QUOTED_LENGTH]) + "..."


def _pattern_message(detail: ErrorDetails, key: bool) -> str:
    """What a value that does not match its pattern should have been, in words, and where it
    holds an invisible character; the pydantic message (the pattern) when the pattern has no
    words. A map's key is named, since the path stops at the map."""
    pattern = str((detail.get("ctx") or {}).get("pattern", ""))
    meaning = PATTERN_MEANINGS.get(pattern)
    value = detail.get("input")
    text = value if isinstance(value, str) else ""
    if meaning is None:
        said = detail["msg"]
    elif key:
        said = f"every key must be {meaning}"
    else:
        said = f"must be {meaning}"
    return f"{said}; key {_quoted(text)} is not" if key else said + _hidden_character(text)


def _explain(detail: ErrorDetails, prefix: str) -> list[FieldError]:
    loc = detail["loc"]
    key = bool(loc) and loc[-1] == _KEY
    # pydantic places a map key's error at (..., map, key, "[key]"); Kubernetes at the map.
    path = _join_path(prefix, loc[:-2] if key else loc)
    kind = detail["type"]
    if kind == CROSS_FIELD_ERROR:
        violations: list[tuple[str, str]] = (detail.get("ctx") or {})["violations"]
        return [
            FieldError(_join_path(path, field.split(".")), message) for field, message in violations
        ]
    if kind == "missing":
        return [FieldError(path, "Required value", _CAUSES[kind])]
    if kind == "extra_forbidden":
        return [FieldError(path, "unknown field", _CAUSES[kind])]
    if kind == "string_pattern_mismatch":
        return [FieldError(path, _pattern_message(detail, key))]
    message = f"key {_quoted(loc[-2])}: {detail['msg']}" if key else detail["msg"]
    return [FieldError(path, message, _CAUSES.get(kind, "FieldValueInvalid"))]


def _join_path(prefix: str, loc: Sequence[int | str]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path
