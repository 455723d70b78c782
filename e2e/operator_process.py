"""`continuum operator run` as a separate process against the testbed's hub, for tests.

The operator runs as a user runs it, so that tests can stop it with SIGTERM, kill it with
SIGKILL, read its log and ask its probes. The helpers beside it read the hub and the members as
kubectl shows them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kubernetes import client, config

from e2e.pytest_plugin import RunningTestbed
from e2e.testbed import ClusterInfo, free_port

REPO = Path(__file__).resolve().parents[1]


class Operator:
    """One operator process: `start()` it, `stop()` it; `extra_args` go to `operator run`."""

    def __init__(self, kubeconfig: Path, log: Path, extra_args: Sequence[str] = ()) -> None:
        self.kubeconfig, self.log = kubeconfig, log
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None
        self.webhook_port, self.metrics_port = free_port(), free_port()

    def start(self) -> None:
        output = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "continuum.operator.cli", "operator", "run",
             "--kubeconfig", str(self.kubeconfig), "--cycle-interval", "1",
             "--resync-interval", "3",
             "--webhook-port", str(self.webhook_port), "--metrics-port", str(self.metrics_port),
             *self.extra_args],
            stdout=output, stderr=subprocess.STDOUT, cwd=REPO,
        )  # fmt: skip

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=30)
        self.process = None
        return code

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def probe(self, path: str) -> tuple[int, str]:
        """GET one of the operator's HTTP paths (/healthz, /readyz, /metrics): status, body;
        status 0 when nothing answers."""
        url = f"http://127.0.0.1:{self.metrics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except (urllib.error.URLError, OSError) as error:
            return 0, f"no answer: {error}"  # not listening yet, or gone


def member_api(testbed: RunningTestbed, name: str) -> client.ApiClient:
    member = next(member for member in testbed.members if member.name == name)
    return config.new_client_from_config(config_file=str(member.kubeconfig))


def get_json(testbed: RunningTestbed, *args: str, cluster: ClusterInfo | None = None) -> Any:
    """`kubectl get ARGS -o json` in the hub (or `cluster`); None when it finds nothing."""
    output = testbed.kubectl("get", *args, "-o", "json", cluster=cluster, check=False)
    return json.loads(output) if output else None


def condition(obj: Any, kind: str) -> dict[str, Any] | None:
    conditions = (obj or {}).get("status", {}).get("conditions", [])
    return next((entry for entry in conditions if entry["type"] == kind), None)
