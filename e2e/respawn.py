"""Runs a command, and again when it fails, a bounded number of times: for a testbed server that
exits when its API server does not answer yet, as KubeRay's operator does when its site is
restored and all the site's servers start at once.

    python e2e/respawn.py [--attempts 60] [--delay-s 1] -- COMMAND ...

SIGTERM and SIGINT go to the command, and end the loop. It exits with the command's last status.
Standard library only.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="respawn", description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=60)
    parser.add_argument("--delay-s", type=float, default=1.0)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def forward(sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    code = 0
    for attempt in range(args.attempts):
        if attempt:
            time.sleep(args.delay_s)
        if stopping:
            break
        child = subprocess.Popen(args.command)
        code = child.wait()
        if code == 0 or stopping:
            break
        print(f"respawn: {args.command[0]} exited {code}", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
