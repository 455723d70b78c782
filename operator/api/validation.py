"""Validation of raw objects, as the API server hands them over, into models or field errors.

Pure and shared: the admission webhook and the reconcile call the same function, so an install
without the webhook still refuses the same specs, with the same messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from continuum.operator.api.base import CROSS_FIELD_ERROR
from continuum.operator.api.common import API_VERSION, Resource
from continuum.operator.api.membercluster import MemberCluster
from continuum.operator.api.mljob import MLJob
from continuum.operator.api.placement import Placement
from continuum.operator.api.tenant import Tenant

ModelT = TypeVar("ModelT", bound=BaseModel)

RESOURCE_MODELS: dict[str, type[Resource]] = {
    model.__name__: model for model in (MLJob, Placement, MemberCluster, Tenant)
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
    """A whole MLJob, Placement, MemberCluster or Tenant, chosen by its kind."""
    if raw.get("apiVersion") != API_VERSION:
        return [FieldError("apiVersion", f"must be {API_VERSION}", "FieldValueNotSupported")]
    model = RESOURCE_MODELS.get(str(raw.get("kind")))
    if model is None:
        kinds = ", ".join(RESOURCE_MODELS)
        return [FieldError("kind", f"must be one of {kinds}", "FieldValueNotSupported")]
    return validate_as(model, raw)


def _explain(detail: ErrorDetails, prefix: str) -> list[FieldError]:
    path = _join_path(prefix, detail["loc"])
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
    return [FieldError(path, detail["msg"], _CAUSES.get(kind, "FieldValueInvalid"))]


def _join_path(prefix: str, loc: Sequence[int | str]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path
