"""Objects the operator creates in the hub, built from the API models. Pure."""

from __future__ import annotations

from typing import Any

from continuum.operator.api.common import API_VERSION
from continuum.operator.api.mljob import MLJob
from continuum.operator.api.placement import PlacementSpec
from continuum.operator.api.shard_resources import SHARD_LABELS, job_label_value


def placement_manifest(job: MLJob, spec: PlacementSpec) -> dict[str, Any]:
    """The job's Placement as an object to create: same name and namespace, labelled with the
    job, and owned by it, so that it goes when the job goes."""
    name = job.metadata.name or ""
    return {
        "apiVersion": API_VERSION,
        "kind": "Placement",
        "metadata": {
            "name": name,
            "namespace": job.metadata.namespace or "",
            "labels": {SHARD_LABELS.job: job_label_value(name)},
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "MLJob",
                    "name": name,
                    "uid": job.metadata.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
