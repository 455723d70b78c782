"""`continuum operator run --namespace A` on the testbed: the operator schedules, deploys, sweeps
and writes status for the MLJobs of A only. A job in another namespace B gets no Placement, no
status and no shard resource, and a shard resource in B of a member is never swept.

B's job is applied before A's, so that an operator which saw B would have placed it by the time
A's is placed; B is checked then, and again after more cycles and a resync have run.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from e2e.operator_process import REPO, Operator, get_json
from e2e.pytest_plugin import RunningTestbed
from e2e.pytest_plugin import eventually as wait_until
from e2e.registration import register_members

pytestmark = pytest.mark.integration

EXAMPLES = REPO / "examples"
WAIT_S = 60.0
JOB = "scoped-detector"
SHARD_KINDS = ("rayjobs", "rayservices")
# The fixture's operator runs a cycle every second and resyncs every 3 s (e2e/operator_process).
CYCLES_FOR_A_RESYNC = 5


def eventually(check: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    # Each check runs kubectl, so poll less often than the shared default.
    return wait_until(check, what, timeout, interval=0.2)


@dataclass(frozen=True)
class Scope:
    operator: Operator
    watched: str
    other: str


@pytest.fixture(scope="module")
def scope(testbed: RunningTestbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scope]:
    register_members([testbed.hub, *testbed.members], None)
    # Neither Tenant names namespaces, so each admits every namespace: B's job is one the
    # operator would schedule, were B watched.
    testbed.kubectl("apply", "-f", str(EXAMPLES / "tenants.yaml"))
    suffix = uuid.uuid4().hex[:6]
    watched, other = f"scope-a-{suffix}", f"scope-b-{suffix}"
    for name in (watched, other):
        testbed.kubectl("create", "namespace", name)
    operator = Operator(
        testbed.hub.kubeconfig,
        tmp_path_factory.mktemp("operator") / "log",
        extra_args=["--namespace", watched],
    )
    operator.start()
    try:
        yield Scope(operator, watched, other)
    finally:
        # The watched job's finalizer goes once the operator has cleaned the members.
        for name in (watched, other):
            testbed.kubectl("delete", "mljobs", "--all", "-n", name, "--timeout=60s", check=False)
        if operator.process is not None:
            operator.stop()
        for name in (watched, other):
            testbed.kubectl("delete", "namespace", name, "--wait=false", check=False)
            for member in testbed.members:
                testbed.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found",
                                cluster=member, check=False)  # fmt: skip


def apply_job(testbed: RunningTestbed, namespace: str) -> None:
    manifest = (EXAMPLES / "mljob-inference.yaml").read_text()
    manifest = manifest.replace("name: defect-detector", f"name: {JOB}")
    manifest = manifest.replace("namespace: default", f"namespace: {namespace}")
    testbed.kubectl("apply", "-f", "-", stdin=manifest)


def shard_resources(testbed: RunningTestbed, namespace: str, job: str) -> dict[str, list[str]]:
    """Member name -> "kind/name" of the job's shard resources in `namespace` there."""
    found: dict[str, list[str]] = {}
    for member in testbed.members:
        found[member.name] = []
        for kind in SHARD_KINDS:
            listed = get_json(testbed, kind, "-n", namespace, "-l", f"continuum.dev/job={job}",
                              cluster=member)  # fmt: skip
            found[member.name] += [f"{kind}/{item['metadata']['name']}" for item in listed["items"]]
    return found


def placement_of(testbed: RunningTestbed, namespace: str) -> dict[str, Any] | None:
    uid = (get_json(testbed, "mljob", JOB, "-n", namespace) or {}).get("metadata", {}).get("uid")
    spec = (get_json(testbed, "placement", JOB, "-n", namespace) or {}).get("spec")
    return spec if uid and spec and spec["jobRef"].get("uid") == uid else None


def assert_untouched(testbed: RunningTestbed, namespace: str) -> None:
    """The job in `namespace` is as its user applied it: nothing of the operator's on it."""
    job = get_json(testbed, "mljob", JOB, "-n", namespace)
    assert job is not None
    assert not job.get("status"), job.get("status")
    assert "continuum.dev/cleanup" not in (job["metadata"].get("finalizers") or [])
    assert get_json(testbed, "placement", JOB, "-n", namespace) is None
    assert not any(shard_resources(testbed, namespace, JOB).values())


def cycles_run(operator: Operator) -> float:
    code, exposition = operator.probe("/metrics")
    assert code == 200
    return float(
        next(
            line.split()[-1]
            for line in exposition.splitlines()
            if line.startswith("continuum_scheduling_cycle_seconds_count")
        )
    )


def wait_for_cycles(operator: Operator, count: int) -> None:
    start = cycles_run(operator)
    eventually(lambda: cycles_run(operator) >= start + count, f"{count} more scheduling cycles")


def plant_orphan(testbed: RunningTestbed, namespace: str, job: str) -> None:
    """A RayJob labelled as Continuum's, of a job that does not exist, in member-1."""
    labels = {"continuum.dev/managed-by": "continuum", "continuum.dev/job": job,
              "continuum.dev/job-uid": "0000", "continuum.dev/shard": "0"}  # fmt: skip
    orphan = {
        "apiVersion": "ray.io/v1", "kind": "RayJob",
        "metadata": {"name": f"{job}-0", "namespace": namespace, "labels": labels,
                     "annotations": {"continuum.dev/job-name": job}},
        "spec": {"entrypoint": "python t.py"},
    }  # fmt: skip
    space = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    listed = {"apiVersion": "v1", "kind": "List", "items": [space, orphan]}
    testbed.kubectl("apply", "-f", "-", stdin=json.dumps(listed), cluster=testbed.members[0])


def test_only_the_watched_namespace_is_scheduled_and_deployed(
    testbed: RunningTestbed, scope: Scope
) -> None:
    apply_job(testbed, scope.other)
    apply_job(testbed, scope.watched)

    placement = eventually(lambda: placement_of(testbed, scope.watched), "A's Placement")
    assert placement["decisions"], placement
    deployed = eventually(
        lambda: any(shard_resources(testbed, scope.watched, JOB).values()),
        "A's shard resource in a member",
    )
    assert deployed
    eventually(
        lambda: (get_json(testbed, "mljob", JOB, "-n", scope.watched) or {})
        .get("status", {}).get("phase") in ("Placed", "Running"),
        "A's status",
    )  # fmt: skip
    assert_untouched(testbed, scope.other)

    # Not merely not yet: more cycles and a resync later, B is still as its user left it.
    wait_for_cycles(scope.operator, CYCLES_FOR_A_RESYNC)
    assert_untouched(testbed, scope.other)


def test_orphans_are_swept_in_the_watched_namespace_only(
    testbed: RunningTestbed, scope: Scope
) -> None:
    plant_orphan(testbed, scope.other, "ghost-b")
    plant_orphan(testbed, scope.watched, "ghost-a")
    member = testbed.members[0].name

    eventually(
        lambda: shard_resources(testbed, scope.watched, "ghost-a")[member] == [],
        "the orphan in A to be swept",
    )
    assert shard_resources(testbed, scope.other, "ghost-b")[member] == ["rayjobs/ghost-b-0"]
    wait_for_cycles(scope.operator, CYCLES_FOR_A_RESYNC)
    assert shard_resources(testbed, scope.other, "ghost-b")[member] == ["rayjobs/ghost-b-0"]
