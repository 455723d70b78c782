"""What the scheduling cycle needs of wherever the objects live: the hub's API server (Hub) or
the embedded demo's in-process store. Both hand out the same validated models."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from continuum.operator.api import MLJob, Placement, PlacementSpec, Resource, validate_resource
from continuum.operator.api.validation import FieldError

R = TypeVar("R", bound=Resource)


@dataclass(frozen=True)
class Listed(Generic[R]):
    valid: list[R]
    # (namespace, name) -> what is wrong, for objects the store holds but the models refuse
    invalid: Mapping[tuple[str, str], list[FieldError]]
    # (namespace, name) -> the object as stored, for writing status back at its resourceVersion
    raw: Mapping[tuple[str, str], dict[str, Any]]


def identity(body: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, name); the namespace is "" for cluster-scoped objects."""
    metadata = body.get("metadata", {})
    return (metadata.get("namespace") or "", metadata.get("name") or "")


def listed_from(kind: type[R], bodies: Iterable[dict[str, Any]]) -> Listed[R]:
    """Stored objects sorted into the models that validate and the errors of those that don't
    (the hub mirror keeps its own lists up to date instead: hub_mirror._Listing)."""
    valid: list[R] = []
    invalid: dict[tuple[str, str], list[FieldError]] = {}
    raw: dict[tuple[str, str], dict[str, Any]] = {}
    for body in bodies:
        key = identity(body)
        raw[key] = body
        result = validate_resource(body)
        if isinstance(result, kind):
            valid.append(result)
        elif isinstance(result, list):
            invalid[key] = result
    return Listed(valid, invalid, raw)


class ObjectStore(Protocol):
    def list(self, kind: type[R]) -> Listed[R]: ...

    def replace_status(self, kind: type[Resource], body: dict[str, Any]) -> bool:
        """Writes `body["status"]` if the object is still at `body`'s resourceVersion."""
        ...

    def write_placement(self, job: MLJob, spec: PlacementSpec, existing: Placement | None) -> bool:
        """False when it was not written: a conflict, or the job is gone."""
        ...

    def config_map_data(self, namespace: str, name: str) -> dict[str, str]: ...


class EventSink(Protocol):
    def record_event(
        self, involved: Mapping[str, Any], event_type: str, reason: str, message: str
    ) -> None: ...
