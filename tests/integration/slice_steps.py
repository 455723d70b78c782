"""The steps of the vertical slice that more than one test module takes: the examples applied
under names of their own, the shard resources found in the members, the federated job brought
to where its participants exist (e2e/kuberay_sim.py plays KubeRay)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from e2e import kuberay_sim
from e2e.operator_process import REPO, get_json, member_api
from e2e.pytest_plugin import RunningTestbed
from e2e.pytest_plugin import eventually as wait_until

EXAMPLES = REPO / "examples"
WAIT_S = 60.0


def eventually(check: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    # Each check runs kubectl, so poll less often than the shared default.
    return wait_until(check, what, timeout, interval=0.2)


class Jobs:
    """The MLJobs one test applies, each an example under a name of its own."""

    def __init__(self, testbed: RunningTestbed) -> None:
        self.testbed = testbed
        self.names: list[str] = []

    def apply(self, example: str, prefix: str | None = None) -> str:
        """Applies examples/`example` as `prefix` (default: the example's own name) plus a
        random suffix; returns the name."""
        manifest = (EXAMPLES / example).read_text()
        own = EXAMPLE_NAMES[example]
        name = f"{prefix or own}-{uuid.uuid4().hex[:6]}"
        self.names.append(name)
        self.testbed.kubectl("apply", "-f", "-", stdin=manifest.replace(own, name))
        return name

    def federated(self, prefix: str | None = None) -> str:
        return self.apply("mljob-federated.yaml", prefix)

    def inference(self, prefix: str | None = None) -> str:
        return self.apply("mljob-inference.yaml", prefix)

    def delete(self) -> None:
        """Deletes the jobs and waits until the operator has cleaned the members of them, so
        that no later test finds their shards."""
        if self.names:
            self.testbed.kubectl("delete", "mljob", *self.names, "-n", "default",
                                 "--ignore-not-found", "--timeout=60s", check=False)  # fmt: skip


EXAMPLE_NAMES = {"mljob-federated.yaml": "hvac-fedavg", "mljob-inference.yaml": "defect-detector"}


def job_selector(job: str) -> str:
    return f"continuum.dev/job={job}"


def shard_resources(testbed: RunningTestbed, kind: str, job: str) -> dict[str, list[str]]:
    """Member name -> names of the job's resources of `kind` there."""
    found = {}
    for member in testbed.members:
        listed = get_json(testbed, kind, "-n", "default", "-l", f"continuum.dev/job={job}",
                          cluster=member)  # fmt: skip
        found[member.name] = sorted(item["metadata"]["name"] for item in listed["items"])
    return found


def placement_of(testbed: RunningTestbed, job: str) -> dict[str, Any] | None:
    """The spec of the job's Placement, once it is this incarnation's (same uid)."""
    uid = (get_json(testbed, "mljob", job, "-n", "default") or {}).get("metadata", {}).get("uid")
    spec = (get_json(testbed, "placement", job, "-n", "default") or {}).get("spec")
    return spec if uid and spec and spec["jobRef"].get("uid") == uid else None


def one_rayjob_per_member(testbed: RunningTestbed, job: str) -> dict[str, list[str]] | None:
    found = shard_resources(testbed, "rayjobs", job)
    return found if all(len(names) == 1 for names in found.values()) else None


AGGREGATOR_MEMBER = "member-4"


def federated_deployed(testbed: RunningTestbed, job: str) -> None:
    """Waits for the federated job's aggregator (on the cloud member), makes it run, as KubeRay
    would, so that its head has an address, and waits for the participants made with it."""

    def aggregator_made() -> bool:
        found = shard_resources(testbed, "rayjobs", job)
        return len(found[AGGREGATOR_MEMBER]) == 1 and not any(
            names for member, names in found.items() if member != AGGREGATOR_MEMBER
        )

    eventually(aggregator_made, "the aggregator's RayJob, and no participant before it runs")
    api = member_api(testbed, AGGREGATOR_MEMBER)
    try:
        kuberay_sim.advance(api, "default", to=kuberay_sim.Target.RUNNING,
                            selector=job_selector(job))  # fmt: skip
    finally:
        api.close()
    eventually(lambda: one_rayjob_per_member(testbed, job), "one RayJob per member")


def make_running(testbed: RunningTestbed, job: str) -> None:
    """Every member reports the job's resources there running, as KubeRay would."""
    for member in testbed.members:
        api = member_api(testbed, member.name)
        try:
            kuberay_sim.advance(api, "default", to=kuberay_sim.Target.RUNNING,
                                selector=job_selector(job))  # fmt: skip
        finally:
            api.close()
