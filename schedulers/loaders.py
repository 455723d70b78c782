"""Loaders (and writers) for the benchmark formats of the design.

- Topology YAML: `sites` (name, region), `clusters` (name, tier, site, cpu, memoryGiB, gpu,
  costPerHour, and optionally labels, taints, risk), optional `tenants` (name, weight, quota
  with cpu, memoryGiB, gpu). A tenant not listed has weight 1.
- Latency CSV: `from_site,to_site,rtt_ms[,bandwidth_mbps]`, symmetric unless both directions
  are given.
- Trace CSV: `submit_s,job,tenant,mode,shards,min_shards,cpu,memory_gib,gpu,duration_s,
  data_site,residency,latency_slo_ms,priority`. Empty fields take defaults. `data_site` may
  list several sites separated by `;` (one per data shard of a Federated job). An optional
  `rate_mbps` column gives each source's rate.
- Failure CSV: `at_s,cluster,kind(down|degrade),duration_s`.

A bad row raises `FormatError` naming the file, the line and the field.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from continuum.schedulers.model import (
    Cluster,
    DataSource,
    Job,
    Link,
    Mode,
    Network,
    Residency,
    Resources,
    Site,
    Taint,
    Tenant,
    Tier,
)
from continuum.schedulers.trace import Failure, FailureKind, Topology, TraceJob, Workload

TRACE_COLUMNS: tuple[str, ...] = (
    "submit_s",
    "job",
    "tenant",
    "mode",
    "shards",
    "min_shards",
    "cpu",
    "memory_gib",
    "gpu",
    "duration_s",
    "data_site",
    "residency",
    "latency_slo_ms",
    "priority",
)
OPTIONAL_TRACE_COLUMNS: tuple[str, ...] = ("rate_mbps",)
LATENCY_COLUMNS: tuple[str, ...] = ("from_site", "to_site", "rtt_ms", "bandwidth_mbps")
FAILURE_COLUMNS: tuple[str, ...] = ("at_s", "cluster", "kind", "duration_s")
DEFAULT_RATE_MBPS = 10.0
DEFAULT_TENANT = "default"

Value = TypeVar("Value")


class FormatError(ValueError):
    """A bad input file: where, which field, and what is wrong."""

    def __init__(self, path: str, line: int | None, field: str | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        what = f" field {field!r}:" if field else ""
        super().__init__(f"{where}:{what} {message}")
        self.path = path
        self.line = line
        self.field = field


# -- field parsing ------------------------------------------------------------------------------


class _Row:
    def __init__(self, path: str, line: int, values: Mapping[str, str]) -> None:
        self.path, self.line, self.values = path, line, values

    def error(self, field: str, message: str) -> FormatError:
        return FormatError(self.path, self.line, field, message)

    def text(self, field: str, default: str | None = None) -> str:
        value = (self.values.get(field) or "").strip()
        if value:
            return value
        if default is None:
            raise self.error(field, "is required")
        return default

    def number(self, field: str, default: float | None = None, minimum: float = 0.0) -> float:
        raw = (self.values.get(field) or "").strip()
        if not raw:
            if default is None:
                raise self.error(field, "is required")
            return default
        try:
            value = float(raw)
        except ValueError:
            raise self.error(field, f"{raw!r} is not a number") from None
        if not math.isfinite(value) or value < minimum:
            raise self.error(field, f"{raw!r} must be a finite number of at least {minimum:g}")
        return value

    def integer(self, field: str, default: int, minimum: int = 0) -> int:
        raw = (self.values.get(field) or "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise self.error(field, f"{raw!r} is not a whole number") from None
        if value < minimum:
            raise self.error(field, f"{value} must be at least {minimum}")
        return value

    def choice(self, field: str, parse: Callable[[str], Value], default: Value) -> Value:
        raw = (self.values.get(field) or "").strip()
        if not raw:
            return default
        try:
            return parse(raw)
        except ValueError as error:
            raise self.error(field, str(error)) from None


def _enum_parser(kind: type[Tier] | type[Mode] | type[Residency]) -> Callable[[str], Any]:
    by_name = {member.value.lower(): member for member in kind}

    def parse(raw: str) -> Any:
        member = by_name.get(raw.lower())
        if member is None:
            allowed = ", ".join(m.value for m in kind)
            raise ValueError(f"{raw!r} is not one of {allowed}")
        return member

    return parse


def _rows(path: str, text: str, columns: tuple[str, ...], required: int) -> Iterator[_Row]:
    """Rows as dicts; the header is optional when the columns come in the documented order."""
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    for line, raw_cells in enumerate(reader, start=1):
        cells = [c.strip() for c in raw_cells]
        if not cells or all(not c for c in cells) or cells[0].startswith("#"):
            continue
        if header is None:
            if cells[0] == columns[0]:
                unknown = [c for c in cells if c not in columns]
                if unknown:
                    raise FormatError(path, line, unknown[0], "is not a known column")
                missing = [c for c in columns[:required] if c not in cells]
                if missing:
                    raise FormatError(path, line, missing[0], "column is missing")
                header = cells
                continue
            header = list(columns)
        if len(cells) > len(header):
            raise FormatError(path, line, None, f"has {len(cells)} fields, expected {len(header)}")
        yield _Row(path, line, dict(zip(header, cells, strict=False)))


# -- loaders -------------------------------------------------------------------------------------


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise FormatError(str(path), None, None, f"cannot be read: {error.strerror}") from None


def parse_topology(text: str, path: str = "<topology>") -> Topology:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise FormatError(path, line, None, f"is not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise FormatError(path, None, None, "must be a mapping with sites and clusters")
    sites = tuple(
        Site(str(_field(path, "sites", i, s, "name")), str(_field(path, "sites", i, s, "region")))
        for i, s in enumerate(_list(path, document, "sites"))
    )
    known_sites = {s.name for s in sites}
    tier = _enum_parser(Tier)
    clusters = []
    for index, entry in enumerate(_list(path, document, "clusters")):

        def get(name: str, default: Any = None, entry: Any = entry, index: int = index) -> Any:
            return _field(path, "clusters", index, entry, name, default)

        site = str(get("site"))
        if site not in known_sites:
            raise FormatError(path, None, f"clusters[{index}].site", f"{site!r} is not a site")
        try:
            clusters.append(
                Cluster(
                    name=str(get("name")),
                    tier=tier(str(get("tier"))),
                    site=site,
                    capacity=Resources(
                        _number(path, index, "cpu", get("cpu")),
                        _number(path, index, "memoryGiB", get("memoryGiB")),
                        _number(path, index, "gpu", get("gpu", 0)),
                    ),
                    cost_per_hour=_number(path, index, "costPerHour", get("costPerHour", 0)),
                    labels={str(k): str(v) for k, v in (get("labels", {}) or {}).items()},
                    taints=tuple(
                        Taint(
                            str(t["key"]),
                            str(t.get("value", "")),
                            str(t.get("effect", "NoSchedule")),
                        )
                        for t in get("taints", []) or []
                    ),
                    risk=_number(path, index, "risk", get("risk", 0)),
                )
            )
        except ValueError as error:
            if isinstance(error, FormatError):
                raise
            raise FormatError(path, None, f"clusters[{index}]", str(error)) from None
    tenants = []
    for index, entry in enumerate(document.get("tenants") or []):
        quota = entry.get("quota") if isinstance(entry, dict) else None
        try:
            tenants.append(
                Tenant(
                    name=str(_field(path, "tenants", index, entry, "name")),
                    weight=float(entry.get("weight", 1.0)),
                    quota=Resources(
                        float(quota.get("cpu", 0)),
                        float(quota.get("memoryGiB", 0)),
                        float(quota.get("gpu", 0)),
                    )
                    if isinstance(quota, dict)
                    else None,
                )
            )
        except (TypeError, ValueError) as error:
            raise FormatError(path, None, f"tenants[{index}]", str(error)) from None
    return Topology(sites, tuple(clusters), tuple(tenants))


def _list(path: str, document: dict[str, Any], key: str) -> list[Any]:
    value = document.get(key)
    if not isinstance(value, list) or not value:
        raise FormatError(path, None, key, "must be a non-empty list")
    return value


def _field(path: str, section: str, index: int, entry: Any, name: str, default: Any = None) -> Any:
    if not isinstance(entry, dict):
        raise FormatError(path, None, f"{section}[{index}]", "must be a mapping")
    value = entry.get(name, default)
    if value is None:
        raise FormatError(path, None, f"{section}[{index}].{name}", "is required")
    return value


def _number(path: str, index: int, name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FormatError(
            path, None, f"clusters[{index}].{name}", f"{value!r} is not a number"
        ) from None
    if not math.isfinite(number) or number < 0:
        raise FormatError(path, None, f"clusters[{index}].{name}", f"{value!r} must be >= 0")
    return number


def parse_latency(text: str, path: str = "<latency>") -> tuple[Link, ...]:
    links = []
    for row in _rows(path, text, LATENCY_COLUMNS, required=3):
        rtt = row.number("rtt_ms")
        bandwidth = row.number("bandwidth_mbps", Network().default_bandwidth_mbps, minimum=1e-9)
        links.append(Link(row.text("from_site"), row.text("to_site"), rtt, bandwidth))
    return tuple(links)


def parse_trace(text: str, path: str = "<trace>") -> tuple[TraceJob, ...]:
    mode_of = _enum_parser(Mode)
    residency_of = _enum_parser(Residency)
    jobs: list[TraceJob] = []
    seen: dict[str, int] = {}
    for row in _rows(path, text, TRACE_COLUMNS + OPTIONAL_TRACE_COLUMNS, required=10):
        name = row.text("job")
        if name in seen:
            raise row.error("job", f"{name!r} was already defined on line {seen[name]}")
        seen[name] = row.line
        mode: Mode = row.choice("mode", mode_of, Mode.TRAINING)
        residency: Residency = row.choice("residency", residency_of, Residency.ANY)
        sites = [s.strip() for s in row.text("data_site", "").split(";") if s.strip()]
        rate = row.number("rate_mbps", DEFAULT_RATE_MBPS)
        data = tuple(DataSource(f"data-{i}", site, rate, residency) for i, site in enumerate(sites))
        default_shards = len(data) + 1 if mode is Mode.FEDERATED else 1
        shards = row.integer("shards", default_shards, minimum=1)
        if mode is Mode.FEDERATED and shards != len(data) + 1:
            raise row.error(
                "shards",
                f"a Federated job needs one shard per data site plus the aggregator: "
                f"{len(data) + 1}, not {shards}",
            )
        min_shards = row.integer("min_shards", shards, minimum=0)
        if min_shards > shards:
            raise row.error("min_shards", f"{min_shards} is more than the {shards} shards")
        slo_raw = row.values.get("latency_slo_ms", "").strip()
        job = Job(
            key=name if "/" in name else f"{row.text('tenant', DEFAULT_TENANT)}/{name}",
            tenant=row.text("tenant", DEFAULT_TENANT),
            demand=Resources(
                row.number("cpu", 1.0), row.number("memory_gib", 1.0), row.number("gpu", 0.0)
            ),
            shards=shards,
            min_available=min_shards,
            mode=mode,
            priority=row.integer("priority", 0, minimum=-1_000_000),
            data=data,
            latency_slo_ms=row.number("latency_slo_ms", minimum=1e-9) if slo_raw else None,
            submit_time_s=row.number("submit_s"),
        )
        jobs.append(TraceJob(job, row.number("duration_s", minimum=1e-9)))
    return tuple(jobs)


def parse_failures(text: str, path: str = "<failures>") -> tuple[Failure, ...]:
    kind_of = {k.value: k for k in FailureKind}

    def parse_kind(raw: str) -> FailureKind:
        if raw.lower() not in kind_of:
            raise ValueError(f"{raw!r} is not one of down, degrade")
        return kind_of[raw.lower()]

    failures = []
    for row in _rows(path, text, FAILURE_COLUMNS, required=4):
        kind = row.choice("kind", parse_kind, None)
        if kind is None:
            raise row.error("kind", "is required")
        failures.append(
            Failure(row.number("at_s"), row.text("cluster"), kind, row.number("duration_s"))
        )
    return tuple(sorted(failures, key=lambda f: (f.at_s, f.cluster)))


def load_workload(
    topology_path: Path,
    latency_path: Path | None,
    trace_path: Path,
    failures_path: Path | None = None,
) -> Workload:
    """Read the four files and check that they refer to each other consistently."""
    topology = parse_topology(_read(topology_path), str(topology_path))
    links = parse_latency(_read(latency_path), str(latency_path)) if latency_path else ()
    jobs = parse_trace(_read(trace_path), str(trace_path))
    failures = parse_failures(_read(failures_path), str(failures_path)) if failures_path else ()
    site_names = {s.name for s in topology.sites}
    for link in links:
        for site in (link.from_site, link.to_site):
            if site not in site_names:
                raise FormatError(
                    str(latency_path), None, "from_site/to_site", f"{site!r} is not a site"
                )
    for trace in jobs:
        for source in trace.job.data:
            if source.site not in site_names:
                raise FormatError(
                    str(trace_path),
                    None,
                    "data_site",
                    f"{source.site!r} of job {trace.job.key} is not a site",
                )
    cluster_names = {c.name for c in topology.clusters}
    for failure in failures:
        if failure.cluster not in cluster_names:
            raise FormatError(
                str(failures_path), None, "cluster", f"{failure.cluster!r} is not a cluster"
            )
    network = Network(links=links)
    return Workload(
        Topology(topology.sites, topology.clusters, topology.tenants, network), jobs, failures
    )


# -- writers (so that a generated scenario can be replayed from files) ----------------------------


def write_workload(workload: Workload, directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    topology = workload.topology
    document = {
        "sites": [{"name": s.name, "region": s.region} for s in topology.sites],
        "clusters": [
            {
                "name": c.name,
                "tier": c.tier.value,
                "site": c.site,
                "cpu": c.capacity.cpu,
                "memoryGiB": c.capacity.memory_gib,
                "gpu": c.capacity.gpu,
                "costPerHour": c.cost_per_hour,
                "labels": dict(c.labels),
                "risk": c.risk,
            }
            for c in topology.clusters
        ],
        "tenants": [
            {
                "name": t.name,
                "weight": t.weight,
                **(
                    {
                        "quota": {
                            "cpu": t.quota.cpu,
                            "memoryGiB": t.quota.memory_gib,
                            "gpu": t.quota.gpu,
                        }
                    }
                    if t.quota
                    else {}
                ),
            }
            for t in topology.tenants
        ],
    }
    paths = {
        "topology": directory / "topology.yaml",
        "latency": directory / "latency.csv",
        "trace": directory / "trace.csv",
        "failures": directory / "failures.csv",
    }
    paths["topology"].write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    latency = io.StringIO()
    writer = csv.writer(latency, lineterminator="\n")
    writer.writerow(LATENCY_COLUMNS)
    for link in topology.network.links:
        writer.writerow([link.from_site, link.to_site, link.rtt_ms, link.bandwidth_mbps])
    paths["latency"].write_text(latency.getvalue(), encoding="utf-8")
    trace = io.StringIO()
    writer = csv.writer(trace, lineterminator="\n")
    writer.writerow(TRACE_COLUMNS + OPTIONAL_TRACE_COLUMNS)
    for item in workload.jobs:
        job = item.job
        residency = job.data[0].residency.value if job.data else ""
        rate = sum(s.rate_mbps for s in job.data) / len(job.data) if job.data else ""
        writer.writerow(
            [
                job.submit_time_s,
                job.key,
                job.tenant,
                job.mode.value,
                job.shards,
                job.gang_size,
                job.demand.cpu,
                job.demand.memory_gib,
                job.demand.gpu,
                item.duration_s,
                ";".join(s.site for s in job.data),
                residency,
                "" if job.latency_slo_ms is None else job.latency_slo_ms,
                job.priority,
                rate,
            ]
        )
    paths["trace"].write_text(trace.getvalue(), encoding="utf-8")
    failures = io.StringIO()
    writer = csv.writer(failures, lineterminator="\n")
    writer.writerow(FAILURE_COLUMNS)
    for failure in workload.failures:
        writer.writerow([failure.at_s, failure.cluster, failure.kind.value, failure.duration_s])
    paths["failures"].write_text(failures.getvalue(), encoding="utf-8")
    return paths
