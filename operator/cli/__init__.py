"""The `continuum` command: one entry point whose subcommands live in their own modules.

Each subcommand module defines add_arguments(parser) and run(args) -> int, and keeps its heavy
imports (numpy, Ray, Kopf) inside run(), so that `continuum --help` stays fast and a missing
optional dependency breaks only the subcommand that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence

# name -> (module, help). Each module defines add_arguments(parser) and run(args) -> int.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "crds": ("continuum.operator.cli.crds", "generate the CRDs from the API models, or check them"),
    "bench": (
        "continuum.operator.cli.bench",
        "compare placement policies on a scenario or a trace",
    ),
    "demo": ("continuum.operator.cli.demo", "run the embedded demo on a local Ray cluster"),
    "operator": ("continuum.operator.cli.operator", "run the operator against a hub cluster"),
    "member": (
        "continuum.operator.cli.member",
        "admit a Pull member to the hub (join), or remove it (leave)",
    ),
    "agent": (
        "continuum.operator.cli.agent",
        "run a Pull member's agent: it converges the member's work from the hub",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="continuum", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text)
        sub.set_defaults(module_name=module_name)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            sub.set_defaults(unavailable=f"`continuum {name}` is not built yet")
            continue
        module.add_arguments(sub)
    return parser


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    # SIGTERM is how Kubernetes, CI and the tests ask a process to stop. Until a subcommand
    # installs its own handling (the operator's Kopf loop does), it is a clean stop: `finally`
    # blocks and atexit handlers run, and the exit status is 0, not death by signal.
    signal.signal(signal.SIGTERM, _stop)
    args = build_parser().parse_args(argv)
    unavailable = getattr(args, "unavailable", None)
    if unavailable:
        print(unavailable, file=sys.stderr)
        return 2
    module = importlib.import_module(args.module_name)
    result: int = module.run(args)
    return result
