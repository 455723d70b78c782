"""Real shards across a fleet of sites: three edge members (delft, eindhoven, ghent) and the
cloud member (frankfurt), every shard a real RayJob or RayService run by the real KubeRay
operator on real Ray pods (the node agent runs them as processes: e2e/node_agent.py).

- A Federated MLJob that really trains: each participant keeps its data at its site and reaches
  the aggregator in the cloud through the sites' links, at the address Continuum publishes in
  the Placement and hands to it.
- An Inference MLJob served by Ray Serve near its data answers real requests from its data
  site within its latency objective; the same server in the cloud, through the shaped links,
  does not.
- A training shard whose site dies mid-training resumes on another member from its checkpoint.

The module brings up its own testbed: the hub and four members started with `--sites
--kuberay` (root only, as every sites test). e2e/kuberay_sim.py is not used here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from continuum.operator.api.shard_resources import shard_resource_name
from e2e import pod_network
from e2e.mljobs import IMAGE, federated_job, training_job
from e2e.operator_process import REPO, Operator
from e2e.pytest_plugin import RunningTestbed, eventually, running_testbed
from e2e.registration import register_members
from e2e.sites import requirements_missing
from tests.integration.ray_pods import finished_log, submitter_log

pytestmark = [
    pytest.mark.integration,
    pytest.mark.realray,
    pytest.mark.skipif(requirements_missing() is not None, reason=str(requirements_missing())),
]

EDGE_SITES = ["delft", "eindhoven", "ghent"]
CLOUD_MEMBER, CLOUD_SITE = "member-4", "frankfurt"
ROUNDS = 5
# Four Ray heads and their submitters start on two cores: a minute or two.
JOB_TIMEOUT_S = 480.0
RESOURCES = {"cpu": "1", "memory": "2Gi"}
ROUND_LINE = re.compile(r"round (\d+) of (\d+): accuracy ([0-9.]+)")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTestbed]:
    yield from running_testbed(
        tmp_path_factory.mktemp("testbed-federated"), True, False, members=4, kuberay=True
    )


@pytest.fixture(scope="module")
def operator(fleet: RunningTestbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    register_members([fleet.hub, *fleet.members], None)
    fleet.kubectl("apply", "-f", str(REPO / "examples" / "tenants.yaml"))
    running = Operator(fleet.hub.kubeconfig, tmp_path_factory.mktemp("federated") / "operator.log")
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _get(fleet: RunningTestbed, kind: str, namespace: str, name: str) -> dict[str, Any]:
    """The object, or {} while there is none."""
    found = fleet.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    body: dict[str, Any] = json.loads(found) if found else {}
    return body


def _finished(fleet: RunningTestbed, namespace: str, name: str) -> str | None:
    phase = (_get(fleet, "mljob", namespace, name).get("status") or {}).get("phase")
    return str(phase) if phase in ("Succeeded", "Failed") else None


def test_a_federated_job_trains_across_three_edge_sites_and_the_cloud(
    fleet: RunningTestbed, operator: Operator, tmp_path: Path
) -> None:
    namespace, name = f"fed-{uuid.uuid4().hex[:8]}", "hvac"
    fleet.kubectl("create", "namespace", namespace)
    checkpoints = tmp_path / "ckpt"
    manifest = federated_job(
        name, namespace, EDGE_SITES,
        entrypoint=f"python -m continuum.workloads.federated --rounds {ROUNDS}",
        checkpoint_uri=f"file://{checkpoints}", resources=RESOURCES,
    )  # fmt: skip
    aggregator = shard_resource_name(name, len(EDGE_SITES))
    try:
        fleet.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
        # The aggregator's address, published once its head pod has one: a pod of the cloud
        # site's network, which the edge sites reach through their links.
        published = eventually(
            lambda: (_get(fleet, "placement", namespace, name).get("status") or {}).get(
                "federation"
            ),
            "the aggregator's address in the Placement",
            timeout=JOB_TIMEOUT_S,
            interval=1,
        )
        assert published["cluster"] == CLOUD_MEMBER, published
        host, port = published["address"].rsplit(":", 1)
        cloud_pods = pod_network.pod_cidr(fleet.testbed.sites.address(CLOUD_SITE))
        assert ip_address(host) in cloud_pods and port == "8470", published

        phase = eventually(lambda: _finished(fleet, namespace, name), "the federated job",
                           timeout=JOB_TIMEOUT_S, interval=2)  # fmt: skip
        assert phase == "Succeeded", submitter_log(fleet, CLOUD_MEMBER, namespace, aggregator)
        status = _get(fleet, "mljob", namespace, name)["status"]
        assert [shard["cluster"] for shard in status["shards"]] == [
            "member-1", "member-2", "member-3", CLOUD_MEMBER,
        ]  # fmt: skip

        log = finished_log(fleet, CLOUD_MEMBER, namespace, f"round {ROUNDS} of {ROUNDS}",
                           aggregator)  # fmt: skip
        rounds = [(int(r), float(a)) for r, _, a in ROUND_LINE.findall(log)]
        assert [r for r, _ in rounds] == list(range(1, ROUNDS + 1)), log
        # Averaging the three sites' models generalises: the global model's accuracy on the
        # sites' reference data rises over the rounds.
        assert rounds[-1][1] > rounds[0][1], rounds
        for index, member in enumerate(["member-1", "member-2", "member-3"]):
            participant = submitter_log(fleet, member, namespace, shard_resource_name(name, index))
            assert "round 1 local accuracy" in participant, participant
        saved = sorted(path.name for path in (checkpoints / "shard-3").glob("round-*.npz"))
        assert saved[-1] == f"round-{ROUNDS:05d}.npz", saved
    finally:
        fleet.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


SLO_MS = 100.0
# Added round trips of the data site's and the cloud's links: a request from delft to the cloud
# crosses both, 100 ms at least, which no server can make up for; one to delft's own member
# crosses neither.
EDGE_RTT_MS, CLOUD_RTT_MS = 60.0, 40.0
SERVE_TIMEOUT_S = 300.0
REQUESTS = 200


def inference_job(name: str, namespace: str, near: bool) -> dict[str, Any]:
    """The HVAC-mode model served for delft's cameras: near them (residency Site) with the SLO,
    or in the cloud (any place, Cloud tier only), held to nothing."""
    manifest = training_job(
        name, namespace, "delft", "Site" if near else "Any", resources=RESOURCES,
        latency_p99_ms=SLO_MS if near else 10_000.0,
        entrypoint="continuum.workloads.inference:app",
    )  # fmt: skip
    manifest["spec"]["mode"] = "Inference"
    manifest["spec"]["ray"] = {"image": IMAGE, "entrypoint": "continuum.workloads.inference:app",
                               "workersPerShard": 0}  # fmt: skip
    if not near:
        manifest["spec"]["placement"] = {"allowedTiers": ["Cloud"]}
    return manifest


def _serving(fleet: RunningTestbed, namespace: str, name: str) -> tuple[str, str] | None:
    """(member, the Ray head pod's IP) once the job's RayService serves."""
    job = _get(fleet, "mljob", namespace, name)
    shards = (job.get("status") or {}).get("shards") or []
    if not shards or shards[0]["state"] != "Running":
        return None
    member = next(m for m in fleet.members if m.name == shards[0]["cluster"])
    pods = json.loads(fleet.kubectl(
        "get", "pods", "-n", namespace, "-l", f"continuum.dev/job={name},ray.io/node-type=head",
        "-o", "json", cluster=member,
    ))["items"]  # fmt: skip
    ips = [p["status"].get("podIP") for p in pods if p["status"].get("phase") == "Running"]
    return (member.name, ips[0]) if ips and ips[0] else None


def _requests_from(fleet: RunningTestbed, site: str, address: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "e2e.inference_load", "--url", f"http://{address}:8000/",
            "--site", site, "--requests", str(REQUESTS), "--max-s", "120"]  # fmt: skip
    done = subprocess.run(fleet.testbed.sites.command(site, argv), cwd=REPO, capture_output=True,
                          text=True, timeout=180, check=True)  # fmt: skip
    measured: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return measured


def test_an_inference_job_near_its_data_answers_real_requests_within_its_slo(
    fleet: RunningTestbed, operator: Operator
) -> None:
    namespace = f"serve-{uuid.uuid4().hex[:8]}"
    fleet.kubectl("create", "namespace", namespace)
    sites = fleet.testbed.sites
    sites.shape("delft", rtt_ms=EDGE_RTT_MS)
    sites.shape(CLOUD_SITE, rtt_ms=CLOUD_RTT_MS)
    try:
        for name, near in (("near", True), ("cloud", False)):
            fleet.kubectl(
                "apply", "-f", "-", stdin=json.dumps(inference_job(name, namespace, near))
            )
        served = {
            name: eventually(lambda name=name: _serving(fleet, namespace, name),
                             f"the {name} server", timeout=SERVE_TIMEOUT_S, interval=2)
            for name in ("near", "cloud")
        }  # fmt: skip
        (near_member, near_ip), (cloud_member, cloud_ip) = served["near"], served["cloud"]
        assert (near_member, cloud_member) == ("member-1", CLOUD_MEMBER)

        near = _requests_from(fleet, "delft", near_ip)
        cloud = _requests_from(fleet, "delft", cloud_ip)
        print(f"inference from delft: near {near}, cloud {cloud}, SLO p99 {SLO_MS} ms")
        assert near["errors"] == 0 and near["count"] == REQUESTS, near
        assert near["p99_ms"] <= SLO_MS, near
        # Through both links every request pays their round trips: over the objective.
        assert cloud["errors"] == 0 and cloud["p50_ms"] >= EDGE_RTT_MS + CLOUD_RTT_MS, cloud
        assert cloud["p99_ms"] > SLO_MS, cloud
    finally:
        sites.shape("delft", rtt_ms=0.0)
        sites.shape(CLOUD_SITE, rtt_ms=0.0)
        fleet.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _shard(fleet: RunningTestbed, namespace: str, name: str) -> dict[str, Any] | None:
    shards = (_get(fleet, "mljob", namespace, name).get("status") or {}).get("shards") or []
    return shards[0] if shards else None


def _site_of(fleet: RunningTestbed, member: str) -> str:
    sites = dict(zip((m.name for m in fleet.members), [*EDGE_SITES, CLOUD_SITE], strict=True))
    return sites[member]


def test_a_training_shard_whose_site_dies_resumes_elsewhere_from_its_checkpoint(
    fleet: RunningTestbed, operator: Operator, tmp_path: Path
) -> None:
    """The site running a training shard loses power mid-training: the operator moves the
    shard to another member, whose new copy resumes from the newest checkpoint the dead one
    wrote, and the step counter goes on from there; once the site is back, its stale copy is
    removed, so the shard never runs twice."""
    namespace, name, steps = f"kill-{uuid.uuid4().hex[:8]}", "survivor", 40
    fleet.kubectl("create", "namespace", namespace)
    checkpoints = tmp_path / "ckpt"
    manifest = training_job(
        name, namespace, None, resources=RESOURCES,
        entrypoint=f"python -m continuum.workloads.training --site delft --steps {steps} "
        "--step-s 1",
    )  # fmt: skip
    manifest["spec"]["faultTolerance"] = {
        "checkpoint": {"uri": f"file://{checkpoints}", "intervalSeconds": 3}
    }
    try:
        fleet.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))

        def checkpointed() -> tuple[str, int] | None:
            shard = _shard(fleet, namespace, name)
            written = sorted((checkpoints / "shard-0").glob("step-*.npz"))
            if shard is None or shard["state"] != "Running" or not written:
                return None
            return shard["cluster"], int(written[-1].stem.removeprefix("step-"))

        first, _ = eventually(checkpointed, "the shard running, with a checkpoint written",
                              timeout=JOB_TIMEOUT_S, interval=1)  # fmt: skip
        site = _site_of(fleet, first)
        fleet.testbed.sites.down(site)
        try:
            # The last checkpoint the dead copy wrote: the site is down, it writes no more.
            written = sorted((checkpoints / "shard-0").glob("step-*.npz"))
            resumable = int(written[-1].stem.removeprefix("step-"))
            assert 0 < resumable < steps, written

            def moved() -> str | None:
                shard = _shard(fleet, namespace, name)
                return shard["cluster"] if shard and shard["cluster"] != first else None

            second = eventually(moved, "the shard moved off the dead site",
                                timeout=JOB_TIMEOUT_S, interval=1)  # fmt: skip
            phase = eventually(lambda: _finished(fleet, namespace, name), "the moved job",
                               timeout=JOB_TIMEOUT_S, interval=2)  # fmt: skip
            assert phase == "Succeeded", submitter_log(fleet, second, namespace)
            log = finished_log(fleet, second, namespace, f"done at step {steps}")
            resumed = re.search(r"resumes at step (\d+) of", log)
            assert resumed is not None and int(resumed.group(1)) >= resumable, log
        finally:
            fleet.testbed.sites.restore(site)

        # Back on line, the dead site's member still holds the stale copy: it is removed.
        eventually(
            lambda: not json.loads(
                fleet.kubectl("get", "rayjobs", "-n", namespace, "-o", "json", check=False,
                              cluster=next(m for m in fleet.members if m.name == first))
                or '{"items": []}'
            )["items"],
            "the stale copy removed from the restored member",
            timeout=JOB_TIMEOUT_S, interval=2,
        )  # fmt: skip
    finally:
        fleet.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
