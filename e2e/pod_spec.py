"""What a container of a pod runs, as Kubernetes defines it: its environment and its command.
Pure: the node agent (e2e/node_agent.py) gives it the pod, the values only a node knows and
lookups of ConfigMaps and Secrets, and runs what it returns.

- `env`: `envFrom` first, then `env` in order, each `value` with `$(NAME)` expanded from what
  came before it; `valueFrom` from the pod's fields (`fieldRef`), the container's resources
  (`resourceFieldRef`, rounded up to the divisor as Kubernetes does), ConfigMaps and Secrets.
- `argv`: `command` then `args`, each with `$(NAME)` expanded. Without a `command` the image's
  entrypoint would run; this testbed has no images, so `args` run on their own.
- `identity`: the user and group it runs as (`runAsUser`, `runAsGroup`, `runAsNonRoot`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from continuum.operator.api.quantity import parse_nanos

_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_INDEXED = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")

# (kind: "configmap" or "secret", namespace, name) -> the object's data (a Secret's decoded),
# or None when there is no such object.
Lookup = Callable[[str, str, str], Mapping[str, str] | None]


class PodSpecError(ValueError):
    """The pod asks for something this node cannot give: the message says which field."""


@dataclass(frozen=True)
class NodeFacts:
    """What the node knows of a pod that is not in its spec."""

    node_name: str
    host_ip: str
    pod_ip: str


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(NAME)` expansion: a defined NAME is replaced, `$$` becomes `$`, and
    anything else stays as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _REFERENCE.sub(replace, text)


def field_value(pod: Mapping[str, Any], path: str, facts: NodeFacts) -> str:
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": metadata.get("name"),
        "metadata.namespace": metadata.get("namespace"),
        "metadata.uid": metadata.get("uid"),
        "spec.nodeName": facts.node_name,
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": facts.host_ip,
        "status.hostIPs": facts.host_ip,
        "status.podIP": facts.pod_ip,
        "status.podIPs": facts.pod_ip,
    }
    if path in simple:
        return str(simple[path] or "")
    indexed = _INDEXED.match(path)
    if indexed:
        return str((metadata.get(indexed.group(1)) or {}).get(indexed.group(2), ""))
    raise PodSpecError(f"fieldRef.fieldPath {path!r} is not one this node fills in")


def _resource(container: Mapping[str, Any], reference: Mapping[str, Any]) -> str:
    kind, _, resource = str(reference.get("resource", "")).partition(".")
    resources = container.get("resources") or {}
    amounts = resources.get(kind) or {}
    if kind not in ("limits", "requests") or not resource:
        raise PodSpecError(f"resourceFieldRef.resource {reference.get('resource')!r} is not known")
    # Without a limit Kubernetes gives the node's allocatable; this node leaves it at 0.
    amount = parse_nanos(str(amounts.get(resource, "0")))
    divisor = parse_nanos(str(reference.get("divisor", "1")))
    if divisor == 0:
        raise PodSpecError("resourceFieldRef.divisor must not be 0")
    return str(math.ceil(amount / divisor))


def env(
    pod: Mapping[str, Any], container: Mapping[str, Any], facts: NodeFacts, lookup: Lookup
) -> dict[str, str]:
    """The container's environment, as the kubelet would give it."""
    namespace = str((pod.get("metadata") or {}).get("namespace", ""))
    values: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix", ""))
        for kind, key in (("configmap", "configMapRef"), ("secret", "secretRef")):
            reference = source.get(key)
            if reference is None:
                continue
            data = lookup(kind, namespace, str(reference.get("name", "")))
            if data is None and not reference.get("optional"):
                raise PodSpecError(f"envFrom.{key} {reference.get('name')!r} does not exist")
            values.update({prefix + name: value for name, value in (data or {}).items()})
    for variable in container.get("env") or []:
        name = str(variable["name"])
        if "valueFrom" not in variable:
            values[name] = expand(str(variable.get("value", "")), values)
            continue
        source = variable["valueFrom"]
        if "fieldRef" in source:
            values[name] = field_value(pod, str(source["fieldRef"]["fieldPath"]), facts)
        elif "resourceFieldRef" in source:
            values[name] = _resource(container, source["resourceFieldRef"])
        else:
            for kind, key in (("configmap", "configMapKeyRef"), ("secret", "secretKeyRef")):
                if key not in source:
                    continue
                reference = source[key]
                data = lookup(kind, namespace, str(reference["name"])) or {}
                found = data.get(str(reference["key"]))
                if found is None:
                    if reference.get("optional"):
                        break
                    raise PodSpecError(
                        f"env {name}: {key} {reference['name']}/{reference['key']} does not exist"
                    )
                values[name] = found
                break
            else:
                raise PodSpecError(f"env {name}: valueFrom {sorted(source)} is not supported")
    return values


def argv(container: Mapping[str, Any], environment: Mapping[str, str]) -> list[str]:
    """The command line the container runs."""
    words = [*(container.get("command") or []), *(container.get("args") or [])]
    if not words:
        raise PodSpecError(
            f"container {container.get('name')!r} has neither command nor args: this node has "
            "no image whose entrypoint could run"
        )
    return [expand(str(word), environment) for word in words]


# The user a container runs as when it must not run as root and names no user: the image's
# USER would decide in a real cluster, and these images have none. 65532 is the "nonroot" user
# of distroless images, which operator images commonly use.
NONROOT_ID = 65532


@dataclass(frozen=True)
class Identity:
    """The user and group a container's processes run as."""

    uid: int
    gid: int


def identity(pod: Mapping[str, Any], container: Mapping[str, Any]) -> Identity | None:
    """Whom the container runs as, from its securityContext over the pod's (None: root, as the
    agent runs). A container that must not run as root (runAsNonRoot) but says runAsUser 0 is
    refused, as the kubelet refuses it."""
    pod_context = (pod.get("spec") or {}).get("securityContext") or {}
    own = container.get("securityContext") or {}

    def setting(name: str) -> Any:
        return own[name] if own.get(name) is not None else pod_context.get(name)

    user, group, non_root = setting("runAsUser"), setting("runAsGroup"), setting("runAsNonRoot")
    if non_root and user == 0:
        raise PodSpecError(
            f"container {container.get('name')!r}: runAsNonRoot is true but runAsUser is 0"
        )
    if user is None and non_root:
        user = NONROOT_ID
        group = NONROOT_ID if group is None else group
    if user is None and group is None:
        return None
    return Identity(int(user or 0), int(group or 0))


def container_port(container: Mapping[str, Any], port: int | str) -> int | None:
    """A probe's port: a number, or the name of one of the container's ports (None if it
    declares no port of that name)."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    return None
