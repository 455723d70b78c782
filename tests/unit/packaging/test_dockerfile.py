"""The operator's image as the Dockerfile makes it. No container runtime runs here, so what is
checked is what the chart relies on: a numeric non-root user (a kubelet verifies runAsNonRoot
only on one), no ENTRYPOINT (the chart gives args only), and every folder the package needs
copied in; the wheel it installs is the one `pip wheel .` builds from the same files."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]


def final_stage() -> list[list[str]]:
    lines = (REPO / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    instructions = [line.split() for line in lines if line.strip() and not line.startswith("#")]
    last_from = max(i for i, words in enumerate(instructions) if words[0] == "FROM")
    return instructions[last_from:]


def test_the_image_runs_as_a_numeric_user_that_is_not_root_and_has_no_entrypoint() -> None:
    stage = final_stage()
    users = [words[1] for words in stage if words[0] == "USER"]
    assert users and all(part.isdigit() and part != "0" for part in users[-1].split(":"))
    assert not any(words[0] == "ENTRYPOINT" for words in stage)
    assert next(w for w in stage if w[0] == "ENV")[:2] == ["ENV", "HOME=/tmp"]


def test_every_folder_the_package_links_to_is_copied_into_the_build() -> None:
    text = (REPO / "Dockerfile").read_text()
    linked = {path.name for path in (REPO / "continuum").iterdir() if path.is_symlink()}
    copied = {line.split()[1] for line in text.splitlines() if line.startswith("COPY ")}
    assert linked <= copied, linked - copied
    ignored = (REPO / ".dockerignore").read_text().split()
    assert not linked & set(ignored)


def test_the_chart_mounts_a_writable_tmp_for_the_read_only_root() -> None:
    deployment = (REPO / "charts" / "continuum" / "templates" / "deployment.yaml").read_text()
    assert "readOnlyRootFilesystem: true" in deployment
    assert "{name: tmp, mountPath: /tmp}" in deployment
