"""`continuum agent` as a separate process against the testbed, for tests: a Pull member's agent
that dials the hub and its own member cluster, as a user runs it, so that tests can stop it with
SIGTERM, kill it with SIGKILL, read its log and scrape its metrics.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from e2e.operator_process import REPO
from e2e.testbed import free_port


class AgentProcess:
    """One agent process of member `member`: `start()` it, `stop()` it; its output goes to
    `log` (appended to, so a restarted agent's log follows the first one's)."""

    def __init__(
        self,
        member: str,
        member_kubeconfig: Path,
        hub_kubeconfig: Path,
        log: Path,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.member = member
        self.member_kubeconfig, self.hub_kubeconfig, self.log = (
            member_kubeconfig, hub_kubeconfig, log,
        )  # fmt: skip
        self.extra_args = list(extra_args)
        self.metrics_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        output = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "continuum.operator.cli", "agent", "--member", self.member,
             "--kubeconfig", str(self.member_kubeconfig),
             "--hub-kubeconfig", str(self.hub_kubeconfig),
             "--metrics-port", str(self.metrics_port), *self.extra_args],
            stdout=output, stderr=subprocess.STDOUT, cwd=REPO,
        )  # fmt: skip
        output.close()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Sends `sig` and waits for the process to end; returns its exit status."""
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=30)
        self.process = None
        return code

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def metrics(self) -> dict[str, float]:
        """The agent's own metrics (continuum_agent_*), by name; empty when nothing answers."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                text = reply.read().decode()
        except (urllib.error.URLError, OSError):
            return {}
        found = {}
        for line in text.splitlines():
            if line.startswith("continuum_agent_"):
                name, _, value = line.partition(" ")
                found[name] = float(value)
        return found

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
