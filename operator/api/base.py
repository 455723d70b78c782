"""What every API model shares: camelCase aliases, cross-field rules that become CEL, list kinds.

A cross-field rule is written once, as a `Rule`: the Python check runs in the model's validator (so
the webhook and the reconcile see it), and its CEL twin goes into the CRD (so kube-apiserver refuses
the object at apply time), with the same message and the same field path.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Final, Generic, Self, TypeVar

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

# Patterns are checked twice: by kube-apiserver (Go's RE2) from the CRD, and by pydantic (Rust's
# regex crate) in the webhook and the reconcile. They use only syntax the two read alike: no \s,
# \w or \d (Unicode in Rust, ASCII in RE2), no lookaround, \x{...} for code points; `$` ends the
# text in both, so a trailing newline does not pass as it would with Python's re.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Site and region names may end up as label values, so they follow the label-value syntax.
LABEL_VALUE = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
LABEL_VALUE_OR_EMPTY = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)

# Free text that reaches a member cluster (manifests, environment variables) or a message must
# read as what it is: control characters (Unicode Cc: C0, DEL, C1) can end a value early (NUL),
# rewrite what a terminal shows (ESC sequences, CR, backspace) or split a log line; the line
# separators and the bidirectional embeddings, overrides and isolates reorder or break what a
# person reads without showing themselves.
_CONTROL = r"\x00-\x1F\x7F-\x9F"
_REORDERING = r"\x{2028}\x{2029}\x{202A}-\x{202E}\x{2066}-\x{2069}"
PLAIN_TEXT = rf"^[^{_CONTROL}{_REORDERING}]*$"
# A command line may span lines and be indented (a YAML block scalar, a shell script): tab (09)
# and newline (0A) pass; CR, which only hides the end of a line, and the rest do not.
COMMAND_LINE = rf"^[^\x00-\x08\x0B-\x1F\x7F-\x9F{_REORDERING}]*$"
# A URI has a scheme and no raw spaces (RFC 3986 writes them %20).
URI = rf"^[A-Za-z][A-Za-z0-9+.-]*://[^ {_CONTROL}{_REORDERING}]+$"
# The characters of the distribution reference grammar (name, :tag, @algorithm:digest, a
# [IPv6] registry host), in any order: strict on the alphabet, lenient on the structure, which
# the container runtime checks when it pulls.
IMAGE_REFERENCE = r"^[A-Za-z0-9\[][-A-Za-z0-9._:/@+\[\]]*$"

_LABEL_CHARACTERS = "letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
_HIDDEN = (
    "control characters (U+0000-U+001F, U+007F-U+009F) or the invisible characters that break "
    "or reorder text (U+2028, U+2029, U+202A-U+202E, U+2066-U+2069)"
)
PATTERN_MEANINGS: Final[Mapping[str, str]] = {
    DNS_SUBDOMAIN: "a DNS subdomain: lowercase letters, digits, '-' and '.', each part starting "
    "and ending with a letter or digit",
    DNS_LABEL: "a DNS label: lowercase letters, digits and '-', starting and ending with a letter "
    "or digit",
    LABEL_VALUE: f"a label value: {_LABEL_CHARACTERS}",
    LABEL_VALUE_OR_EMPTY: f"empty or a label value: {_LABEL_CHARACTERS}",
    QUALIFIED_NAME: "a label key: an optional DNS subdomain and '/', then a name of "
    f"{_LABEL_CHARACTERS}",
    PLAIN_TEXT: f"text without {_HIDDEN}",
    COMMAND_LINE: f"a command line: tab and newline may appear, but no other {_HIDDEN}",
    URI: f"a URI such as s3://bucket/path: a scheme, '://', and no spaces, {_HIDDEN}",
    IMAGE_REFERENCE: "a container image reference such as rayproject/ray:2.50.0 or "
    "registry.example.com:5000/team/image@sha256:<digest>: letters, digits and . _ - / : @ + [ ], "
    "starting with a letter, a digit or '[' (no whitespace or control characters)",
}
"""What a value matching each pattern is, for error messages ("must be <meaning>")."""


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
