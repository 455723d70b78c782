"""Strings users write that reach a member cluster or a message, and whether admission takes them.

One table for both checkers: the unit tests run it through the models (pydantic, Rust's regex),
the integration test through kube-apiserver (the generated CRD, Go's RE2) and the models again,
so the two engines are shown to agree on every case.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

DIGEST = "sha256:" + "0123456789abcdef" * 4


def _mljob(mode: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "mode": mode,
        "tenant": "team-a",
        "shards": {"count": 1, "resources": {"cpu": "1", "memory": "1Gi"}},
        "ray": {"image": "rayproject/ray:2.50.0", "entrypoint": "python train.py"},
        "data": [{"name": "cam-a", "site": "edge-a", "residency": "Site"}],
        "placement": {
            "clusterSelector": {
                "matchLabels": {"pool": "gpu"},
                "matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}],
            },
            "tolerations": [{"key": "flaky", "operator": "Equal", "value": "yes"}],
        },
        "faultTolerance": {"checkpoint": {"uri": "s3://checkpoints/job"}},
    }
    if mode == "Inference":
        spec["ray"]["entrypoint"] = "detector.serve:app"
        spec["objectives"] = {"latencyOptOutReason": "offline batch scoring"}
    return {"apiVersion": "continuum.dev/v1alpha1", "kind": "MLJob", "spec": spec}


BASES: dict[str, dict[str, Any]] = {
    "Training": _mljob("Training"),
    "Inference": _mljob("Inference"),
    "MemberCluster": {
        "apiVersion": "continuum.dev/v1alpha1",
        "kind": "MemberCluster",
        "spec": {
            "tier": "Edge",
            "site": "edge-a",
            "region": "eu-west",
            "kubeconfigSecretRef": {"name": "member-a"},
            "labels": {"pool": "gpu"},
            "taints": [{"key": "flaky", "value": "yes", "effect": "NoSchedule"}],
        },
    },
    "Tenant": {
        "apiVersion": "continuum.dev/v1alpha1",
        "kind": "Tenant",
        "spec": {"weight": 1, "namespaces": ["team-a"]},
    },
}
"""Valid objects; each case changes one string in one of them."""


@dataclass(frozen=True)
class Case:
    base: str
    """A key of BASES."""
    field: str
    """Where the value goes, as Kubernetes writes paths (spec.data[0].name); also the field a
    refusal must name (for a key: the map, as Kubernetes does)."""
    value: str
    refused: bool
    as_key: bool = False
    """The value is a key of the map at `field` (with the value "x"), not the field's value."""

    def manifest(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        manifest = copy.deepcopy(BASES[self.base])
        manifest["metadata"] = {"name": name, **({"namespace": namespace} if namespace else {})}
        *parents, last = _parts(self.field)
        holder: Any = manifest
        for part in parents:
            holder = holder[part]
        if self.as_key:
            holder[last][self.value] = "x"
        else:
            holder[last] = self.value
        return manifest

    def __str__(self) -> str:
        verdict = "refused" if self.refused else "taken"
        where = f"key of {self.field}" if self.as_key else self.field
        return f"{self.base}-{where}={self.value!r}-{verdict}"


def _parts(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        parts.append(int(index) if index else name)
    return parts


def _cases(base: str, field: str, taken: list[str], refused: list[str]) -> list[Case]:
    return [Case(base, field, value, False) for value in taken] + [
        Case(base, field, value, True) for value in refused
    ]


# What free text refuses everywhere: C0 controls, DEL, C1 controls, the line and paragraph
# separators, and the bidirectional embeddings, overrides and isolates.
HIDDEN = ["\x00", "\x1b[31m", "\r", "\x08", "\x7f", "\x85", "\u2028", "\u202e", "\u2066"]

CASES: tuple[Case, ...] = (
    *_cases(
        "Training",
        "spec.ray.image",
        taken=[
            "rayproject/ray:2.9.0-py311",
            f"registry.example.com:5000/team/img@{DIGEST}",
            f"ghcr.io/org/ray:2.50.0-gpu@{DIGEST}",
            "localhost/x",
            "[::1]:5000/ray:latest",
            "ray",
        ],
        refused=[
            "ray x",
            " ray",
            "ray ",
            "ray\t",
            "ray\n",
            "ray\u00a0x",
            "r\u0430y",  # a Cyrillic a
            "ray;id",
            "$(id)",
            "-ray",
            *(f"ray{hidden}" for hidden in HIDDEN),
        ],
    ),
    *_cases(
        "Training",
        "spec.ray.entrypoint",
        taken=[
            "python train.py --epochs 3",
            "bash -c 'set -e\n\tpython prepare.py\n\tpython train.py'\n",
            "python entraîner.py",
        ],
        refused=[f"python train.py{hidden}" for hidden in HIDDEN],
    ),
    *_cases(
        "Inference",
        "spec.ray.entrypoint",
        taken=["detector.serve:app", "app.deployment", "_private.app:build"],
        refused=["python serve.py", "detector.serve:app\n", "app", "detector:", "1app:x"],
    ),
    *_cases(
        "Training", "spec.data[0].name", taken=["cam_a.1"], refused=["cam\n", "cam a", "cam\x1b"]
    ),
    *_cases("Training", "spec.data[0].site", taken=["Edge.A"], refused=["edge-a\n", "edge\u202e"]),
    *_cases(
        "Training",
        "spec.faultTolerance.checkpoint.uri",
        taken=["s3://bucket/job", "file:///tmp/ck", "gs://b/p?x=1#f", "s3://bucket/données"],
        refused=["s3://bucket/my job", "bucket/job", "s3://", *(f"s3://b{h}" for h in HIDDEN)],
    ),
    *_cases(
        "Inference",
        "spec.objectives.latencyOptOutReason",
        taken=["offline batch scoring; no user waits", "nächtliche Auswertung"],
        refused=["batch\nscoring", "batch\tscoring", *(f"batch{h}" for h in HIDDEN)],
    ),
    *_cases(
        "Training",
        "spec.placement.clusterSelector.matchLabels.pool",
        taken=["", "gpu.A_1"],
        refused=["gpu a", "gpu\n", "-gpu", "gpu\x1b"],
    ),
    *_cases(
        "Training",
        "spec.placement.clusterSelector.matchExpressions[0].values[0]",
        taken=["zone-a"],
        refused=["zone a", "zone\n"],
    ),
    *_cases(
        "Training", "spec.placement.tolerations[0].value", taken=["no"], refused=["y es", "yes\r"]
    ),
    Case(
        "Training",
        "spec.placement.clusterSelector.matchLabels",
        "topology.k8s.io/zone",
        False,
        True,
    ),
    Case("Training", "spec.placement.clusterSelector.matchLabels", "pool a", True, True),
    Case("Training", "spec.placement.clusterSelector.matchLabels", "pool\n", True, True),
    Case("Training", "spec.placement.clusterSelector.matchLabels", "Bad.Prefix/pool", True, True),
    Case("MemberCluster", "spec.labels", "example.com/pool", False, True),
    Case("MemberCluster", "spec.labels", "pool\x1b", True, True),
    Case("MemberCluster", "spec.labels", "", True, True),
    *_cases("MemberCluster", "spec.labels.pool", taken=["", "a-1"], refused=["a b", "a\u2028"]),
    *_cases("MemberCluster", "spec.taints[0].value", taken=[""], refused=["yes\x00", "y/n"]),
    *_cases("MemberCluster", "spec.site", taken=["edge-b"], refused=["edge-b\n", "edge b"]),
    *_cases("MemberCluster", "spec.region", taken=["eu_west.2"], refused=["eu-west\r", ""]),
    *_cases("Tenant", "spec.namespaces[0]", taken=["team-b"], refused=["team-b\n", "Team-B"]),
)
