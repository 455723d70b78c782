"""Session-scoped fixtures that give tests the testbed's hub and member clusters.

One testbed serves the whole test session: starting control planes costs seconds, and tests
isolate themselves by namespace. With CONTINUUM_TESTBED_DIR set to the folder of a running
testbed (`python e2e/testbed.py up --dir ...`), tests reuse it and leave it running; otherwise
the session starts its own under pytest's temporary folder and stops it at the end. With
CONTINUUM_TESTBED_SITES set (root only), each member runs at its topology site (e2e/sites.py);
with CONTINUUM_TESTBED_PROMETHEUS set as well, Prometheus and the blackbox exporters measure the
links between the sites (e2e/monitoring.py), at `testbed.prometheus_url`.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from e2e.binaries import kubectl
from e2e.testbed import HUB, ClusterInfo, Testbed, member_sites

# Three edge sites and the cloud: what the federated example needs.
MEMBERS = 4


def eventually(
    check: Callable[[], Any],
    what: str = "the condition",
    timeout: float = 30.0,
    interval: float = 0.05,
) -> Any:
    """Polls `check` every `interval` seconds until it returns something true, and returns
    that; fails after `timeout` seconds, naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


@dataclass(frozen=True)
class RunningTestbed:
    testbed: Testbed
    hub: ClusterInfo
    members: tuple[ClusterInfo, ...]
    # The testbed's Prometheus (CONTINUUM_TESTBED_PROMETHEUS), or None.
    prometheus_url: str | None = None

    def kubectl(self, *args: str, cluster: ClusterInfo | None = None, stdin: str | None = None,
                check: bool = True) -> str:  # fmt: skip
        result = kubectl((cluster or self.hub).kubeconfig, *args, stdin=stdin, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout


def running_testbed(
    directory: Path,
    sites: bool,
    prometheus: bool,
    keep: bool = False,
    members: int = MEMBERS,
    kuberay: bool = False,
    hub_node: bool = False,
) -> Iterator[RunningTestbed]:
    """A testbed of `members` members in `directory`, up for as long as the generator is; with
    `sites`, each member at its topology site, and with `prometheus` as well, Prometheus and
    the blackbox exporters measuring the links; with `kuberay`, each member runs
    kube-scheduler and the real KubeRay operator; with `hub_node` (and `sites`), the hub has
    a node that runs its pods. `keep` leaves it running afterwards."""
    bed = Testbed(directory)
    clusters = bed.up(members, member_sites(members, None) if sites else None,
                      prometheus=sites and prometheus, kuberay=kuberay,
                      hub_node=hub_node)  # fmt: skip
    hub = next(cluster for cluster in clusters if cluster.name == HUB)
    started = tuple(cluster for cluster in clusters if cluster.name != HUB)
    try:
        yield RunningTestbed(
            bed, hub, started, bed.prometheus_url() if sites and prometheus else None
        )
    finally:
        if not keep:
            bed.down()


@pytest.fixture(scope="session")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTestbed]:
    reused = os.environ.get("CONTINUUM_TESTBED_DIR")
    directory = Path(reused) if reused else tmp_path_factory.mktemp("testbed")
    # Opt-in: each member in its site's network namespace, behind the link emulator.
    sites = bool(os.environ.get("CONTINUUM_TESTBED_SITES"))
    prometheus = bool(os.environ.get("CONTINUUM_TESTBED_PROMETHEUS"))
    yield from running_testbed(directory, sites, prometheus, keep=bool(reused))


def _fresh_namespace(testbed: RunningTestbed) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    testbed.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        testbed.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def hub_api(testbed: RunningTestbed) -> Iterator[client.ApiClient]:
    """A Kubernetes client of the hub, as its admin."""
    api = config.new_client_from_config(config_file=str(testbed.hub.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def namespace(testbed: RunningTestbed) -> Iterator[str]:
    """A fresh namespace in the hub, deleted after the test."""
    yield from _fresh_namespace(testbed)


@pytest.fixture(scope="module")
def module_namespace(testbed: RunningTestbed) -> Iterator[str]:
    """A fresh namespace in the hub for a whole module, where one per test would cost more
    than the test."""
    yield from _fresh_namespace(testbed)
