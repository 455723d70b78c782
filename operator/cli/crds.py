"""`continuum crds`: write the CRDs generated from the API models, or check that they are current.

The same files go to crds/ (for kubectl and the testbed) and to charts/continuum/crds/ (for Helm).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from continuum.operator.api.crd import rendered_crds

OUTPUT_DIRS = (Path("crds"), Path("charts/continuum/crds"))
GENERATED_GLOB = "*.continuum.dev.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 naming each file that differs from a fresh generation",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(),
        help="the repository root holding crds/ and charts/ (default: the current directory)",
    )
    parser.add_argument(
        "--stdout",
        action="store_true",
        help="print the CRDs as one multi-document YAML stream instead of writing files",
    )


def drifted(root: Path, expected: dict[str, str]) -> list[Path]:
    """Files under `root` that are missing, differ, or are generated-looking leftovers."""
    stale: list[Path] = []
    for directory in OUTPUT_DIRS:
        for name, content in expected.items():
            path = root / directory / name
            if not path.is_file() or path.read_text(encoding="utf-8") != content:
                stale.append(path)
        if (root / directory).is_dir():
            stale.extend(
                leftover
                for leftover in sorted((root / directory).glob(GENERATED_GLOB))
                if leftover.name not in expected
            )
    return stale


def _problem(path: Path, expected: dict[str, str]) -> str:
    if path.name not in expected:
        return "no longer generated"
    if not path.exists():
        return "missing"
    return "differs from the models"


def write(root: Path, expected: dict[str, str]) -> list[Path]:
    """Writes every CRD, removes leftovers of CRDs no longer generated; returns what changed."""
    changed = drifted(root, expected)
    for directory in OUTPUT_DIRS:
        (root / directory).mkdir(parents=True, exist_ok=True)
        for name, content in expected.items():
            (root / directory / name).write_text(content, encoding="utf-8")
    for path in changed:
        if path.name not in expected:
            path.unlink()
    return changed


def run(args: argparse.Namespace) -> int:
    expected = rendered_crds()
    if args.stdout:
        sys.stdout.write("---\n".join(expected[name] for name in sorted(expected)))
        return 0
    root: Path = args.root
    if args.check:
        stale = drifted(root, expected)
        for path in stale:
            print(f"{path}: {_problem(path, expected)}; run `continuum crds`", file=sys.stderr)
        return 1 if stale else 0
    for path in write(root, expected):
        print(f"wrote {path}" if path.exists() else f"removed {path}")
    return 0
