"""The benchmark formats: what loads, what is refused, and how the refusal reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from continuum.operator.cli import bench
from continuum.schedulers.loaders import (
    FormatError,
    load_workload,
    parse_failures,
    parse_latency,
    parse_topology,
    parse_trace,
    write_workload,
)
from continuum.schedulers.model import Mode, Residency
from continuum.schedulers.sim.generators import (
    TopologySpec,
    WorkloadSpec,
    generate_failures,
    generate_jobs,
    generate_topology,
)
from continuum.schedulers.trace import FailureKind, Workload

pytestmark = pytest.mark.unit

HEADER = (
    "submit_s,job,tenant,mode,shards,min_shards,cpu,memory_gib,gpu,duration_s,"
    "data_site,residency,latency_slo_ms,priority\n"
)
TOPOLOGY = """
sites:
  - {name: delft, region: nl}
  - {name: cloud, region: eu}
clusters:
  - {name: delft-1, tier: Edge, site: delft, cpu: 8, memoryGiB: 32, gpu: 0, costPerHour: 0.3}
  - {name: cloud-1, tier: Cloud, site: cloud, cpu: 64, memoryGiB: 256, gpu: 8, costPerHour: 3}
tenants:
  - {name: vision, weight: 2, quota: {cpu: 16, memoryGiB: 64}}
"""


def test_a_trace_row_with_empty_fields_takes_the_defaults() -> None:
    (item,) = parse_trace(HEADER + "0,j1,,,,,,,,60,,,,\n")
    job = item.job
    assert (job.tenant, job.mode, job.shards, job.gang_size) == ("default", Mode.TRAINING, 1, 1)
    assert (job.demand.cpu, job.latency_slo_ms, job.data, item.duration_s) == (1.0, None, (), 60.0)


def test_a_federated_row_maps_one_shard_per_listed_site() -> None:
    (item,) = parse_trace(HEADER + "5,fed,t,Federated,,,1,2,0,60,delft;cloud,Site,,1\n")
    assert item.job.shards == 3
    assert [s.site for s in item.job.data] == ["delft", "cloud"]
    assert {s.residency for s in item.job.data} == {Residency.SITE}


def test_the_header_is_optional_when_columns_are_in_order() -> None:
    (item,) = parse_trace("0,j1,t,Inference,2,1,0.5,1,0,30,delft,Region,40,2\n")
    assert (item.job.shards, item.job.latency_slo_ms, item.job.priority) == (2, 40.0, 2)


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ("0,j1,t,Training,2,1,abc,1,0,60,,,,", "cpu", "'abc' is not a number"),
        ("0,j1,t,Sprint,2,1,1,1,0,60,,,,", "mode", "is not one of Training"),
        ("0,j1,t,Training,2,3,1,1,0,60,,,,", "min_shards", "more than the 2 shards"),
        ("0,j1,t,Training,2,1,1,1,0,,,,,", "duration_s", "is required"),
        ("0,j1,t,Federated,2,2,1,1,0,60,a;b,Site,,", "shards", "aggregator"),
        ("0,j1,t,Training,1,1,1,1,0,60,,Nowhere,,", "residency", "is not one of"),
        ("-1,j1,t,Training,1,1,1,1,0,60,,,,", "submit_s", "at least 0"),
    ],
)
def test_a_bad_trace_row_names_its_line_and_field(row: str, field: str, words: str) -> None:
    text = HEADER + "0,ok,t,Training,1,1,1,1,0,60,,,,\n" + row + "\n"
    with pytest.raises(FormatError) as caught:
        parse_trace(text, "trace.csv")
    assert caught.value.line == 3
    assert caught.value.field == field
    assert str(caught.value).startswith(f"trace.csv:3: field '{field}':")
    assert words in str(caught.value)


def test_duplicate_jobs_and_unknown_columns_are_refused() -> None:
    with pytest.raises(FormatError, match="already defined on line 2"):
        parse_trace(HEADER + "0,j,t,,,,,,,1,,,,\n0,j,t,,,,,,,1,,,,\n")
    with pytest.raises(FormatError, match="field 'colour': is not a known column"):
        parse_trace("submit_s,job,colour\n")


def test_topology_latency_and_failures_load() -> None:
    topology = parse_topology(TOPOLOGY)
    assert [c.name for c in topology.clusters] == ["delft-1", "cloud-1"]
    assert topology.tenants[0].quota is not None and topology.tenants[0].quota.cpu == 16
    links = parse_latency("from_site,to_site,rtt_ms,bandwidth_mbps\ndelft,cloud,30,500\n")
    assert (links[0].rtt_ms, links[0].bandwidth_mbps) == (30.0, 500.0)
    (failure,) = parse_failures("at_s,cluster,kind,duration_s\n10,delft-1,down,60\n")
    assert failure.kind is FailureKind.DOWN


def test_a_bad_topology_names_the_field() -> None:
    broken = TOPOLOGY.replace("site: delft, cpu: 8", "site: mars, cpu: 8")
    with pytest.raises(FormatError, match=r"clusters\[0\].site.*'mars' is not a site"):
        parse_topology(broken, "topology.yaml")
    with pytest.raises(FormatError, match="not valid YAML"):
        parse_topology("sites: [", "topology.yaml")
    with pytest.raises(FormatError, match="'lots' is not a number"):
        parse_topology(TOPOLOGY.replace("cpu: 64", "cpu: lots"))


def generated(seed: int) -> Workload:
    rng = np.random.default_rng(seed)
    topology = generate_topology(TopologySpec(), rng)
    jobs = generate_jobs(topology, WorkloadSpec(jobs=15, span_s=600.0), rng)
    return Workload(topology, jobs, generate_failures(topology, 2, 600.0, rng))


def test_a_written_workload_loads_back(tmp_path: Path) -> None:
    workload = generated(3)
    paths = write_workload(workload, tmp_path)
    loaded = load_workload(paths["topology"], paths["latency"], paths["trace"], paths["failures"])
    assert [c.name for c in loaded.topology.clusters] == [
        c.name for c in workload.topology.clusters
    ]
    assert [t.job.key for t in loaded.jobs] == [t.job.key for t in workload.jobs]
    assert [(t.job.shards, t.job.gang_size) for t in loaded.jobs] == [
        (t.job.shards, t.job.gang_size) for t in workload.jobs
    ]
    assert loaded.failures == workload.failures
    assert len(loaded.topology.network.links) == len(workload.topology.network.links)


def test_bench_reports_a_bad_trace_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_workload(generated(4), tmp_path)
    lines = paths["trace"].read_text().splitlines()
    lines[2] = lines[2].replace(",Training,", ",Trianing,").replace(",Inference,", ",Infrence,")
    lines[2] = lines[2].replace(",Federated,", ",Federatd,")
    paths["trace"].write_text("\n".join(lines) + "\n")
    parser = __import__("argparse").ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(
        ["--topology", str(paths["topology"]), "--trace", str(paths["trace"]), "--no-progress"]
    )
    assert bench.run(args) == 2
    error = capsys.readouterr().err
    assert "trace.csv:3: field 'mode':" in error
    assert "Traceback" not in error
