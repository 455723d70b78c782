"""The key of an MLJob, one type wherever the operator keys by job."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from continuum.operator.api.mljob import MLJob
from continuum.operator.api.placement import Placement


class JobKey(NamedTuple):
    """An MLJob's namespace and name. Its Placement has the same key (same name, same
    namespace), and so do the job's shard resources, by their labels. Its text,
    `namespace/name`, is the scheduler's Job.key."""

    namespace: str
    name: str

    @classmethod
    def of(cls, job: MLJob) -> JobKey:
        return cls(job.metadata.namespace or "", job.metadata.name or "")

    @classmethod
    def of_placement(cls, placement: Placement) -> JobKey:
        return cls(placement.metadata.namespace or "", placement.spec.job_ref.name)

    @classmethod
    def of_body(cls, body: Mapping[str, Any]) -> JobKey:
        """The key of an object as the API server hands it over (a dict)."""
        metadata = body.get("metadata") or {}
        return cls(metadata.get("namespace") or "", metadata.get("name") or "")

    @classmethod
    def parse(cls, text: str) -> JobKey:
        """The key from its text, `namespace/name` (the scheduler's job key)."""
        namespace, _, name = text.partition("/")
        return cls(namespace, name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"
