"""Hypothesis strategies for the bad-input campaign, and the builders that turn what they draw
into MLJobs, Tenants, MemberClusters and kubeconfig Secrets.

A strategy draws a *case*: a template and at most one mutation (an odd value, a field taken
away or one added), or, for a member, the form of its hostile kubeconfig. Most mutations keep
the object valid, only odd (extreme numbers, unicode, control characters, long strings), so
that most objects are accepted and exercise the operator rather than the schema. A builder
makes the object from the case and from what only the run knows (names, namespaces, ports,
files), and plants a fresh marker (`Markers`) in every field of a kubeconfig that comes from a
Secret, remembering where: none may ever show outside the Secret.

No kubeconfig built here names a host that needs a DNS lookup: hosts are 127.0.0.1, a testbed
member's address, or a marker with port 99999, which the client refuses to parse.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml
from hypothesis import strategies as st

Json = Any

API_VERSION: Final = "continuum.dev/v1alpha1"
CAMPAIGN_LABEL: Final = "continuum.dev/campaign"

# Reachable=False reasons the contract allows, and the groups the checks ask for.
REFUSED: Final = "KubeconfigRefused"
INVALID: Final = "KubeconfigInvalid"
MISSING: Final = "KubeconfigMissing"
NOT_FOUND: Final = "SecretNotFound"
NAMESPACE_NOT_ALLOWED: Final = "SecretNamespaceNotAllowed"
NETWORK_REASONS: Final = frozenset(
    {"ConnectionFailed", "Unauthorized", "Forbidden", "APIError", "Timeout"}
)
ALL_REASONS: Final = NETWORK_REASONS | {REFUSED, INVALID, MISSING, NOT_FOUND, NAMESPACE_NOT_ALLOWED}

MARKER_PATTERN: Final = re.compile(r"cmk-[0-9a-f]{16}")


# --- markers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planted:
    where: str
    """The member and the field, e.g. 'member c1a2b3-mc-7: users[0].user.token'."""
    may_be_sent: bool
    """Sent to the server the kubeconfig names when it is used as it should be (a token, a
    path on the server): it may reach that server, and only that one."""


class Markers:
    """Unique markers, `cmk-` and 16 hex digits (a valid DNS label, path segment and token):
    the run's id, a counter, and 00."""

    def __init__(self, run_id: str) -> None:
        assert re.fullmatch(r"[0-9a-f]{6}", run_id), run_id
        self.run_id = run_id
        self.planted: dict[str, Planted] = {}
        self._index: dict[str, dict[str, str]] = {}
        self._indexed = 0

    def new(self, where: str, *, may_be_sent: bool = False) -> str:
        # The counter in the middle: inside base64, a marker's last two characters may share
        # their encoding with what follows it, and its first two with what precedes it.
        marker = f"cmk-{self.run_id}{len(self.planted):08x}00"
        self.planted[marker] = Planted(where, may_be_sent)
        return marker

    def found_in(self, text: str) -> dict[str, list[str]]:
        """Marker -> the encodings of it found in `text` (plain, or inside base64)."""
        hits: dict[str, list[str]] = {}
        for marker in set(MARKER_PATTERN.findall(text)) & self.planted.keys():
            hits.setdefault(marker, []).append("plain")
        # Every marker's base64 form at one alignment starts with the same text (the run's
        # id is in it): look for that, then at what follows.
        for prefix, forms in self._base64_index().items():
            size = len(next(iter(forms)))
            for found in re.finditer(re.escape(prefix), text):
                marker = forms.get(text[found.start() : found.start() + size])
                if marker is not None and "base64" not in hits.get(marker, []):
                    hits.setdefault(marker, []).append("base64")
        return hits

    def _base64_index(self) -> dict[str, dict[str, str]]:
        if self.planted and self._indexed != len(self.planted):
            self._index = {}
            for offset in range(3):
                forms = {base64_forms(marker)[offset]: marker for marker in self.planted}
                assert len(forms) == len(self.planted), "two markers share a base64 form"
                self._index[_common_prefix(list(forms))] = forms
            self._indexed = len(self.planted)
        return self._index


def _common_prefix(texts: Sequence[str]) -> str:
    shortest = min(texts, key=len)
    for index, char in enumerate(shortest):
        if any(text[index] != char for text in texts):
            return shortest[:index]
    return shortest


def base64_forms(marker: str) -> list[str]:
    """The base64 text that `marker` becomes inside any base64 string, at each of the three
    alignments: the part of the encoding that depends on the marker's bytes alone."""
    forms = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + marker.encode()).decode()
        start = 4 if offset else 0
        usable = (offset + len(marker)) // 3 * 4  # full groups only
        forms.append(encoded[start:usable])
    return forms


# --- odd values ----------------------------------------------------------------------------

# Unicode and control characters; no lone surrogates, which no JSON encoder sends as text.
TEXT: Final = st.characters(codec="utf-8")
NAN_LIKE: Final = ["NaN", "nan", "Infinity", "-Infinity", "inf", "1e308", "1e309", "-0", "0x10"]
HUGE_INTS: Final = [2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63), -1, 0]
EXTREME_FLOATS: Final = [1e308, -1e308, 5e-324, -5e-324, 1.7976931348623157e308, 0.1, -0.0]


def long_text(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    """A long string quickly: a short drawn piece repeated to a drawn length."""
    return st.builds(
        lambda piece, size: (piece * (size // len(piece) + 1))[:size],
        st.text(TEXT, min_size=1, max_size=12),
        st.integers(min_size, max_size),
    )


def odd_text(max_size: int = 40) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(TEXT, max_size=max_size),
        st.sampled_from(["", " ", "\x00", "\n", "\u202e", "😀", "${HOME}", "$(id)", "'; --"]),
    )


JSON_LEAVES: Final = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    odd_text(20),
)


def json_trees(max_leaves: int = 8) -> st.SearchStrategy[Json]:
    return st.recursive(
        JSON_LEAVES,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.text(TEXT, max_size=10), children, max_size=4),
        ),
        max_leaves=max_leaves,
    )


def odd_values() -> st.SearchStrategy[Json]:
    """A value of any odd type, for any field."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from(HUGE_INTS),
        st.sampled_from(EXTREME_FLOATS),
        st.sampled_from(NAN_LIKE),
        odd_text(),
        long_text(300, 3000),
        st.lists(JSON_LEAVES, max_size=3),
        st.dictionaries(st.text(TEXT, max_size=8), JSON_LEAVES, max_size=3),
    )


VALID_QUANTITIES: Final = [
    "0",
    "1m",
    "1n",
    "0.000000001",
    "1e-3",
    "1E3",
    "+1",
    "1.5",
    "1Ki",
    "8Ei",
    "2e0",
    "999999999999",
    "9223372036854775807",
    0,
    3,
    10**18,
]
BAD_QUANTITIES: Final = [
    "-1",
    "1.2.3",
    "Ki",
    ".",
    "+",
    "m",
    "9223372036854775808",
    "1e2147483648",
    "NaN",
    "Infinity",
    " 1",
    "1 ",
    "1ki",
    "0x10",
    "١",
    -1,
    1e308,
    "1e308",
]


def quantities(valid: bool) -> st.SearchStrategy[Json]:
    return st.sampled_from(VALID_QUANTITIES if valid else BAD_QUANTITIES)


def label_values(valid: bool) -> st.SearchStrategy[str]:
    if valid:
        return st.one_of(
            st.from_regex(r"\A[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?\Z"),
            st.just("a" * 63),
        )
    return st.one_of(
        st.sampled_from(["", "-a", "a-", "a b", "é", "a" * 64, "a/b"]), st.text(TEXT, max_size=20)
    )


def dns_labels(valid: bool) -> st.SearchStrategy[str]:
    if valid:
        return st.one_of(
            st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z"), st.just("a" * 63)
        )
    return st.sampled_from(["", "UPPER", "a_b", "-a", "a-", "a" * 64, "é", "a.b"])


# --- mutations -----------------------------------------------------------------------------

FieldPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Mutation:
    """At most one change to a valid template: set a field, take it away, or add an unknown
    one. `intent` says what it was drawn as: 'edge' (valid but odd), 'bad', 'odd-type',
    'missing' or 'unknown-field'."""

    action: str
    path: FieldPath
    value: Json = None
    intent: str = "edge"

    def describe(self) -> str:
        where = ".".join(str(step) for step in self.path)
        if self.action == "delete":
            return f"{self.intent}: without {where}"
        shown = json.dumps(self.value, ensure_ascii=True)
        shown = shown if len(shown) <= 60 else f"{shown[:57]}...({len(shown)} chars)"
        return f"{self.intent}: {where}={shown}"

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        changed = copy.deepcopy(obj)
        parent: Any = changed
        for step in self.path[:-1]:
            parent = parent.setdefault(step, {}) if isinstance(parent, dict) else parent[step]
        last = self.path[-1]
        if self.action == "delete":
            if isinstance(parent, dict):
                parent.pop(last, None)
        else:
            parent[last] = self.value
        return changed


# A field: its path in the template, and strategies for valid-but-odd and for bad values.
FieldTable = dict[FieldPath, tuple[st.SearchStrategy[Json], st.SearchStrategy[Json]]]

INTENTS: Final = ["none", "bad", "odd-type", "missing", "unknown-field", *["edge"] * 7]
MEMBER_INTENTS: Final = [
    *["none"] * 8,
    "bad",
    "odd-type",
    "missing",
    "unknown-field",
    *["edge"] * 4,
    "none",
]


@st.composite
def mutations(
    draw: st.DrawFn,
    fields: FieldTable,
    required: Sequence[FieldPath],
    optional: Sequence[FieldPath],
    containers: Sequence[FieldPath],
    intents: Sequence[str] = INTENTS,
) -> Mutation | None:
    intent = draw(st.sampled_from(intents))
    if intent == "none":
        return None
    if intent == "missing":
        path = draw(st.sampled_from([*required, *optional]))
        return Mutation("delete", path, intent="missing" if path in required else "edge")
    if intent == "unknown-field":
        container = draw(st.sampled_from(containers))
        name = draw(st.from_regex(r"\A[a-z][A-Za-z0-9]{0,20}\Z"))
        return Mutation("set", (*container, f"x{name}"), draw(JSON_LEAVES), "unknown-field")
    path = draw(st.sampled_from(sorted(fields, key=str)))
    edge, bad = fields[path]
    value = draw({"edge": edge, "bad": bad, "odd-type": odd_values()}[intent])
    return Mutation("set", path, value, intent)


# --- names ---------------------------------------------------------------------------------

# Hypothesis tries the first entry of a list first, and favours the entries near the ends:
# valid shapes there, the odd ones in the middle.
NAME_SHAPES: Final = [
    *["plain"] * 10,
    "too-long",
    "upper",
    "unicode",
    "trailing-dash",
    "empty",
    "control",
    "long-253",
    "long-dotted",
    "dots",
    *["plain"] * 20,
]
# A member carries a hostile kubeconfig: its name and spec stay valid more often, so that the
# kubeconfig, not the schema, decides what becomes of it.
MEMBER_NAME_SHAPES: Final = [
    *["plain"] * 10,
    "too-long",
    "upper",
    "long-253",
    "dots",
    *["plain"] * 10,
]


def shaped_name(shape: str, base: str) -> str:
    """`base` (unique in the run) in one of NAME_SHAPES: plain, long-253, long-dotted and dots
    are valid names; the others are not."""
    if shape == "long-253":
        return (base + "-" + "x" * 253)[:252] + "z"
    if shape == "long-dotted":
        return ".".join([base, *["a" * 63] * 3])[:253].rstrip(".-")
    if shape == "dots":
        return f"{base}.a.b-c.0"
    if shape == "too-long":
        return (base + "-" + "x" * 254)[:254]
    if shape == "upper":
        return base.upper()
    if shape == "unicode":
        return f"{base}-é"
    if shape == "trailing-dash":
        return f"{base}-"
    if shape == "empty":
        return ""
    if shape == "control":
        return f"{base}\x07"
    return base


# --- MLJobs --------------------------------------------------------------------------------

SITES: Final = ["delft", "eindhoven", "ghent", "frankfurt"]


def mljob_template(kind: str, tenant: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "mode": "Training",
        "tenant": tenant,
        "priority": 10,
        "shards": {"count": 1, "resources": {"cpu": "100m", "memory": "128Mi"}},
        "ray": {"image": "rayproject/ray:2.50.0", "entrypoint": "python train.py"},
    }
    if kind == "inference":
        spec.update(
            mode="Inference",
            data=[{"name": "cams", "site": "delft", "rateMbps": 20, "residency": "Region"}],
            objectives={"latencyP99Ms": 50},
        )
        spec["ray"]["entrypoint"] = "detector.serve:app"
    elif kind == "federated":
        spec.update(
            mode="Federated",
            data=[
                {"name": f"{site}-hvac", "site": site, "residency": "Site"} for site in SITES[:2]
            ],
        )
        spec["shards"]["count"] = 3
    elif kind == "full":
        spec.update(
            data=[{"name": "logs", "site": "ghent", "rateMbps": 1.5, "residency": "Any"}],
            objectives={"deadlineSeconds": 3600, "maxCostPerHour": 4},
            placement={
                "allowedTiers": ["Edge", "Cloud"],
                "spread": {"domain": "Site", "maxShardsPerDomain": 1},
                "tolerations": [{"key": "flaky", "operator": "Exists"}],
            },
            faultTolerance={
                "checkpoint": {"uri": "s3://ckpt/job", "intervalSeconds": 60},
                "maxRestarts": 5,
                "proactive": {"enabled": True, "riskThreshold": 0.8},
            },
        )
        spec["ray"]["runtimeEnv"] = {"pip": ["torch"]}
        spec["ray"]["workersPerShard"] = 2
    return {"apiVersion": API_VERSION, "kind": "MLJob", "metadata": {}, "spec": spec}


def _ints(
    valid: Sequence[int], bad: Sequence[Json]
) -> tuple[st.SearchStrategy[Json], st.SearchStrategy[Json]]:
    return st.sampled_from(list(valid)), st.sampled_from(list(bad))


MLJOB_FIELDS: Final[FieldTable] = {
    ("metadata", "labels"): (
        st.dictionaries(
            st.from_regex(r"\A[a-z]([-a-z0-9]{0,20}[a-z0-9])?\Z"), label_values(True), max_size=5
        ),
        st.dictionaries(st.text(TEXT, max_size=10), label_values(False), min_size=1, max_size=2),
    ),
    ("metadata", "annotations"): (
        st.dictionaries(
            st.from_regex(r"\A[a-z]{1,10}\Z"),
            st.one_of(odd_text(), long_text(1000, 60_000)),
            max_size=3,
        ),
        st.dictionaries(st.text(TEXT, max_size=10), odd_text(), min_size=1, max_size=2),
    ),
    ("spec", "mode"): (
        st.sampled_from(["Training", "Inference", "Federated"]),
        st.sampled_from(["training", "TRAINING", "", "Batch", " Training"]),
    ),
    ("spec", "tenant"): (
        st.sampled_from(["research", "production", "nobody", "a" * 253, "a.b.c"]),
        st.sampled_from(["", "Research", "a" * 254, "a_b", "é"]),
    ),
    ("spec", "priority"): _ints([0, 1, 999, 1000], [-1, 1001, 2**31, 2**63, 2**64, 1.5]),
    ("spec", "shards", "count"): _ints([1, 2, 3, 8, 64, 256], [0, -1, 257, 2**63, 1.0000001]),
    ("spec", "shards", "minAvailable"): _ints([1], [0, -1, 2, 257]),
    ("spec", "shards", "resources", "cpu"): (quantities(True), quantities(False)),
    ("spec", "shards", "resources", "memory"): (quantities(True), quantities(False)),
    ("spec", "shards", "resources", "gpu"): (quantities(True), quantities(False)),
    ("spec", "ray", "image"): (
        st.one_of(odd_text().filter(bool), long_text(1000, 1024)),
        st.one_of(st.just(""), long_text(1025, 2000)),
    ),
    ("spec", "ray", "entrypoint"): (
        st.one_of(odd_text().filter(bool), long_text(2000, 8192)),
        st.one_of(st.just(""), long_text(8193, 9000)),
    ),
    ("spec", "ray", "runtimeEnv"): (
        st.dictionaries(st.text(TEXT, max_size=10), json_trees(), max_size=4),
        st.one_of(st.text(TEXT, max_size=5), st.lists(JSON_LEAVES, max_size=2)),
    ),
    ("spec", "ray", "workersPerShard"): _ints([0, 1024], [-1, 1025, 2**63]),
    ("spec", "data"): (
        st.lists(
            st.fixed_dictionaries(
                {"name": label_values(True), "residency": st.just("Any")},
                optional={
                    "site": st.sampled_from(SITES),
                    "rateMbps": st.sampled_from([0, 1e-300, 1e308, 1.5]),
                },
            ),
            max_size=64,
            unique_by=lambda source: source["name"],
        ),
        st.one_of(
            st.just([{"name": "a", "residency": "Any"}, {"name": "a", "residency": "Any"}]),
            st.just([{"name": f"s{i}"} for i in range(65)]),
            st.just([{"name": "a", "residency": "Moon"}]),
            st.just([{"name": "a", "residency": "Site"}]),
            st.just([{"name": "a", "rateMbps": -1}]),
            st.builds(lambda name: [{"name": name}], label_values(False)),
        ),
    ),
    ("spec", "objectives"): (
        st.fixed_dictionaries(
            {},
            optional={
                "deadlineSeconds": st.sampled_from([1, 2**62, 2**63 - 1]),
                "maxCostPerHour": st.sampled_from([0, 1e308, 5e-324]),
                "latencyOptOutReason": odd_text().filter(bool),
            },
        ),
        st.sampled_from(
            [
                {"latencyP99Ms": 0},
                {"latencyP99Ms": 3_600_001},
                {"deadlineSeconds": 0},
                {"maxCostPerHour": -1e-300},
                {"latencyP99Ms": 5, "latencyOptOutReason": "both"},
                {"latencyOptOutReason": ""},
            ]
        ),
    ),
    ("spec", "placement"): (
        st.sampled_from(
            [
                {},
                {"allowedTiers": []},
                {"allowedTiers": ["Cloud"]},
                {"clusterSelector": {"matchLabels": {"pool": "gpu"}}},
                {"clusterSelector": {"matchExpressions": [{"key": "x", "operator": "Exists"}]}},
                {"spread": {"domain": "Region", "maxShardsPerDomain": 256}},
                {
                    "tolerations": [
                        {"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}
                    ]
                    * 1
                },
            ]
        ),
        st.sampled_from(
            [
                {"allowedTiers": ["Moon"]},
                {"allowedTiers": ["Edge", "Edge"]},
                {"allowedTiers": ["Edge", "Cloud", "Edge"]},
                {"clusterSelector": {"matchExpressions": [{"key": "x", "operator": "In"}]}},
                {"spread": {"maxShardsPerDomain": 0}},
                {"tolerations": [{"operator": "Equal"}]},
                {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]},
            ]
        ),
    ),
    ("spec", "faultTolerance"): (
        st.sampled_from(
            [
                {},
                {"maxRestarts": 0},
                {"maxRestarts": 1000},
                {"checkpoint": {"uri": "x://" + "é" * 100, "intervalSeconds": 604_800}},
                {"proactive": {"enabled": True, "riskThreshold": 0}},
                {"proactive": {"enabled": True, "riskThreshold": 1}},
            ]
        ),
        st.sampled_from(
            [
                {"maxRestarts": 1001},
                {"checkpoint": {"uri": "no-scheme"}},
                {"checkpoint": {"uri": "s3://b", "intervalSeconds": 0}},
                {"proactive": {"riskThreshold": 1.0000001}},
                {"proactive": {"enabled": "yes"}},
            ]
        ),
    ),
    ("spec", "suspend"): (st.just(True), st.sampled_from(["yes", 1, "true"])),
}
MLJOB_REQUIRED: Final[list[FieldPath]] = [
    ("spec",),
    ("spec", "mode"),
    ("spec", "tenant"),
    ("spec", "shards"),
    ("spec", "ray"),
    ("spec", "shards", "count"),
    ("spec", "shards", "resources"),
    ("spec", "shards", "resources", "cpu"),
    ("spec", "ray", "image"),
    ("spec", "ray", "entrypoint"),
]
MLJOB_OPTIONAL: Final[list[FieldPath]] = [
    ("spec", "priority"),
    ("spec", "data"),
    ("spec", "objectives"),
    ("spec", "placement"),
    ("spec", "faultTolerance"),
    ("spec", "ray", "runtimeEnv"),
    ("spec", "ray", "workersPerShard"),
]
MLJOB_CONTAINERS: Final[list[FieldPath]] = [
    ("spec",),
    ("spec", "shards"),
    ("spec", "shards", "resources"),
    ("spec", "ray"),
    ("metadata",),
    ("spec", "ray", "runtimeEnv"),
]


@dataclass(frozen=True)
class ObjectCase:
    kind: str
    template: str
    name_shape: str
    mutation: Mutation | None

    def describe(self) -> str:
        parts = [self.template]
        if self.name_shape != "plain":
            parts.append(f"name {self.name_shape}")
        if self.mutation is not None:
            parts.append(self.mutation.describe())
        return "; ".join(parts)


def mljob_cases() -> st.SearchStrategy[ObjectCase]:
    return st.builds(
        ObjectCase,
        kind=st.just("MLJob"),
        template=st.sampled_from(["training"] * 3 + ["inference", "federated", "full"]),
        name_shape=st.sampled_from(NAME_SHAPES),
        mutation=mutations(MLJOB_FIELDS, MLJOB_REQUIRED, MLJOB_OPTIONAL, MLJOB_CONTAINERS),
    )


def build_mljob(
    case: ObjectCase, name: str, namespace: str, tenant: str, run_id: str
) -> dict[str, Any]:
    job = mljob_template(case.template, tenant)
    job["metadata"] = {"name": name, "namespace": namespace, "labels": {CAMPAIGN_LABEL: run_id}}
    return case.mutation.apply(job) if case.mutation else job


# --- Tenants -------------------------------------------------------------------------------

TENANT_FIELDS: Final[FieldTable] = {
    ("spec", "weight"): (
        st.sampled_from([5e-324, 1e-9, 0.001, 1, 999.9999, 1000]),
        st.sampled_from([0, -1, -5e-324, 1000.0001, 1e308, "NaN", "1"]),
    ),
    ("spec", "nominalQuota", "cpu"): (quantities(True), quantities(False)),
    ("spec", "nominalQuota", "memory"): (quantities(True), quantities(False)),
    ("spec", "nominalQuota", "gpu"): (quantities(True), quantities(False)),
    ("spec", "namespaces"): (
        st.one_of(
            st.lists(dns_labels(True), max_size=256, unique=True),
            st.just([f"n{i}" for i in range(256)]),
        ),
        st.one_of(
            st.just([f"n{i}" for i in range(257)]),
            st.just(["a", "a"]),
            st.builds(lambda label: [label], dns_labels(False)),
        ),
    ),
    ("metadata", "labels"): MLJOB_FIELDS[("metadata", "labels")],
}


def tenant_cases() -> st.SearchStrategy[ObjectCase]:
    return st.builds(
        ObjectCase,
        kind=st.just("Tenant"),
        template=st.just("tenant"),
        name_shape=st.sampled_from(NAME_SHAPES),
        mutation=mutations(
            TENANT_FIELDS,
            required=[("spec",)],
            optional=[("spec", "weight"), ("spec", "nominalQuota"), ("spec", "namespaces")],
            containers=[("spec",), ("spec", "nominalQuota"), ("metadata",)],
        ),
    )


def build_tenant(case: ObjectCase, name: str, namespace: str, run_id: str) -> dict[str, Any]:
    tenant = {
        "apiVersion": API_VERSION,
        "kind": "Tenant",
        "metadata": {"name": name, "labels": {CAMPAIGN_LABEL: run_id}},
        "spec": {
            "weight": 1,
            "nominalQuota": {"cpu": "4", "memory": "8Gi"},
            "namespaces": [namespace],
        },
    }
    return case.mutation.apply(tenant) if case.mutation else tenant


# --- MemberClusters and their kubeconfigs ----------------------------------------------------

MEMBER_FIELDS: Final[FieldTable] = {
    ("spec", "tier"): (st.sampled_from(["Edge", "Cloud"]), st.sampled_from(["Fog", "edge", ""])),
    ("spec", "site"): (label_values(True), label_values(False)),
    ("spec", "region"): (label_values(True), label_values(False)),
    ("spec", "capacity", "cpu"): (quantities(True), quantities(False)),
    ("spec", "capacity", "memory"): (quantities(True), quantities(False)),
    ("spec", "costPerHour"): (
        st.sampled_from([0, 5e-324, 1e308]),
        st.sampled_from([-1, -5e-324, "NaN", "1"]),
    ),
    ("spec", "labels"): (
        st.dictionaries(
            st.text(TEXT, max_size=20),
            label_values(True).filter(lambda v: len(v) <= 63),
            max_size=64,
        ),
        st.one_of(
            st.just({f"k{i}": "v" for i in range(65)}),
            st.builds(lambda value: {"k": value}, st.just("a" * 64)),
        ),
    ),
    ("spec", "taints"): (
        st.sampled_from(
            [
                [],
                [{"key": "flaky", "value": "yes", "effect": "NoSchedule"}],
                [{"key": "a" * 63, "effect": "NoExecute"}],
            ]
        ),
        st.sampled_from(
            [
                [{"key": "k", "effect": "NoSchedule"}] * 2,
                [{"key": "k", "effect": "Sometimes"}],
                [{"effect": "NoSchedule"}],
            ]
        ),
    ),
    ("spec", "kubeconfigSecretRef", "key"): (
        st.sampled_from(["other.key", "a" * 253, "-._"]),
        st.sampled_from(["", "a/b", "a b", "a" * 254, "é"]),
    ),
    ("metadata", "labels"): MLJOB_FIELDS[("metadata", "labels")],
}


@dataclass(frozen=True)
class KubeconfigCase:
    """A hostile kubeconfig: its `form`, the server it names (`target`, for the forms that
    connect), how it is written, and what hypothesis drew for the garbage forms."""

    form: str
    target: str = "401"
    credentials: str = "token"
    as_json: bool = False
    variant: int = 0
    garbage: Json = None

    def describe(self) -> str:
        extra = f" {self.target}" if self.form in NETWORK_FORMS else ""
        return f"kubeconfig {self.form}{extra} ({self.credentials}, v{self.variant})"


REFUSED_FORMS: Final = [
    "exec",
    "exec-script",
    "auth-provider-oidc",
    "auth-provider-gcp",
    "auth-provider-other",
    "token-file",
    "client-certificate-file",
    "certificate-authority-file",
    "unknown-field",
]
INVALID_FORMS: Final = ["not-yaml", "not-a-mapping", "missing-part", "binary"]
REFERENCE_FORMS: Final = ["secret-not-found", "key-missing", "key-empty", "other-namespace"]
NETWORK_FORMS: Final = ["network", "extensions", "garbage-data", "huge"]
GARBAGE_FORMS: Final = ["random-structure", "mutated", "no-user"]
# "hang" is rare: each probe of such a member holds one of the operator's workers for its
# request timeout.
TARGETS: Final = ["401"] * 3 + [
    "403",
    "500",
    "garbage",
    "closed",
    "closed",
    "member",
    "member",
    "unparsable",
    "userinfo",
    "hang",
]
UNKNOWN_FIELD_LEVELS: Final = [
    "top",
    "cluster",
    "user",
    "context",
    "cluster-entry",
    "user-entry",
    "context-entry",
]


def kubeconfig_cases() -> st.SearchStrategy[KubeconfigCase]:
    """The form is drawn too, but the campaign sets it (and a network form's target) from
    MEMBER_FORMS: hypothesis favours the ends of a list, and each form should come up."""
    return st.builds(
        KubeconfigCase,
        form=st.sampled_from([form for form, _ in MEMBER_FORMS]),
        target=st.sampled_from(TARGETS),
        credentials=st.sampled_from(["token", "token", "basic", "none"]),
        as_json=st.booleans(),
        variant=st.integers(0, 6),
        garbage=st.one_of(json_trees(12), st.binary(max_size=200), odd_values()),
    )


# The kubeconfig forms in the order the campaign's members take them, round after round, so
# that a run with as many members covers each (hypothesis draws the rest of each case).
MEMBER_FORMS: Final[list[tuple[str, str | None]]] = [
    *[(form, None) for form in REFUSED_FORMS + INVALID_FORMS + REFERENCE_FORMS],
    *[
        ("network", target)
        for target in [
            "401",
            "closed",
            "member",
            "403",
            "500",
            "garbage",
            "unparsable",
            "userinfo",
            "hang",
        ]
    ],
    *[(form, None) for form in ["extensions", "garbage-data", "huge", *GARBAGE_FORMS]],
]


@dataclass(frozen=True)
class MemberCase:
    name_shape: str
    mutation: Mutation | None
    kubeconfig: KubeconfigCase

    def describe(self) -> str:
        parts = [self.kubeconfig.describe()]
        if self.name_shape != "plain":
            parts.append(f"name {self.name_shape}")
        if self.mutation is not None:
            parts.append(self.mutation.describe())
        return "; ".join(parts)


def member_cases() -> st.SearchStrategy[MemberCase]:
    return st.builds(
        MemberCase,
        name_shape=st.sampled_from(MEMBER_NAME_SHAPES),
        mutation=mutations(
            MEMBER_FIELDS,
            required=[
                ("spec", "tier"),
                ("spec", "site"),
                ("spec", "region"),
                ("spec", "kubeconfigSecretRef"),
            ],
            optional=[
                ("spec", "capacity"),
                ("spec", "costPerHour"),
                ("spec", "labels"),
                ("spec", "kubeconfigSecretRef", "namespace"),
            ],
            containers=[("spec",), ("spec", "capacity"), ("spec", "kubeconfigSecretRef")],
            intents=MEMBER_INTENTS,
        ),
        kubeconfig=kubeconfig_cases(),
    )


@dataclass(frozen=True)
class Targets:
    """What the run provides to the kubeconfigs: where they point, and where files go."""

    system_namespace: str
    other_namespace: str
    sink_port: int
    """A listener no kubeconfig that must be refused may ever reach."""
    answering_port: int
    """A listener that answers by path (see campaign_listener)."""
    closed_port: int
    member_server: str
    member_ca_data: str
    exec_dir: Path
    """Where an exec plugin that ran would leave a file: must stay empty."""
    files_dir: Path


@dataclass
class KubeconfigPlan:
    """A hostile kubeconfig made: its Secret (none for `secret-not-found`), the reference to
    put in the MemberCluster, and what the contract expects of the member's Reachable."""

    reference: dict[str, str]
    secret_namespace: str | None
    secret_data: dict[str, bytes]
    expected: frozenset[str]
    names_field: tuple[str, ...] = ()
    """For KubeconfigRefused: the message names one of these keys."""
    must_not_connect: bool = False
    """Points at the sink, which must never see a connection from it."""
    exec_files: tuple[Path, ...] = ()


@dataclass
class _Builder:
    case: KubeconfigCase
    member: str
    markers: Markers
    targets: Targets
    exec_files: list[Path] = field(default_factory=list)

    def mark(self, where: str, *, may_be_sent: bool = False) -> str:
        return self.markers.new(f"member {self.member}: {where}", may_be_sent=may_be_sent)

    def server(self, target: str) -> str:
        path = self.mark("clusters[0].cluster.server (path)", may_be_sent=True)
        t = self.targets
        if target == "sink":
            return f"http://127.0.0.1:{t.sink_port}/sink/{path}"
        if target == "sink-tls":
            return f"https://127.0.0.1:{t.sink_port}/{path}"
        if target == "closed":
            return f"https://127.0.0.1:{t.closed_port}/{path}"
        if target == "member":
            return f"{t.member_server}/{path}"
        if target == "unparsable":
            return f"https://{self.mark('clusters[0].cluster.server (host)')}.invalid:99999/{path}"
        if target == "userinfo":
            user = self.mark("clusters[0].cluster.server (userinfo)", may_be_sent=True)
            return f"http://{user}:{path}@127.0.0.1:{t.answering_port}/401/"
        if target == "tls":  # TLS to a listener that speaks plain HTTP
            return f"https://127.0.0.1:{t.answering_port}/{path}"
        return f"http://127.0.0.1:{t.answering_port}/{target}/{path}"

    def credentials(self, kind: str) -> dict[str, Any]:
        if kind == "token":
            return {"token": self.mark("users[0].user.token", may_be_sent=True)}
        if kind == "basic":
            return {
                "username": self.mark("users[0].user.username", may_be_sent=True),
                "password": self.mark("users[0].user.password", may_be_sent=True),
            }
        return {}

    def kubeconfig(self, server: str, user: dict[str, Any] | None = None) -> dict[str, Any]:
        cluster_name, user_name = self.mark("clusters[0].name"), self.mark("users[0].name")
        context_name = self.mark("contexts[0].name")
        # No insecure-skip-tls-verify anywhere: a fix may well refuse it, and no form here
        # needs it (the listeners speak plain HTTP, and a refused port refuses before TLS).
        cluster: dict[str, Any] = {"server": server}
        if server.startswith(self.targets.member_server):
            cluster["certificate-authority-data"] = self.targets.member_ca_data
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": cluster_name, "cluster": cluster}],
            "users": [
                {
                    "name": user_name,
                    "user": self.credentials(self.case.credentials) if user is None else user,
                }
            ],
            "contexts": [
                {
                    "name": context_name,
                    "context": {
                        "cluster": cluster_name,
                        "user": user_name,
                        "namespace": self.mark("contexts[0].context.namespace"),
                    },
                }
            ],
            "current-context": context_name,
        }

    def file(self, where: str, content: str) -> str:
        path = self.targets.files_dir / self.mark(f"{where} (file name)")
        path.write_text(content)
        return str(path)

    def exec_command(self) -> str:
        made = self.targets.exec_dir / self.mark("users[0].user.exec (file it would make)")
        self.exec_files.append(made)
        said = self.mark("users[0].user.exec.args (what it would print)")
        return f"echo {said} > {shlex.quote(str(made))}; echo {said} >&2"

    def token_file_content(self) -> str:
        """A token, with a line end some of the time: the client sends the file as it is, and
        a line end makes the header invalid, which fails elsewhere than a plain token does."""
        token = self.mark("tokenFile content")
        return f"{token}\n" if self.case.variant % 4 >= 2 else token

    def pem(self, where: str) -> str:
        return f"-----BEGIN CERTIFICATE-----\n{self.mark(where)}\n-----END CERTIFICATE-----\n"


def _jwt(claims: dict[str, Any], signature: str) -> str:
    def encode(part: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")

    payload = dict(claims)
    # The client skips a token whose payload would need three '=' of padding.
    while len(encode(payload)) % 4 == 1:
        payload["pad"] = payload.get("pad", "") + "x"
    return f"{encode({'alg': 'none'})}.{encode(payload)}.{signature}"


def serialize(document: Json, as_json: bool) -> bytes:
    if as_json:
        return json.dumps(document).encode()
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False).encode()


def _refused(b: _Builder) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A kubeconfig with something the contract refuses, pointed at the sink."""
    form, t = b.case.form, b.targets
    config = b.kubeconfig(b.server("sink"))
    user = config["users"][0]["user"]
    if form in ("exec", "exec-script", "token-file", "client-certificate-file"):
        user.clear()  # a token or a password would be used first, and the plugin never asked
    if form == "exec":
        user["exec"] = {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": "sh",
            "args": ["-c", b.exec_command()],
            "env": [{"name": "CMK", "value": b.mark("users[0].user.exec.env[0].value")}],
            "installHint": b.mark("users[0].user.exec.installHint"),
            "interactiveMode": "Never",
        }
        return config, ("exec",)
    if form == "exec-script":
        script = b.file("users[0].user.exec.command", f"#!/bin/sh\n{b.exec_command()}\n")
        Path(script).chmod(0o755)
        user["exec"] = {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": script,
            "args": [b.mark("users[0].user.exec.args[0]")],
        }
        return config, ("exec",)
    if form == "auth-provider-oidc":
        expired = {"exp": int(time.time()) - 3600, "sub": b.mark("auth-provider id-token sub")}
        user["auth-provider"] = {
            "name": "oidc",
            "config": {
                "idp-issuer-url": f"http://127.0.0.1:{t.sink_port}/idp/"
                f"{b.mark('auth-provider.config.idp-issuer-url')}",
                "client-id": b.mark("auth-provider.config.client-id"),
                "client-secret": b.mark("auth-provider.config.client-secret"),
                "refresh-token": b.mark("auth-provider.config.refresh-token"),
                "id-token": _jwt(expired, b.mark("auth-provider.config.id-token (signature)")),
            },
        }
        return config, ("auth-provider",)
    if form == "auth-provider-gcp":
        # With an access token and no expiry the client uses it as it is: it never asks
        # Google's libraries, which would look for a metadata server off this machine.
        user["auth-provider"] = {
            "name": "gcp",
            "config": {
                "access-token": b.mark("auth-provider.config.access-token"),
                "cmd-path": b.file("auth-provider.config.cmd-path", "#!/bin/sh\nexit 1\n"),
            },
        }
        return config, ("auth-provider",)
    if form == "auth-provider-other":
        user["auth-provider"] = {
            "name": b.mark("auth-provider.name"),
            "config": {"k": b.mark("auth-provider.config.k")},
        }
        return config, ("auth-provider",)
    if form == "token-file":
        user["tokenFile"] = b.file("users[0].user.tokenFile", b.token_file_content())
        return config, ("tokenFile",)
    if form == "client-certificate-file":
        config["clusters"][0]["cluster"] = {"server": b.server("sink-tls")}
        user["client-certificate"] = b.file("client-certificate", b.pem("client-certificate"))
        user["client-key"] = b.file("client-key", b.pem("client-key content"))
        return config, ("client-certificate", "client-key")
    if form == "certificate-authority-file":
        config["clusters"][0]["cluster"] = {
            "server": b.server("sink-tls"),
            "certificate-authority": b.file("certificate-authority", b.pem("CA content")),
        }
        return config, ("certificate-authority",)
    assert form == "unknown-field", form
    level = UNKNOWN_FIELD_LEVELS[b.case.variant % len(UNKNOWN_FIELD_LEVELS)]
    key = "xCampaignField"
    value = b.mark(f"unknown field at {level}")
    holder = {
        "top": config,
        "cluster": config["clusters"][0]["cluster"],
        "user": user,
        "context": config["contexts"][0]["context"],
        "cluster-entry": config["clusters"][0],
        "user-entry": config["users"][0],
        "context-entry": config["contexts"][0],
    }[level]
    holder[key] = value
    return config, (key,)


NOT_YAML: Final[list[Callable[[str, str], str]]] = [
    lambda m1, m2: f'apiVersion: v1\nusers:\n- name: u\n  user:\n    token: "{m1}\n',
    lambda m1, m2: f"clusters: [{{name: {m1}, cluster: {{server: {m2}}}\n",
    lambda m1, m2: f"users:\n\t- token: {m1}\n  {m2}: ][",
    lambda m1, m2: f"{m1}: &anchor\n  - *{m2}\n",
    lambda m1, m2: f"kind: Config\ncurrent-context: {m1}\n  {m2}: [\n",
    lambda m1, m2: f"%YAML 9.9\n---\n{m1}: {m2}\n",
    lambda m1, m2: f"token: !!python/object:os.system {m1}\n{m2}: x\n",
]


def _invalid(b: _Builder) -> bytes:
    """A kubeconfig that is not one: not YAML, not a mapping, or with parts missing."""
    form, variant = b.case.form, b.case.variant
    if form == "not-yaml":
        template = NOT_YAML[variant % len(NOT_YAML)]
        return template(b.mark("the line YAML fails on"), b.mark("beside it")).encode()
    if form == "not-a-mapping":
        documents: list[Json] = [
            [b.mark("a list item"), b.mark("another")],
            b.mark("a lone string"),
            42,
            None,
            [{"clusters": [], "token": b.mark("in a list")}],
            True,
        ]
        return serialize(documents[variant % len(documents)], b.case.as_json)
    if form == "binary":
        raw = b.case.garbage if isinstance(b.case.garbage, bytes) else b"\xff\xfe\x00"
        return raw + b.mark("inside binary garbage").encode() + b"\x00\xff" + raw
    assert form == "missing-part", form
    config = b.kubeconfig(b.server("sink"))
    missing = variant % 6
    if missing == 0:
        del config["clusters"]
    elif missing == 1:
        del config["contexts"]
    elif missing == 2:
        del config["current-context"]
    elif missing == 3:
        del config["clusters"][0]["cluster"]["server"]
    elif missing == 4:
        config["contexts"][0]["context"]["cluster"] = b.mark("a cluster nobody lists")
    else:
        config["current-context"] = b.mark("a context nobody lists")
    return serialize(config, b.case.as_json)


def _network(b: _Builder) -> tuple[bytes, frozenset[str]]:
    """A kubeconfig of the right shape that points somewhere that refuses it."""
    form, target, credentials = b.case.form, b.case.target, b.case.credentials
    expected = {
        "401": {"Unauthorized"},
        "403": {"Forbidden"},
        "500": {"APIError"},
        "hang": {"Timeout", "ConnectionFailed"},
        "garbage": {"ConnectionFailed", "APIError"},
        "closed": {"ConnectionFailed"},
        # A member's API server: a made-up token gets 401; basic auth, which it does not
        # take, and none are anonymous: the version answers and the nodes are forbidden.
        "member": {"Unauthorized"} if credentials == "token" else {"Forbidden"},
        "unparsable": {"ConnectionFailed", INVALID, REFUSED},
        "userinfo": set(NETWORK_REASONS | {INVALID, REFUSED}),
    }[target]
    if form == "network":
        return serialize(b.kubeconfig(b.server(target)), b.case.as_json), frozenset(expected)
    if form == "extensions":
        config = b.kubeconfig(b.server(target))
        for where, holder in [
            ("top", config),
            ("cluster", config["clusters"][0]["cluster"]),
            ("context", config["contexts"][0]["context"]),
        ]:
            holder["extensions"] = [
                {
                    "name": b.mark(f"extensions at {where} (name)"),
                    "extension": {
                        "data": b.mark(f"extension at {where}"),
                        "nested": [b.mark(f"extension at {where}")],
                    },
                }
            ]
        return serialize(config, b.case.as_json), frozenset(expected | {REFUSED})
    if form == "huge":
        config = b.kubeconfig(b.server(target))
        filler = b.mark("users[0].user.token (200 KB of it)", may_be_sent=True)
        config["users"][0]["user"] = {"token": filler * (200_000 // len(filler))}
        return serialize(config, b.case.as_json), frozenset(NETWORK_REASONS | {INVALID, REFUSED})
    assert form == "garbage-data", form
    config = b.kubeconfig(b.server("member" if b.case.variant % 2 else "tls"))
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    garbage = [
        f"not base64 {b.mark('certificate-authority-data (text)')}",
        base64.b64encode(b.pem("certificate-authority-data (PEM)").encode()).decode(),
    ]
    cluster["certificate-authority-data"] = garbage[b.case.variant % 2]
    if b.case.variant % 3:
        user["client-certificate-data"] = base64.b64encode(
            b.pem("client-certificate-data").encode()
        ).decode()
        user["client-key-data"] = f"{b.mark('client-key-data')}=="
    return serialize(config, b.case.as_json), frozenset({"ConnectionFailed", INVALID, REFUSED})


def _planted(b: _Builder, value: Json) -> Json:
    """A drawn structure with a marker in every mapping and list. Its keys get an 'x' in
    front, so that no drawn structure names a server to connect to."""
    if isinstance(value, dict):
        planted = {f"x{key}": _planted(b, item) for key, item in value.items()}
        planted["xMarker"] = b.mark("a random structure")
        return planted
    if isinstance(value, list):
        return [_planted(b, item) for item in value] + [b.mark("a random list")]
    if isinstance(value, bytes):
        return value.hex() + b.mark("random bytes")
    return value


def _garbage(b: _Builder) -> bytes:
    """Random structures, a valid kubeconfig with one part replaced, or one with no user."""
    form, garbage = b.case.form, b.case.garbage
    if form == "no-user":
        config = b.kubeconfig(b.server("401"))
        del config["users"]
        return serialize(config, b.case.as_json)
    if form == "random-structure":
        document = _planted(b, garbage)
        if not isinstance(document, (dict, list)):
            document = {"xValue": document, "xMarker": b.mark("a random value")}
        return serialize(document, b.case.as_json)
    assert form == "mutated", form
    config = b.kubeconfig(b.server("401"))
    replaced = _planted(b, garbage)
    places: list[tuple[Any, str]] = [
        (config, "clusters"),
        (config, "users"),
        (config, "contexts"),
        (config, "current-context"),
        (config, "apiVersion"),
        (config, "kind"),
        (config["clusters"][0], "cluster"),
        (config["clusters"][0], "name"),
        (config["users"][0], "user"),
        (config["contexts"][0], "context"),
        (config["contexts"][0]["context"], "cluster"),
        (config["contexts"][0]["context"], "user"),
        (config["users"][0]["user"], "token"),
    ]
    holder, key = places[b.case.variant % len(places)]
    holder[key] = replaced
    return serialize(config, b.case.as_json)


def build_kubeconfig(
    case: KubeconfigCase, member: str, secret_name: str, markers: Markers, targets: Targets
) -> KubeconfigPlan:
    b = _Builder(case, member, markers, targets)
    reference = {"name": secret_name, "namespace": targets.system_namespace, "key": "kubeconfig"}
    form = case.form

    def plan(content: bytes, expected: set[str] | frozenset[str], **more: Any) -> KubeconfigPlan:
        return KubeconfigPlan(
            reference,
            targets.system_namespace,
            {"kubeconfig": content},
            frozenset(expected),
            exec_files=tuple(b.exec_files),
            **more,
        )

    if form in REFUSED_FORMS:
        config, names = _refused(b)
        return plan(
            serialize(config, case.as_json), {REFUSED}, names_field=names, must_not_connect=True
        )
    if form in INVALID_FORMS:
        return plan(_invalid(b), {INVALID}, must_not_connect=True)
    if form in NETWORK_FORMS:
        content, expected = _network(b)
        return plan(content, expected)
    if form in GARBAGE_FORMS:
        return plan(_garbage(b), ALL_REASONS)
    # What a hostile kubeconfig elsewhere holds: a plugin that would run, or a file to send.
    if case.variant % 2:
        user: dict[str, Any] = {
            "tokenFile": b.file("users[0].user.tokenFile", b.token_file_content())
        }
    else:
        user = {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": "sh",
                "args": ["-c", b.exec_command()],
            }
        }
    hostile = serialize(b.kubeconfig(b.server("sink"), user), case.as_json)
    if form == "secret-not-found":
        reference["name"] = f"{secret_name}-missing"
        return KubeconfigPlan(reference, None, {}, frozenset({NOT_FOUND}), must_not_connect=True)
    if form == "key-missing":
        return KubeconfigPlan(
            reference,
            targets.system_namespace,
            {"other": hostile},
            frozenset({MISSING}),
            must_not_connect=True,
        )
    if form == "key-empty":
        return plan(b"", {MISSING, INVALID}, must_not_connect=True)
    assert form == "other-namespace", form
    reference["namespace"] = targets.other_namespace
    return KubeconfigPlan(
        reference,
        targets.other_namespace,
        {"kubeconfig": hostile},
        frozenset({NAMESPACE_NOT_ALLOWED}),
        must_not_connect=True,
        exec_files=tuple(b.exec_files),
    )


def expected_reasons(
    member: dict[str, Any], plan: KubeconfigPlan, system_namespace: str
) -> frozenset[str]:
    """The Reachable reasons the contract allows for `member` as built: its reference (which
    a mutation may have changed) decides before the kubeconfig does."""
    reference = member.get("spec", {}).get("kubeconfigSecretRef")
    if not isinstance(reference, dict):
        return plan.expected
    namespace = reference.get("namespace", system_namespace)
    key = reference.get("key", "kubeconfig")
    if namespace != system_namespace:
        return frozenset({NAMESPACE_NOT_ALLOWED})
    if plan.secret_namespace != namespace or reference.get("name") != plan.reference["name"]:
        return frozenset({NOT_FOUND})
    if key not in plan.secret_data:
        return frozenset({MISSING})
    return plan.expected


def build_member(
    case: MemberCase, name: str, reference: dict[str, str], run_id: str
) -> dict[str, Any]:
    member = {
        "apiVersion": API_VERSION,
        "kind": "MemberCluster",
        "metadata": {"name": name, "labels": {CAMPAIGN_LABEL: run_id}},
        "spec": {
            "tier": "Edge",
            "site": "campaign-site",
            "region": "campaign-region",
            "kubeconfigSecretRef": dict(reference),
            "capacity": {"cpu": "2", "memory": "4Gi"},
            "costPerHour": 0.1,
        },
    }
    return case.mutation.apply(member) if case.mutation else member


def secret_manifest(
    name: str, namespace: str, data: dict[str, bytes], run_id: str
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": {CAMPAIGN_LABEL: run_id}},
        "type": "Opaque",
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }
