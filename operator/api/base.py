"""What every API model shares: camelCase aliases, cross-field rules that become CEL, list kinds.

A cross-field rule is written once, as a `Rule`: the Python check runs in the model's validator (so
the webhook and the reconcile see it), and its CEL twin goes into the CRD (so kube-apiserver refuses
the object at apply time), with the same message and the same field path.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Generic, Self, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

CROSS_FIELD_ERROR = "cross_field"

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Site and region names may end up as label values, so they follow the label-value syntax.
LABEL_VALUE = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


M = TypeVar("M")


@dataclass(frozen=True)
class Rule(Generic[M]):
    """A rule across fields of one model, checked in Python and, when `cel` is given, by CEL.

    `field` is the path of the offending field relative to the model, in camelCase as in the
    manifest ("minAvailable", "objectives.latencyP99Ms"); errors are reported there.
    """

    field: str
    message: str
    holds: Callable[[M], bool]
    cel: str | None = None

    def as_cel(self) -> dict[str, str]:
        assert self.cel is not None
        return {
            "rule": self.cel,
            "message": self.message,
            "fieldPath": "." + self.field,
            "reason": "FieldValueInvalid",
        }


def immutable(what: str) -> dict[str, Any]:
    """A transition rule: the field must not change once set. Only kube-apiserver checks it."""
    return {
        "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": f"{what} is immutable"}]
    }


def _add_rule_schemas(schema: dict[str, Any], model: type[Any]) -> None:
    rules: Sequence[Rule[Any]] = getattr(model, "rules", ())
    cel = [rule.as_cel() for rule in rules if rule.cel is not None]
    if cel:
        schema["x-kubernetes-validations"] = cel


class ApiModel(BaseModel):
    """Base of every model: camelCase in manifests, snake_case in Python, docstrings in the CRD."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        use_attribute_docstrings=True,
        json_schema_extra=_add_rule_schemas,
        extra="forbid",
    )

    rules: ClassVar[Sequence[Rule[Any]]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        broken = [(rule.field, rule.message) for rule in self.rules if not rule.holds(self)]
        if broken:
            raise PydanticCustomError(
                CROSS_FIELD_ERROR,
                "{summary}",
                {"summary": "; ".join(f"{f}: {m}" for f, m in broken), "violations": broken},
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """The manifest form: camelCase, JSON types, only the fields that were set and not None.

        Defaults left unset stay out: the CRD's defaults are the models', so the API server fills
        in the same values, and a partial status sent as a merge patch does not wipe the lists
        it does not mention.
        """
        return self.model_dump(mode="json", exclude_unset=True, exclude_none=True)


class SpecModel(ApiModel):
    """What users write: an unknown field is an error naming it, so a typo cannot pass silently."""


class StatusModel(ApiModel):
    """What the operator writes. Unknown fields are ignored, for readers older than the writer."""

    model_config = ConfigDict(extra="ignore")


def _format_time(moment: datetime) -> str:
    # metav1.Time's own form: UTC, whole seconds.
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


KubeTime = Annotated[
    AwareDatetime,
    PlainSerializer(_format_time, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A timestamp as Kubernetes writes it (RFC 3339, UTC, seconds); naive datetimes are refused."""

FreeForm = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""An object whose content belongs to someone else (Ray's runtime_env): kept as is, unchecked."""


def _duplicates(keys: Sequence[Hashable]) -> list[Hashable]:
    seen: set[Hashable] = set()
    repeated: list[Hashable] = []
    for key in keys:
        if key in seen and key not in repeated:
            repeated.append(key)
        seen.add(key)
    return repeated


@dataclass(frozen=True)
class ListMap:
    """Annotates a list of objects identified by `keys`: duplicates are refused, and the CRD lets
    server-side apply merge items by key (x-kubernetes-list-type: map)."""

    keys: tuple[str, ...]

    def __init__(self, *keys: str) -> None:
        object.__setattr__(self, "keys", keys)

    def _check(self, items: list[Any]) -> list[Any]:
        identities = ["/".join(str(getattr(item, key)) for key in self.keys) for item in items]
        repeated = _duplicates(identities)
        if repeated:
            names = ", ".join(str(identity) for identity in repeated)
            raise PydanticCustomError(
                "duplicate_key",
                "{key} must be unique within the list; repeated: {names}",
                {"key": "/".join(self.keys), "names": names},
            )
        return items

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["x-kubernetes-list-type"] = "map"
        json_schema["x-kubernetes-list-map-keys"] = list(self.keys)
        return json_schema


@dataclass(frozen=True)
class ListSet:
    """Annotates a list of scalars that is a set: duplicates are refused (list-type set)."""

    def _check(self, items: list[Any]) -> list[Any]:
        repeated = _duplicates(items)
        if repeated:
            raise PydanticCustomError(
                "duplicate_item",
                "items must be unique; repeated: {names}",
                {"names": ", ".join(str(item) for item in repeated)},
            )
        return items

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["x-kubernetes-list-type"] = "set"
        return json_schema
