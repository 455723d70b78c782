"""A pod's volumes and its containers' mounts, as the kubelet gives them. Pure: the node agent
(e2e/node_agent.py) gives it the pod, lookups of ConfigMaps and Secrets and a way to get a
service account token, writes the files this returns under the pod's folder, and runs the
mount commands inside the container's own mount namespace before its command.

Volumes: `emptyDir` (a folder; with medium Memory a tmpfs of its sizeLimit), `configMap`,
`secret`, `downwardAPI` and `projected` (serviceAccountToken, configMap, secret, downwardAPI
sources; what the API server's ServiceAccount admission adds to every pod as
`kube-api-access-*`). Anything else is refused, naming the volume. The files are written once,
when the pod starts: updates of a ConfigMap or Secret, and the token's refresh, are not
followed (the token lives an hour, the API server's default).

Mounts: each of a container's `volumeMounts` (with `subPath` and `readOnly`) is a bind mount of
the volume's folder; a container whose `securityContext.readOnlyRootFilesystem` is true gets
the machine's root remounted read-only in its namespace after its volumes are mounted, so it
can write only to them, as in a container.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from continuum.operator.api.quantity import parse_nanos
from e2e.pod_spec import Lookup, NodeFacts, PodSpecError, field_value

# (service account, audience or None, expirationSeconds) -> a token bound to the pod.
TokenSource = Callable[[str, str | None, int], str]
DEFAULT_MODE = 0o644
DEFAULT_TOKEN_EXPIRATION_S = 3607


@dataclass(frozen=True)
class Volume:
    name: str
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    """Path within the volume -> content and mode."""
    memory_bytes: int | None = None
    """An emptyDir of medium Memory: a tmpfs of this size (0: no limit given)."""
    empty_dir: bool = False
    """Writable by every user (0777), as the kubelet makes an emptyDir."""


@dataclass(frozen=True)
class Mount:
    volume: str
    path: str
    read_only: bool = False
    sub_path: str = ""


def _relative(path: str, where: str) -> str:
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts:
        raise PodSpecError(f"{where}: path {path!r} must be relative, without '..'")
    return str(pure)


def _keys(
    data: Mapping[str, str] | None,
    source: Mapping[str, Any],
    where: str,
    default_mode: int,
) -> dict[str, tuple[bytes, int]]:
    name = source.get("name") or source.get("secretName")
    if data is None:
        if source.get("optional"):
            return {}
        raise PodSpecError(f"{where}: {name!r} does not exist")
    items = source.get("items")
    if not items:
        return {key: (value.encode(), default_mode) for key, value in data.items()}
    files = {}
    for item in items:
        key = str(item["key"])
        if key not in data:
            if source.get("optional"):
                continue
            raise PodSpecError(f"{where}: {name!r} has no key {key!r}")
        mode = int(item.get("mode", default_mode))
        files[_relative(str(item["path"]), where)] = (data[key].encode(), mode)
    return files


def _downward(
    pod: Mapping[str, Any], items: Sequence[Mapping[str, Any]], facts: NodeFacts, where: str,
    default_mode: int,
) -> dict[str, tuple[bytes, int]]:  # fmt: skip
    files = {}
    for item in items:
        if "fieldRef" not in item:
            raise PodSpecError(f"{where}: only fieldRef items are supported")
        value = field_value(pod, str(item["fieldRef"]["fieldPath"]), facts)
        mode = int(item.get("mode", default_mode))
        files[_relative(str(item["path"]), where)] = (value.encode(), mode)
    return files


def _projected(
    pod: Mapping[str, Any], volume: Mapping[str, Any], lookup: Lookup, token: TokenSource,
    facts: NodeFacts, where: str,
) -> dict[str, tuple[bytes, int]]:  # fmt: skip
    namespace = str((pod.get("metadata") or {}).get("namespace", ""))
    account = str((pod.get("spec") or {}).get("serviceAccountName") or "default")
    default_mode = int(volume.get("defaultMode", DEFAULT_MODE))
    files: dict[str, tuple[bytes, int]] = {}
    for source in volume.get("sources") or []:
        if "serviceAccountToken" in source:
            spec = source["serviceAccountToken"]
            expiration = int(spec.get("expirationSeconds", DEFAULT_TOKEN_EXPIRATION_S))
            issued = token(account, spec.get("audience"), expiration)
            files[_relative(str(spec["path"]), where)] = (issued.encode(), default_mode)
        elif "configMap" in source:
            reference = source["configMap"]
            data = lookup("configmap", namespace, str(reference.get("name", "")))
            files.update(_keys(data, reference, f"{where} configMap", default_mode))
        elif "secret" in source:
            reference = source["secret"]
            data = lookup("secret", namespace, str(reference.get("name", "")))
            files.update(_keys(data, reference, f"{where} secret", default_mode))
        elif "downwardAPI" in source:
            items = source["downwardAPI"].get("items") or []
            files.update(_downward(pod, items, facts, f"{where} downwardAPI", default_mode))
        else:
            raise PodSpecError(f"{where}: source {sorted(source)} is not supported by this node")
    return files


def volumes(
    pod: Mapping[str, Any], lookup: Lookup, token: TokenSource, facts: NodeFacts
) -> dict[str, Volume]:
    """The pod's volumes by name, with the files each holds."""
    namespace = str((pod.get("metadata") or {}).get("namespace", ""))
    found: dict[str, Volume] = {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        name = str(volume["name"])
        where = f"volume {name}"
        if "emptyDir" in volume:
            empty = volume["emptyDir"] or {}
            memory = None
            if empty.get("medium") == "Memory":
                limit = empty.get("sizeLimit")
                memory = parse_nanos(str(limit)) // 10**9 if limit else 0
            found[name] = Volume(name, memory_bytes=memory, empty_dir=True)
        elif "configMap" in volume:
            reference = volume["configMap"]
            data = lookup("configmap", namespace, str(reference.get("name", "")))
            mode = int(reference.get("defaultMode", DEFAULT_MODE))
            found[name] = Volume(name, _keys(data, reference, where, mode))
        elif "secret" in volume:
            reference = volume["secret"]
            data = lookup("secret", namespace, str(reference.get("secretName", "")))
            mode = int(reference.get("defaultMode", DEFAULT_MODE))
            found[name] = Volume(name, _keys(data, reference, where, mode))
        elif "downwardAPI" in volume:
            spec = volume["downwardAPI"]
            mode = int(spec.get("defaultMode", DEFAULT_MODE))
            found[name] = Volume(name, _downward(pod, spec.get("items") or [], facts, where, mode))
        elif "projected" in volume:
            found[name] = Volume(
                name, _projected(pod, volume["projected"], lookup, token, facts, where)
            )
        else:
            kinds = sorted(set(volume) - {"name"})
            raise PodSpecError(f"{where}: {kinds} volumes are not supported by this node")
    return found


def mounts(container: Mapping[str, Any], known: Mapping[str, Volume]) -> list[Mount]:
    """The container's mounts, checked against the pod's volumes."""
    found = []
    for mount in container.get("volumeMounts") or []:
        volume, path = str(mount["name"]), str(mount["mountPath"])
        if volume not in known:
            raise PodSpecError(f"volumeMounts {path}: no volume {volume!r} in the pod")
        if not PurePosixPath(path).is_absolute():
            raise PodSpecError(f"volumeMounts {path}: mountPath must be absolute")
        sub_path = str(mount.get("subPath") or "")
        if sub_path:
            _relative(sub_path, f"volumeMounts {path} subPath")
        found.append(Mount(volume, path, bool(mount.get("readOnly")), sub_path))
    return found


def read_only_root(container: Mapping[str, Any]) -> bool:
    return bool((container.get("securityContext") or {}).get("readOnlyRootFilesystem"))


def _under(path: str, top: str) -> bool:
    return (
        PurePosixPath(path) == PurePosixPath(top)
        or PurePosixPath(top) in PurePosixPath(path).parents
    )


def mount_commands(
    container_mounts: Sequence[Mount],
    folders: Mapping[str, str],
    known: Mapping[str, Volume],
    read_only: bool,
    image: Mapping[str, str] | None = None,
    veils: Sequence[str] = (),
) -> list[str]:
    """Shell commands, run in the container's own mount namespace before its command: each
    volume's folder (`folders`: volume -> folder on this machine) or tmpfs at its mount path,
    then the root read-only if asked. A bind takes the flags of the mount it copies, so the
    root goes read-only last. Shallower mount paths go first, so that none hides a deeper one.

    `image`: the folders this node runs images from (the stand-in's image: a virtualenv, the
    source it installs and its interpreter), each with a folder to keep it in meanwhile. A
    container's image is never hidden, so one that a mount would hide (a virtualenv under /tmp,
    with an emptyDir on /tmp) is bound aside first and put back inside the mount. `veils` are
    folders a container's user may not pass through (/root, where an interpreter may live): an
    empty tmpfs covers each, and the image beneath is put back inside it."""
    ordered = sorted(container_mounts, key=lambda m: len(PurePosixPath(m.path).parts))
    covers = [*(mount.path for mount in ordered), *veils]
    by_depth = sorted((image or {}).items(), key=lambda item: len(PurePosixPath(item[0]).parts))
    hidden = {path: kept for path, kept in by_depth if any(_under(path, c) for c in covers)}
    commands = [
        f"mount --bind {shlex.quote(path)} {shlex.quote(kept)}" for path, kept in hidden.items()
    ]
    for mount in ordered:
        target = shlex.quote(mount.path)
        memory = known[mount.volume].memory_bytes
        if memory is not None and not mount.sub_path:
            size = f"size={memory}" if memory else "size=50%"
            commands.append(f"mount -t tmpfs -o {size},mode=0777 tmpfs {target}")
        else:
            source = folders[mount.volume] + (f"/{mount.sub_path}" if mount.sub_path else "")
            commands.append(f"mount --bind {shlex.quote(source)} {target}")
        if mount.read_only:
            commands.append(f"mount -o remount,bind,ro {target}")
    commands += [f"mount -t tmpfs -o mode=0755 tmpfs {shlex.quote(veil)}" for veil in veils]
    for path, kept in hidden.items():
        commands.append(f"mkdir -p {shlex.quote(path)}")
        commands.append(f"mount --bind {shlex.quote(kept)} {shlex.quote(path)}")
    if read_only:
        commands.append("mount -o remount,bind,ro /")
    return commands
