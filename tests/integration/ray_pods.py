"""What the real Ray pods of a shard printed, as the node agent keeps it: each pod's container
logs under its node's folder in the testbed (e2e/node_agent.py)."""

from __future__ import annotations

from kubernetes import client

from e2e.operator_process import member_api
from e2e.pytest_plugin import RunningTestbed, eventually


def submitter_log(
    testbed: RunningTestbed, member: str, namespace: str, rayjob: str | None = None
) -> str:
    """What the submitter pod of a RayJob in `member` printed (`ray job submit` follows the
    driver's output); of the namespace's only RayJob when `rayjob` is None."""
    member_client = member_api(testbed, member)
    try:
        pods = client.CoreV1Api(member_client).list_namespaced_pod(namespace).items
    finally:
        member_client.close()
    labels = [(p, (p.metadata.labels or {}).get("job-name")) for p in pods]
    submitters = [p for p, job in labels if job and (rayjob is None or job == rayjob)]
    assert submitters, [p.metadata.name for p in pods]
    logs = []
    for pod in submitters:
        key = pod.metadata.uid.replace("-", "")[:10]
        folder = testbed.testbed.cluster_dir(member) / "node" / "pods" / key
        logs.extend(path.read_text() for path in sorted(folder.glob("*.log")))
    return "".join(logs)


def finished_log(
    testbed: RunningTestbed, member: str, namespace: str, last_line: str, rayjob: str | None = None
) -> str:
    """The submitter's log once it holds `last_line`: the job can be Succeeded on the hub
    (KubeRay asks the dashboard) before `ray job submit` has printed the driver's last lines."""

    def complete() -> str:
        log = submitter_log(testbed, member, namespace, rayjob)
        return log if last_line in log else ""

    found: str = eventually(
        complete, f"{last_line!r} in the submitter's log", timeout=60, interval=1
    )
    return found
