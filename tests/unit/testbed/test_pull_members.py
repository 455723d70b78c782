"""The fault benchmark with Pull members: a RayJob its agent fenced does not run, as the shard
watcher records it, and `continuum member join` is given what push registration gives a member."""

from pathlib import Path

import pytest

from continuum.operator.api.join import parse_capacity
from continuum.operator.api.shard_resources import RAY_JOB
from e2e.fault_metrics import shard_running
from e2e.pull_members import join_command
from e2e.registration import DEFAULT_TOPOLOGY, assign_clusters, load_topology, regions
from e2e.shard_watch import item

pytestmark = pytest.mark.unit

RUNNING = {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}


def test_a_fenced_rayjob_does_not_run_before_kuberay_says_so() -> None:
    assert shard_running("RayJob", RUNNING, {"suspend": False})
    assert not shard_running("RayJob", RUNNING, {"suspend": True})
    resource = {
        "kind": "RayJob",
        "metadata": {"name": "j-0", "uid": "u", "labels": {"continuum.dev/shard": "0"}},
        "spec": {"suspend": True},
        "status": RUNNING,
    }
    recorded = item(RAY_JOB, resource)
    assert recorded["running"] is False and recorded["fenced"] is True


def test_join_gives_a_member_the_site_region_tier_and_capacity_of_its_topology_cluster() -> None:
    topology = load_topology(DEFAULT_TOPOLOGY)
    delft = assign_clusters(topology, 4, DEFAULT_TOPOLOGY)[0]
    command = join_command(
        "member-1", delft, regions(topology)["delft"], "https://10.77.0.1:6443", Path("hub.kc")
    )
    options = dict(zip(command[6::2], command[7::2], strict=True))
    assert command[3:6] == ["member", "join", "member-1"]
    assert options["--site"] == "delft" and options["--region"] == "eu-west"
    assert options["--tier"] == "Edge" and options["--server"] == "https://10.77.0.1:6443"
    assert parse_capacity(options["--capacity"]) == {"cpu": "8", "memory": "32Gi", "gpu": "0"}
    assert options["--output"] == "kubeconfig" and options["--kubeconfig"] == "hub.kc"
