"""The testbed's Go-built binaries: built once per pinned version, cached outside the repository.

Three Go modules under e2e/go pin them: `kube` (kube-apiserver, kube-controller-manager,
kube-scheduler, kubectl and etcd, whose versions Kubernetes itself requires), `helm` and
`kuberay` (the real KubeRay operator, and its CRDs from the same module). They are separate so
that one's dependencies cannot move another's under Go's minimal version selection.
The cache key holds the version and a digest of the module's go.sum, so a changed pin builds
afresh and an unchanged one builds nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

GO_MODULES = Path(__file__).resolve().parent / "go"
KUBERNETES_VERSION = "v1.37.2"
HELM_VERSION = "v4.3.2"
# The newest ray-operator the Go module proxy serves (v1.7.x is refused there); users also run
# v1.7.0, whose CRDs ../shared/kuberay holds, and the shard manifests are checked against both.
KUBERAY_VERSION = "v1.6.2"
KUBERAY_MODULE = "github.com/ray-project/kuberay/ray-operator"


@dataclass(frozen=True)
class GoBuild:
    name: str
    version: str
    module_dir: Path
    # package path -> name of the binary it becomes
    packages: dict[str, str]
    ldflags: tuple[str, ...] = ()
    # (module, directory inside it, name): data the module ships, copied into the cache entry
    # beside bin/ under `name`, so that it is pinned with the binaries.
    module_data: tuple[tuple[str, str, str], ...] = ()


KUBE = GoBuild(
    name="kube",
    version=KUBERNETES_VERSION,
    module_dir=GO_MODULES / "kube",
    packages={
        "k8s.io/kubernetes/cmd/kube-apiserver": "kube-apiserver",
        "k8s.io/kubernetes/cmd/kube-controller-manager": "kube-controller-manager",
        "k8s.io/kubernetes/cmd/kube-scheduler": "kube-scheduler",
        "k8s.io/kubernetes/cmd/kubectl": "kubectl",
        "go.etcd.io/etcd/server/v3": "etcd",
    },
    # Without these the binaries report v0.0.0-master, which kubectl flags as version skew.
    ldflags=(
        f"-X k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION}",
        "-X k8s.io/component-base/version.gitMajor=1",
        "-X k8s.io/component-base/version.gitMinor=" + KUBERNETES_VERSION.split(".")[1],
        "-X k8s.io/component-base/version.gitTreeState=clean",
    ),
)
HELM = GoBuild(
    name="helm",
    version=HELM_VERSION,
    module_dir=GO_MODULES / "helm",
    packages={"helm.sh/helm/v4/cmd/helm": "helm"},
    ldflags=(f"-X helm.sh/helm/v4/internal/version.version={HELM_VERSION}",),
)
KUBERAY = GoBuild(
    name="kuberay",
    version=KUBERAY_VERSION,
    module_dir=GO_MODULES / "kuberay",
    packages={KUBERAY_MODULE: "ray-operator"},
    module_data=((KUBERAY_MODULE, "config/crd/bases", "crds"),),
)
BUILDS = (KUBE, HELM, KUBERAY)


def cache_root() -> Path:
    configured = os.environ.get("CONTINUUM_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "continuum"


def bin_dir(build: GoBuild) -> Path:
    digest = hashlib.sha256((build.module_dir / "go.sum").read_bytes()).hexdigest()[:12]
    return cache_root() / f"{build.name}-{build.version}-{digest}" / "bin"


def data_dir(build: GoBuild, name: str) -> Path:
    """Where the cache entry keeps the `build.module_data` directory called `name`."""
    return bin_dir(build).parent / name


def is_built(build: GoBuild) -> bool:
    directory = bin_dir(build)
    return all(
        os.access(directory / binary, os.X_OK) for binary in build.packages.values()
    ) and all(data_dir(build, name).is_dir() for _, _, name in build.module_data)


@contextmanager
def _build_lock() -> Iterator[None]:
    cache_root().mkdir(parents=True, exist_ok=True)
    with (cache_root() / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _go_build(build: GoBuild, output: Path) -> None:
    command = [
        "go", "build", "-trimpath", "-ldflags", " ".join(("-s", "-w", *build.ldflags)),
        "-o", str(output) + "/", *build.packages,
    ]  # fmt: skip
    output.mkdir(parents=True, exist_ok=True)
    # The module cache stays where Go keeps it, so a later build of another pin reuses downloads.
    environment = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"}
    subprocess.run(command, cwd=build.module_dir, env=environment, check=True)
    for package, binary in build.packages.items():
        default = output / _go_binary_name(package)
        if default.name != binary:
            default.rename(output / binary)


def _copy_module_data(build: GoBuild, entry: Path) -> None:
    """Copies `build.module_data` from the Go module cache (where the build put the modules)
    into the staged cache entry `entry`."""
    for module, inside, name in build.module_data:
        listed = subprocess.run(
            ["go", "list", "-m", "-f", "{{.Dir}}", module],
            cwd=build.module_dir, env={**os.environ, "GOFLAGS": "-mod=readonly"},
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        source = Path(listed.stdout.strip()) / inside
        target = entry / name
        shutil.copytree(source, target)
        # The module cache is read-only; the copy is made writable so that a rebuild can remove it.
        for path in (target, *target.rglob("*")):
            path.chmod(0o755 if path.is_dir() else 0o644)


def _go_binary_name(package: str) -> str:
    """The name `go build` gives a main package: its last path element, except that a
    major-version suffix such as /v3 names the element before it."""
    elements = package.split("/")
    if re.fullmatch(r"v\d+", elements[-1]):
        return elements[-2]
    return elements[-1]


def ensure_built(build: GoBuild, log: bool = True) -> Path:
    """Builds `build` unless its cache entry is complete; returns the directory of its binaries."""
    if is_built(build):
        return bin_dir(build)
    with _build_lock():
        if is_built(build):
            return bin_dir(build)
        final = bin_dir(build)
        entry = final.parent
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{build.name}-", dir=entry.parent))
        started = time.monotonic()
        if log:
            print(f"building {build.name} {build.version} into {entry}", file=sys.stderr)
        try:
            _go_build(build, staging / final.name)
            _copy_module_data(build, staging)
            shutil.rmtree(entry, ignore_errors=True)
            staging.rename(entry)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if log:
            print(f"built {build.name} in {time.monotonic() - started:.0f} s", file=sys.stderr)
        return final


def binary(name: str) -> Path:
    """The path of a built binary, building its module first if needed."""
    for build in BUILDS:
        if name in build.packages.values():
            return ensure_built(build) / name
    raise KeyError(f"no testbed build provides {name!r}")


def kuberay_crds() -> Path:
    """The folder of the pinned KubeRay's CRDs, building KubeRay first if needed."""
    ensure_built(KUBERAY)
    return data_dir(KUBERAY, "crds")


def kubectl(
    kubeconfig: Path, *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Runs the pinned kubectl against one cluster and captures what it prints."""
    return subprocess.run(
        [str(binary("kubectl")), f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        check=check,
        capture_output=True,
        text=True,
    )


def helm(home: Path, kubeconfig: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs the pinned helm (against one cluster, given its kubeconfig), with its caches and
    config under `home` (a test's own folder, not the user's), and captures what it prints."""
    environment = {
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [str(binary("helm")), *([f"--kubeconfig={kubeconfig}"] if kubeconfig else []), *args],
        capture_output=True, text=True, env=environment, check=False, timeout=120,
    )  # fmt: skip


if __name__ == "__main__":
    for requested in BUILDS:
        print(ensure_built(requested))
