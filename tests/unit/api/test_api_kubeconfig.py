"""A member kubeconfig is data: plugins, file paths, aliases and unknown fields are refused by
field, and no problem quotes a value."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from continuum.operator.api.kubeconfig import (
    INVALID,
    REFUSED,
    check_kubeconfig,
    endpoint_digest,
    parse_kubeconfig,
    redact,
    secret_strings,
)

pytestmark = pytest.mark.unit
MARKER = "cmk-5e3d1f0a9b"


def kubeconfig(**user: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "edge",
        "clusters": [{"name": "edge", "cluster": {
            "server": "https://edge.example.com:6443", "certificate-authority-data": "Q0E="}}],
        "contexts": [{"name": "edge", "context": {"cluster": "edge", "user": "ops"}}],
        "users": [{"name": "ops", "user": user or {"token": MARKER}}],
        "preferences": {},
    }  # fmt: skip


def test_a_plain_kubeconfig_with_inline_credentials_is_accepted() -> None:
    assert check_kubeconfig(kubeconfig(token=MARKER)) is None
    assert check_kubeconfig(kubeconfig(**{"client-certificate-data": "Y2VydA==",
                                          "client-key-data": "a2V5"})) is None  # fmt: skip
    assert check_kubeconfig(kubeconfig(username="u", password=MARKER)) is None


@pytest.mark.parametrize(
    ("user", "field", "hint"),
    [
        ({"tokenFile": f"/var/run/{MARKER}"}, "users[0].user.tokenFile", "token"),
        ({"client-certificate": f"/{MARKER}.crt"}, "users[0].user.client-certificate",
         "client-certificate-data"),
        ({"client-key": f"/{MARKER}.key"}, "users[0].user.client-key", "client-key-data"),
        ({"auth-provider": {"name": "oidc", "config": {"cmd-path": MARKER}}},
         "users[0].user.auth-provider", "auth-provider plugins"),
        ({"exec": {"command": "sh", "args": ["-c", MARKER]}}, "users[0].user.exec",
         "exec plugins"),
        ({"impersonate": MARKER}, "users[0].user.impersonate", "not a field"),
    ],
)  # fmt: skip
def test_plugins_and_paths_are_refused_by_field_without_quoting_them(
    user: dict[str, Any], field: str, hint: str
) -> None:
    problem = check_kubeconfig(kubeconfig(**user))
    assert problem is not None
    assert (problem.reason, problem.field) == (REFUSED, field)
    assert hint in problem.message
    assert MARKER not in problem.message


def test_a_certificate_authority_file_is_refused_even_beside_its_data() -> None:
    document = kubeconfig()
    document["clusters"][0]["cluster"]["certificate-authority"] = "/etc/passwd"
    problem = check_kubeconfig(document)
    assert problem is not None
    assert problem.field == "clusters[0].cluster.certificate-authority"


def test_an_exec_plugin_runs_only_when_its_command_is_allowed() -> None:
    document = kubeconfig(exec={"apiVersion": "client.authentication.k8s.io/v1",
                                "command": "aws", "args": ["eks", "get-token"]})  # fmt: skip
    assert check_kubeconfig(document, {"aws"}) is None
    refused = check_kubeconfig(document, {"gke-gcloud-auth-plugin"})
    assert refused is not None
    assert "allowed: gke-gcloud-auth-plugin" in refused.message


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update({"current-context": "nowhere"}), "current-context"),
        (lambda d: d["clusters"][0]["cluster"].update({"server": "file:///etc"}),
         "clusters[].cluster.server"),
        (lambda d: d["clusters"][0]["cluster"].update({"server": 6443}),
         "clusters[0].cluster.server"),
        (lambda d: d["clusters"][0]["cluster"].update({"server": "https://h:99999"}),
         "clusters[].cluster.server"),
        (lambda d: d["clusters"][0]["cluster"].update({"server": "https://[::1"}),
         "clusters[].cluster.server"),
        (lambda d: d.update({"users": {"ops": {}}}), "users"),
        (lambda d: d["clusters"][0]["cluster"].update({"proxy-url": "ftp://x"}),
         "clusters[0].cluster.proxy-url"),
    ],
)  # fmt: skip
def test_a_kubeconfig_without_a_usable_cluster_is_invalid(change: Any, field: str) -> None:
    document = copy.deepcopy(kubeconfig())
    change(document)
    problem = check_kubeconfig(document)
    assert problem is not None
    assert (problem.reason, problem.field) == (INVALID, field)


def test_text_that_is_not_yaml_says_where_but_not_what() -> None:
    document, problem = parse_kubeconfig(f"users:\n - token: {MARKER}\n  bad: [{MARKER}\n".encode())
    assert document is None and problem is not None
    assert problem.reason == INVALID
    assert problem.message.startswith("is not valid YAML at line")
    assert MARKER not in problem.message


def test_yaml_aliases_are_refused_before_anything_walks_them() -> None:
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\nd: [*c, *c]\n"
    document, problem = parse_kubeconfig(bomb.encode())
    assert document is None and problem is not None
    assert "anchors or aliases" in problem.message


def test_a_document_that_is_not_a_mapping_is_invalid() -> None:
    assert parse_kubeconfig(b"- just\n- a list\n")[1] is not None
    assert parse_kubeconfig(b"\xff\xfe")[1] is not None
    document, problem = parse_kubeconfig(yaml.safe_dump(kubeconfig()).encode())
    assert problem is None and document == kubeconfig()


def test_redaction_removes_every_secret_string_and_the_servers_host() -> None:
    secrets = secret_strings(kubeconfig(token=MARKER))
    message = f"GET https://edge.example.com:6443/version: 401, token {MARKER} refused"
    redacted = redact(message, secrets)
    assert MARKER not in redacted
    assert "edge.example.com" not in redacted
    assert "refused" in redacted


def test_the_endpoint_digest_ignores_spelling_but_not_the_ca() -> None:
    first = kubeconfig()
    second = copy.deepcopy(first)
    second["clusters"][0]["cluster"]["server"] = "https://EDGE.example.com:6443/"
    assert endpoint_digest(first) == endpoint_digest(second)
    second["clusters"][0]["cluster"]["certificate-authority-data"] = "T1RIRVI="
    assert endpoint_digest(first) != endpoint_digest(second)
