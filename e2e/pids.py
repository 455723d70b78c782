"""Processes and state files the testbed, its sites and its monitoring keep: whether a process
has exited, reaping a child, stopping one, and writing a state file so that a reader never sees
half of it.
Standard library only: the testbed runs before any virtualenv exists."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any


def has_exited(pid: int) -> bool:
    """Gone, or dead and waiting to be reaped (Z, X) with none of its threads left: nothing of
    it runs any more. A thread group's leader shows Z while its other threads still exit, and
    they hold its files (a server's listening socket) until the last one is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    if stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
        return False
    try:
        return len(list(Path(f"/proc/{pid}/task").iterdir())) <= 1
    except OSError:
        return True


def reap(pid: int) -> None:
    """Collects the exit status of a child of this process, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_pid(pid: int, timeout_s: float = 15.0) -> None:
    """Stops `pid`: SIGTERM, and SIGKILL if it has not exited `timeout_s` later; waits (bounded)
    for it to be gone and reaps it if it is a child."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout_s
        while not has_exited(pid) and time.monotonic() < deadline:
            reap(pid)
            time.sleep(0.05)
        if has_exited(pid):
            break
    reap(pid)


def write_json(path: Path, state: Any) -> None:
    """Writes `state` to `path` through a temporary file and a rename: all of it or none."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2) + "\n")
    temporary.replace(path)
