"""Joining a Pull member: the hub objects that admit its agent, and what its installer is handed
(Helm values for the agent chart, or a hub kubeconfig). Pure.

The agent's credential reads and writes its own member's objects and nothing else: everything
namespaced is in `continuum-member-<name>` (its MemberWorks, its Lease, its ServiceAccount),
and the one cluster-scoped object it needs, its MemberCluster, is granted by resourceNames.
Another member's token is refused on all of it (`tests/integration/test_agent_rbac.py`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from continuum.operator.api.base import DNS_LABEL
from continuum.operator.api.common import API_VERSION, GROUP
from continuum.operator.api.membercluster import MemberClusterSpec, MemberMode
from continuum.operator.api.validation import validate_as
from continuum.operator.api.work import AGENT_NAME, MEMBER_NAMESPACE_PREFIX, member_namespace

MEMBER_LABEL: Final = "continuum.dev/member"
"""On every object join makes for a member: `continuum member leave` selects by it."""
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "continuum"
AGENT_ROLE: Final = "continuum-agent"
"""The Role and RoleBinding in the member's namespace."""
MAX_MEMBER_NAME: Final = 63 - len(MEMBER_NAMESPACE_PREFIX)
"""The member's namespace, `continuum-member-<name>`, is a DNS label of at most 63."""
MIN_TOKEN_TTL_S: Final = 600
MAX_TOKEN_TTL_S: Final = 2**32 - 1
"""The TokenRequest API's bounds on expirationSeconds."""
CAPACITY_KEYS: Final = ("cpu", "memory", "gpu")
HUB_CLUSTER: Final = "continuum-hub"
"""The cluster's name in the kubeconfig handed to an agent."""

_DURATION_PART = re.compile(r"(\d+)(h|m|s)")
_UNIT_SECONDS: Final = {"h": 3600, "m": 60, "s": 1}
# The MemberCluster spec's fields, as join's arguments.
_ARGUMENTS: Final = {"tier": "--tier", "site": "--site", "region": "--region",
                     "capacity": "--capacity"}  # fmt: skip


class JoinError(ValueError):
    """An argument of `continuum member join` that cannot be used; `argument` names it."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument}: {message}")
        self.argument = argument


def agent_cluster_role(member: str) -> str:
    """The ClusterRole and ClusterRoleBinding that grant the agent its MemberCluster."""
    return f"{AGENT_ROLE}:{member}"


def member_labels(member: str) -> dict[str, str]:
    return {MEMBER_LABEL: member, MANAGED_BY_LABEL: MANAGED_BY}


def check_member_name(name: str) -> None:
    if not re.fullmatch(DNS_LABEL, name):
        raise JoinError(
            "NAME", "must be a DNS label: lowercase letters, digits and '-', starting and "
            "ending with a letter or digit",
        )  # fmt: skip
    if len(name) > MAX_MEMBER_NAME:
        raise JoinError(
            "NAME", f"may have at most {MAX_MEMBER_NAME} characters, so that its namespace "
            f"{MEMBER_NAMESPACE_PREFIX}<name> is a DNS label",
        )  # fmt: skip


def parse_capacity(text: str) -> dict[str, str]:
    """`cpu=8,memory=32Gi` as a mapping; the quantities are checked by `join_objects`."""
    amounts: dict[str, str] = {}
    for item in text.split(","):
        key, equals, value = item.strip().partition("=")
        if not equals or not key or not value:
            raise JoinError("--capacity", f"{item.strip()!r} is not KEY=QUANTITY, "
                            "as in cpu=8,memory=32Gi")  # fmt: skip
        if key not in CAPACITY_KEYS:
            raise JoinError("--capacity", f"{key!r} is none of {', '.join(CAPACITY_KEYS)}")
        if key in amounts:
            raise JoinError("--capacity", f"{key} is given twice")
        amounts[key] = value
    return amounts


def parse_duration(text: str, argument: str = "--token-ttl") -> int:
    """A duration as Go and kubectl write it (`8760h`, `1h30m`, `600s`), in whole seconds,
    within what the TokenRequest API accepts."""
    position, seconds = 0, 0
    for part in _DURATION_PART.finditer(text):
        if part.start() != position:
            break
        seconds += int(part.group(1)) * _UNIT_SECONDS[part.group(2)]
        position = part.end()
    if not text or position != len(text):
        raise JoinError(argument, f"{text!r} is not a duration such as 8760h, 1h30m or 600s")
    if not MIN_TOKEN_TTL_S <= seconds <= MAX_TOKEN_TTL_S:
        raise JoinError(argument, f"must be between {MIN_TOKEN_TTL_S} s (10m) and "
                        f"{MAX_TOKEN_TTL_S} s: the bounds of the TokenRequest API")  # fmt: skip
    return seconds


def join_objects(
    name: str,
    site: str,
    tier: str,
    region: str | None = None,
    capacity: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The hub objects of Pull member `name`, in the order they are applied: its namespace
    and what the agent's credential is, then the MemberCluster, so that the operator never
    sees the member before its namespace exists. `region` defaults to the site.

    Raises JoinError naming the argument that is not usable."""
    check_member_name(name)
    spec: dict[str, Any] = {
        "mode": MemberMode.PULL.value,
        "tier": tier,
        "site": site,
        "region": site if region is None else region,
    }
    if capacity:
        spec["capacity"] = dict(capacity)
    checked = validate_as(MemberClusterSpec, spec)
    if isinstance(checked, list):
        error = checked[0]
        field, _, inner = error.path.partition(".")
        raise JoinError(_ARGUMENTS.get(field, field),
                        f"{inner}: {error.message}" if inner else error.message)  # fmt: skip
    namespace = member_namespace(name)
    labels = member_labels(name)
    agent = {"kind": "ServiceAccount", "name": AGENT_NAME, "namespace": namespace}
    return [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": namespace, "labels": labels}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": AGENT_NAME, "namespace": namespace, "labels": labels}},
        # The agent renews it and cannot create it: resourceNames does not restrict create.
        {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
         "metadata": {"name": AGENT_NAME, "namespace": namespace, "labels": labels}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": AGENT_ROLE, "namespace": namespace, "labels": labels},
         "rules": agent_role_rules()},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": AGENT_ROLE, "namespace": namespace, "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": AGENT_ROLE},
         "subjects": [agent]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": agent_cluster_role(name), "labels": labels},
         "rules": agent_cluster_role_rules(name)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": agent_cluster_role(name), "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": agent_cluster_role(name)},
         "subjects": [agent]},
        {"apiVersion": API_VERSION, "kind": "MemberCluster",
         "metadata": {"name": name, "labels": labels}, "spec": spec},
    ]  # fmt: skip


def agent_role_rules() -> list[dict[str, Any]]:
    """What the agent may do in its member's namespace: read its work, write the work's
    status, renew its lease, record Events, and renew its own token."""
    return [
        {"apiGroups": [GROUP], "resources": ["memberworks"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": [GROUP], "resources": ["memberworks/status"],
         "verbs": ["get", "patch", "update"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "resourceNames": [AGENT_NAME], "verbs": ["get", "update", "patch"]},
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"],
         "verbs": ["create", "patch"]},
        {"apiGroups": [""], "resources": ["serviceaccounts/token"],
         "resourceNames": [AGENT_NAME], "verbs": ["create"]},
    ]  # fmt: skip


def agent_cluster_role_rules(member: str) -> list[dict[str, Any]]:
    """The agent's own MemberCluster, by name, to read: its times and its session. It writes
    nothing of it: its report rides on its Lease, and the operator puts it in the status, so
    no agent can set its own member's Ready. A list or watch is allowed only with
    fieldSelector metadata.name=<member>."""
    return [
        {"apiGroups": [GROUP], "resources": ["memberclusters"],
         "resourceNames": [member], "verbs": ["get", "list", "watch"]},
    ]  # fmt: skip


@dataclass(frozen=True)
class HubCredential:
    """What the agent needs to reach the hub: its server, the CA that signs the server's
    certificate (base64 PEM; None to trust the system's CAs) and the bound token."""

    server: str
    ca_data: str | None
    token: str
    token_expiry: datetime


def agent_values(member: str, credential: HubCredential) -> dict[str, Any]:
    """Helm values for the agent chart."""
    hub: dict[str, Any] = {"server": credential.server}
    if credential.ca_data:
        hub["caData"] = credential.ca_data
    hub["token"] = credential.token
    hub["tokenExpiry"] = _rfc3339(credential.token_expiry)
    return {"member": member, "hub": hub}


def agent_kubeconfig(member: str, credential: HubCredential) -> dict[str, Any]:
    """A hub kubeconfig for the agent, of plain data fields only: what
    `continuum.operator.api.kubeconfig.check_kubeconfig` accepts."""
    cluster: dict[str, Any] = {"server": credential.server}
    if credential.ca_data:
        cluster["certificate-authority-data"] = credential.ca_data
    user = f"{AGENT_ROLE}-{member}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": HUB_CLUSTER, "cluster": cluster}],
        "users": [{"name": user, "user": {"token": credential.token}}],
        "contexts": [{"name": member, "context": {
            "cluster": HUB_CLUSTER, "user": user, "namespace": member_namespace(member)}}],
        "current-context": member,
    }  # fmt: skip


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
