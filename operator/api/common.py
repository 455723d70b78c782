"""Pieces shared by the four resources: metadata, conditions, resource amounts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from continuum.operator.api.base import (
    LABEL_VALUE_OR_EMPTY,
    QUALIFIED_NAME,
    ApiModel,
    KubeTime,
    Rule,
    SpecModel,
    StatusModel,
)
from continuum.operator.api.quantity import Quantity

GROUP: Final = "continuum.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = "continuum.dev/v1alpha1"


class ObjectMeta(BaseModel):
    """The part of metav1.ObjectMeta the operator reads; everything else is kept untouched."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, serialize_by_alias=True, extra="allow"
    )

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    # None rather than empty defaults: writing back `finalizers: []` would remove them.
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    finalizers: list[str] | None = None
    owner_references: list[dict[str, Any]] | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None


class Resource(ApiModel):
    """A whole object as the API server holds it. Fields outside the schema are ignored: the
    server prunes them anyway, and the spec below still refuses unknown fields."""

    model_config = ConfigDict(extra="ignore")

    def to_dict(self) -> dict[str, Any]:
        type_meta = self.model_dump(mode="json", include={"api_version", "kind"})
        return {**type_meta, **super().to_dict()}


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(StatusModel):
    """One aspect of an object's state, in the shape of metav1.Condition."""

    type: str = Field(max_length=316, pattern=QUALIFIED_NAME)
    """The aspect, in CamelCase, e.g. Ready or Reachable."""
    status: ConditionStatus
    reason: str = Field(
        min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
    )
    """Why, in one CamelCase word a program can test."""
    message: str = Field(default="", max_length=32768)
    """Why, in a sentence for people."""
    last_transition_time: KubeTime
    """When status last changed."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The metadata.generation this condition was computed from."""


def upsert_condition(
    conditions: Sequence[Condition],
    condition_type: str,
    status: ConditionStatus,
    reason: str,
    message: str = "",
    *,
    observed_generation: int | None = None,
    now: datetime | None = None,
) -> list[Condition]:
    """The conditions with one type set, as meta.SetStatusCondition does it: the transition time
    moves only when the status changes, so that it tells how long the object has been so."""
    previous = next((c for c in conditions if c.type == condition_type), None)
    if previous is not None and previous.status == status:
        transition = previous.last_transition_time
    else:
        transition = now or datetime.now(UTC)
    updated = Condition(
        type=condition_type,
        status=status,
        reason=reason,
        message=message,
        observed_generation=observed_generation,
        last_transition_time=transition,
    )
    if previous is None:
        return [*conditions, updated]
    return [updated if c.type == condition_type else c for c in conditions]


class ResourceAmounts(SpecModel):
    """Amounts of the resources the scheduler accounts for; an absent one is not constrained."""

    cpu: Quantity | None = None
    """Cores, e.g. "500m" or "8"."""
    memory: Quantity | None = None
    """Bytes, e.g. "512Mi" or "64Gi"."""
    gpu: Quantity | None = None
    """Devices; may be fractional, e.g. "0.5"."""


class LocalObjectReference(SpecModel):
    """An object in the same namespace, by name."""

    name: str = Field(min_length=1, max_length=253)


class Tier(StrEnum):
    EDGE = "Edge"
    CLOUD = "Cloud"


class SelectorOperator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


LabelValue = Annotated[str, StringConstraints(max_length=63, pattern=LABEL_VALUE_OR_EMPTY)]
"""A label's value, as Kubernetes allows it: empty, or up to 63 letters, digits, '-', '_', '.'."""
LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=317, pattern=QUALIFIED_NAME)]
"""A label's key: a name with an optional DNS-subdomain prefix, e.g. topology.kubernetes.io/zone."""
Labels = dict[LabelKey, LabelValue]


class LabelSelectorRequirement(SpecModel):
    """One term of a label selector, as in metav1.LabelSelectorRequirement."""

    key: LabelKey
    operator: SelectorOperator
    values: list[LabelValue] = Field(default_factory=list, max_length=64)
    """Required for In and NotIn; must be empty for Exists and DoesNotExist."""

    rules = (
        Rule(
            "values",
            "values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
            lambda term: (
                bool(term.values)
                == (term.operator in (SelectorOperator.IN, SelectorOperator.NOT_IN))
            ),
            cel="(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)",
        ),
    )

    def matches(self, labels: Mapping[str, str]) -> bool:
        match self.operator:
            case SelectorOperator.IN:
                return labels.get(self.key) in self.values
            case SelectorOperator.NOT_IN:
                return labels.get(self.key) not in self.values
            case SelectorOperator.EXISTS:
                return self.key in labels
            case SelectorOperator.DOES_NOT_EXIST:
                return self.key not in labels


class LabelSelector(SpecModel):
    """Selects objects by their labels, as metav1.LabelSelector; all terms must match."""

    match_labels: Labels = Field(default_factory=dict, max_length=64)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list, max_length=32)

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(key) == value for key, value in self.match_labels.items()) and all(
            term.matches(labels) for term in self.match_expressions
        )


class TaintEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Taint(SpecModel):
    """Keeps shards off a member cluster unless they tolerate it, as a node taint does for pods."""

    key: LabelKey
    value: LabelValue | None = None
    effect: TaintEffect


class TolerationOperator(StrEnum):
    EQUAL = "Equal"
    EXISTS = "Exists"


class Toleration(SpecModel):
    """Lets a job's shards onto member clusters with a matching taint, as a pod toleration does."""

    key: str | None = Field(default=None, max_length=317, pattern=QUALIFIED_NAME)
    """The taint key; empty with operator Exists tolerates every taint."""
    operator: TolerationOperator = TolerationOperator.EQUAL
    value: LabelValue | None = None
    effect: TaintEffect | None = None
    """The effect to tolerate; empty tolerates all effects."""

    rules = (
        Rule(
            "key",
            "key is required when operator is Equal",
            lambda toleration: (
                toleration.operator != TolerationOperator.EQUAL or bool(toleration.key)
            ),
            cel="self.operator != 'Equal' || has(self.key)",
        ),
        Rule(
            "value",
            "value must be empty when operator is Exists",
            lambda toleration: (
                toleration.operator != TolerationOperator.EXISTS or not toleration.value
            ),
            cel="self.operator != 'Exists' || !has(self.value) || self.value == ''",
        ),
    )

    def tolerates(self, taint: Taint) -> bool:
        if self.effect is not None and self.effect != taint.effect:
            return False
        if self.operator == TolerationOperator.EXISTS:
            return self.key is None or self.key == taint.key
        return self.key == taint.key and (self.value or "") == (taint.value or "")
