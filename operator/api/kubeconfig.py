"""A member cluster's kubeconfig, as the operator accepts it from a Secret: data, never code or
paths. Pure.

The kubernetes client honours everything a kubeconfig may say. An `exec` or `auth-provider`
plugin runs a command inside the operator; `tokenFile`, `client-certificate`, `client-key` and
`certificate-authority` name files on the operator's own filesystem, whose content (its
service-account token, for one) the client then sends to whatever server the kubeconfig names.
Whoever can write a Secret in the operator's namespace is not meant to be able to do either, so
`check_kubeconfig` refuses every field outside a list of plain data fields, and every exec
plugin whose command the operator was not told to allow.

Problems name the field by its path (`users[0].user.exec`) and never quote a value: a
kubeconfig holds credentials, and the problem's message is written to status, which more
people may read than the Secret.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import SplitResult, urlsplit

import yaml

REFUSED: Final = "KubeconfigRefused"
"""The kubeconfig asks for something the operator does not do: run a command, read a file."""
INVALID: Final = "KubeconfigInvalid"
"""The kubeconfig is not one: not YAML, not a mapping, or a part the client needs is missing."""

_FILE_FIELDS: Final = {
    "certificate-authority": "certificate-authority-data",
    "client-certificate": "client-certificate-data",
    "client-key": "client-key-data",
    "tokenFile": "token",
}
_TOP_FIELDS: Final = frozenset(
    {"apiVersion", "kind", "clusters", "contexts", "users", "current-context", "preferences",
     "extensions"}
)  # fmt: skip
_CLUSTER_FIELDS: Final = {
    "server": str,
    "certificate-authority-data": str,
    "insecure-skip-tls-verify": bool,
    "tls-server-name": str,
    "proxy-url": str,
    "disable-compression": bool,
    "extensions": list,
}
_CONTEXT_FIELDS: Final = {"cluster": str, "user": str, "namespace": str, "extensions": list}
_USER_FIELDS: Final = {
    "client-certificate-data": str,
    "client-key-data": str,
    "token": str,
    "username": str,
    "password": str,
    "exec": dict,
    "extensions": list,
}
_EXEC_FIELDS: Final = {
    "apiVersion": str,
    "command": str,
    "args": list,
    "env": list,
    "installHint": str,
    "provideClusterInfo": bool,
    "interactiveMode": str,
}
_SERVER_SCHEMES: Final = ("https", "http")
_PROXY_SCHEMES: Final = ("http", "https", "socks5", "socks5h")
# Strings shorter than this are too common to redact from a message without mangling it.
_MIN_SECRET_LENGTH: Final = 6


@dataclass(frozen=True)
class KubeconfigProblem:
    """Why a kubeconfig is not used: `reason` is REFUSED or INVALID, `field` its path."""

    reason: str
    field: str
    message: str


class _NoAliasLoader(yaml.SafeLoader):
    """Anchors and aliases would let a few hundred bytes stand for a structure that takes
    exponential time to walk; no kubeconfig needs them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases are not allowed", event.start_mark
            )
        return super().compose_node(parent, index)


def parse_kubeconfig(text: bytes) -> tuple[dict[str, Any] | None, KubeconfigProblem | None]:
    """The kubeconfig as a mapping, or the problem with it; the problem says where in the text
    (line and column) but not what is there."""
    try:
        document = yaml.load(text, Loader=_NoAliasLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        aliases = "anchors and aliases are not allowed" in str(error.problem)
        what = "uses YAML anchors or aliases" if aliases else "is not valid YAML"
        return None, KubeconfigProblem(INVALID, "", f"{what}{where}")
    except (yaml.YAMLError, UnicodeDecodeError):
        return None, KubeconfigProblem(INVALID, "", "is not valid YAML")
    if not isinstance(document, dict):
        return None, KubeconfigProblem(INVALID, "", "is not a mapping")
    return document, None


def check_kubeconfig(
    document: Mapping[str, Any], allowed_exec_commands: Collection[str] = ()
) -> KubeconfigProblem | None:
    """The first problem that keeps the operator from using this kubeconfig, or None."""
    problems = _problems(document, allowed_exec_commands)
    return next(problems, None)


def _problems(
    document: Mapping[str, Any], allowed_exec_commands: Collection[str]
) -> Iterator[KubeconfigProblem]:
    yield from _unknown_fields(document, _TOP_FIELDS, "")
    sections = {}
    for section, inner, fields in (
        ("clusters", "cluster", _CLUSTER_FIELDS),
        ("contexts", "context", _CONTEXT_FIELDS),
        ("users", "user", _USER_FIELDS),
    ):
        entries = document.get(section, [])
        if not isinstance(entries, list):
            yield _invalid(section, "must be a list")
            return
        named: dict[str, Mapping[str, Any]] = {}
        for index, entry in enumerate(entries):
            path = f"{section}[{index}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                yield _invalid(path, "must be a mapping with a string `name`")
                return
            yield from _unknown_fields(entry, {"name", inner}, path)
            body = entry.get(inner, {})
            if not isinstance(body, dict):
                yield _invalid(f"{path}.{inner}", "must be a mapping")
                return
            yield from _checked_fields(body, fields, f"{path}.{inner}")
            named.setdefault(entry["name"], body)
        sections[section] = named
    for index, entry in enumerate(document.get("users", [])):
        exec_plugin = entry.get("user", {}).get("exec")
        if exec_plugin is not None:
            yield from _checked_exec(exec_plugin, f"users[{index}].user.exec",
                                     allowed_exec_commands)  # fmt: skip
    yield from _checked_selection(document, sections)


def _checked_selection(
    document: Mapping[str, Any], sections: Mapping[str, Mapping[str, Mapping[str, Any]]]
) -> Iterator[KubeconfigProblem]:
    """The current context must name a context, and it a cluster with a server and a user."""
    current = document.get("current-context")
    if not isinstance(current, str) or not current:
        yield _invalid("current-context", "must name one of the contexts")
        return
    context = sections["contexts"].get(current)
    if context is None:
        yield _invalid("current-context", "names none of the contexts")
        return
    cluster = sections["clusters"].get(str(context.get("cluster", "")))
    if cluster is None:
        yield _invalid(
            "contexts[].context.cluster", "the current context names none of the clusters"
        )
        return
    if str(context.get("user", "")) not in sections["users"]:
        yield _invalid("current-context", "its context names none of the users")
        return
    server = cluster.get("server")
    url = _parsed(server) if isinstance(server, str) else None
    if url is None or url.scheme not in _SERVER_SCHEMES:
        yield _invalid("clusters[].cluster.server", "must be an https:// or http:// URL")
        return
    if not url.hostname:
        yield _invalid("clusters[].cluster.server", "names no host")


def _is_url(text: str, schemes: Collection[str]) -> bool:
    url = _parsed(text)
    return url is not None and url.scheme in schemes


def _parsed(url: str) -> SplitResult | None:
    """The URL split, or None if it does not parse (a bracket unclosed, a port out of range)."""
    try:
        parts = urlsplit(url)
        _ = parts.port, parts.hostname  # these parse lazily, and raise then
    except ValueError:
        return None
    return parts


def _unknown_fields(
    body: Mapping[str, Any], known: Collection[str], path: str
) -> Iterator[KubeconfigProblem]:
    for key in body:
        if key not in known:
            yield _refused_field(body, str(key), path)


def _refused_field(body: Mapping[str, Any], key: str, path: str) -> KubeconfigProblem:
    field = f"{path}.{key}" if path else key
    if key in _FILE_FIELDS:
        return KubeconfigProblem(
            REFUSED, field,
            f"{field}: names a file on the operator's filesystem; give the content inline "
            f"as {_FILE_FIELDS[key]}",
        )  # fmt: skip
    if key == "auth-provider":
        return KubeconfigProblem(
            REFUSED, field,
            f"{field}: auth-provider plugins run code inside the operator; use a token or a "
            "client certificate",
        )  # fmt: skip
    return KubeconfigProblem(REFUSED, field, f"{field}: not a field the operator accepts")


def _checked_fields(
    body: Mapping[str, Any], fields: Mapping[str, type], path: str
) -> Iterator[KubeconfigProblem]:
    for key, value in body.items():
        expected = fields.get(key)
        if expected is None:
            yield _refused_field(body, str(key), path)
        elif not isinstance(value, expected):
            yield _invalid(f"{path}.{key}", f"must be a {expected.__name__}")
        elif key == "proxy-url" and not _is_url(str(value), _PROXY_SCHEMES):
            yield _invalid(f"{path}.{key}", f"must be a URL of {', '.join(_PROXY_SCHEMES)}")


def _checked_exec(
    plugin: Mapping[str, Any], path: str, allowed_commands: Collection[str]
) -> Iterator[KubeconfigProblem]:
    yield from _checked_fields(plugin, _EXEC_FIELDS, path)
    if plugin.get("command") not in allowed_commands:
        allowed = ", ".join(sorted(allowed_commands)) or "none"
        yield KubeconfigProblem(
            REFUSED, path,
            f"{path}: exec plugins run commands inside the operator, and this command is not "
            f"one it allows (--allow-exec-plugin; allowed: {allowed})",
        )  # fmt: skip


def _invalid(field: str, what: str) -> KubeconfigProblem:
    return KubeconfigProblem(INVALID, field, f"{field}: {what}")


def secret_strings(document: Any) -> frozenset[str]:
    """Every string in the kubeconfig long enough to be worth hiding, and the server's host:
    what `redact` removes from a message that may have come back from the member."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if len(value) >= _MIN_SECRET_LENGTH:
                found.add(value)
            url = _parsed(value) if "://" in value else None
            if url is not None and url.hostname and len(url.hostname) >= _MIN_SECRET_LENGTH:
                found.add(url.hostname)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(key)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(document)
    return frozenset(found)


def redact(message: str, secrets: Collection[str]) -> str:
    """`message` with every one of `secrets` in it replaced, longest first."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in message:
            message = message.replace(secret, "[redacted]")
    return message


def endpoint_digest(document: Mapping[str, Any]) -> str:
    """The current context's server and CA as a short digest: two kubeconfigs with the same
    digest reach the same API server under the same trust."""
    contexts = {entry.get("name"): entry.get("context", {}) for entry in document["contexts"]}
    clusters = {entry.get("name"): entry.get("cluster", {}) for entry in document["clusters"]}
    cluster = clusters[contexts[document["current-context"]]["cluster"]]
    url = urlsplit(cluster["server"])
    port = url.port or (443 if url.scheme == "https" else 80)
    endpoint = f"{url.scheme}://{(url.hostname or '').lower()}:{port}{url.path.rstrip('/')}"
    ca = str(cluster.get("certificate-authority-data", ""))
    return hashlib.sha256(f"{endpoint}\n{ca}".encode()).hexdigest()[:16]
