"""What the link-signals tests share: a testbed with sites and Prometheus, the sites put back as
they were, the MemberCluster's signals read back, and a job placed by its data's site."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from e2e import monitoring
from e2e.operator_process import condition, get_json
from e2e.pytest_plugin import RunningTestbed
from e2e.pytest_plugin import eventually as wait_until
from e2e.sites import Sites, requirements_missing

NEEDS_SITES_AND_PROMETHEUS = [
    pytest.mark.integration,
    pytest.mark.skipif(requirements_missing() is not None, reason=str(requirements_missing())),
    pytest.mark.skipif(
        monitoring.requirements_missing() is not None,
        reason=str(monitoring.requirements_missing()),
    ),
]
# The recording rules' 30 s window, a rule interval, a signals interval and a probe in flight.
SETTLE_S = 30.0 + 2.0 + 2.0 + 1.0


def eventually(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    return wait_until(check, what, timeout, interval=0.5)


def sites_put_back(testbed: RunningTestbed) -> Iterator[Sites]:
    """The testbed's sites; afterwards every link up and unshaped again."""
    bed_sites = testbed.testbed.sites
    yield bed_sites
    for site, link in bed_sites.links().items():
        if link["state"] != "up":
            bed_sites.restore(site)
        bed_sites.shape(site, 0.0)


def member(testbed: RunningTestbed, name: str) -> dict[str, Any]:
    found: dict[str, Any] = get_json(testbed, "membercluster", name) or {}
    return found


def degraded(obj: dict[str, Any]) -> tuple[str, str] | None:
    found = condition(obj, "Degraded")
    return (found["status"], found["reason"]) if found else None


def apply_job(testbed: RunningTestbed, name: str, data_site: str, proactive: bool) -> None:
    """A one-shard training job whose data stays in `data_site`'s region, moved before a
    failure when `proactive`."""
    fault = (
        "\n  faultTolerance: {proactive: {enabled: true, riskThreshold: 0.5}}" if proactive else ""
    )
    testbed.kubectl(
        "apply",
        "-f",
        "-",
        stdin=f"""
apiVersion: continuum.dev/v1alpha1
kind: MLJob
metadata: {{name: {name}, namespace: default}}
spec:
  mode: Training
  tenant: research
  shards: {{count: 1, resources: {{cpu: 500m, memory: 1Gi}}}}
  ray: {{image: rayproject/ray:2.50.0, entrypoint: python -m train}}
  data:
    - {{name: {data_site}-sensors, site: {data_site}, rateMbps: 20, residency: Region}}
  faultTolerance: {fault}
""",
    )


def placement(testbed: RunningTestbed, job: str) -> dict[str, Any] | None:
    found = get_json(testbed, "placement", job, "-n", "default")
    spec: dict[str, Any] | None = (found or {}).get("spec")
    return spec
