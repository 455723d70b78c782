"""`continuum member join` and `continuum member leave`: admit a Pull member to the hub, or
remove it, with the admin's credentials.

join applies the member's hub objects (its MemberCluster in mode Pull, its namespace, its agent's
ServiceAccount, Lease and grants) and prints, on stdout alone, what the member's installer needs:
Helm values for the agent chart, or a hub kubeconfig, each with a bound token of the agent's
account. Running it again changes nothing but the token, which it issues anew.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import yaml

from continuum.operator.api.join import (
    HubCredential,
    JoinError,
    agent_kubeconfig,
    agent_values,
    check_member_name,
    join_objects,
    parse_capacity,
    parse_duration,
)
from continuum.operator.api.kubeconfig import check_kubeconfig
from continuum.operator.api.work import member_namespace

if TYPE_CHECKING:
    from kubernetes import client

OUTPUTS = ("values", "kubeconfig")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    join = actions.add_parser(
        "join",
        help="admit a Pull member: its MemberCluster, namespace and agent credential in the "
        "hub; prints the agent's Helm values (or a hub kubeconfig) with its token",
    )
    join.add_argument("name", metavar="NAME", help="the member's name (a DNS label)")
    join.add_argument("--site", required=True, help="the site the member is at")
    join.add_argument("--tier", required=True, metavar="Edge|Cloud")
    join.add_argument("--region", help="the member's region (default: its site)")
    join.add_argument(
        "--capacity",
        metavar="cpu=8,memory=32Gi",
        help="declared capacity, used when the member's nodes are not reported",
    )
    _add_kubeconfig(join)
    join.add_argument(
        "--server",
        metavar="URL",
        help="the hub's API server as the agent dials it (default: the server of the "
        "admin's kubeconfig)",
    )
    join.add_argument(
        "--token-ttl",
        default="8760h",
        metavar="DURATION",
        help="how long the agent's token is valid, e.g. 8760h or 1h30m (default: 8760h)",
    )
    join.add_argument(
        "--output",
        choices=OUTPUTS,
        default="values",
        help="values: Helm values for the agent chart; kubeconfig: a hub kubeconfig",
    )
    leave = actions.add_parser(
        "leave",
        help="remove a Pull member: its MemberCluster, its namespace (its work, lease and "
        "account) and its cluster-wide grants",
    )
    leave.add_argument("name", metavar="NAME")
    leave.add_argument(
        "--wait",
        type=float,
        default=660.0,
        metavar="SECONDS",
        help="how long to wait for the operator to have the member's shard resources removed "
        "before its namespace goes (default: 660, past the operator's member cleanup timeout)",
    )
    _add_kubeconfig(leave)


def _add_kubeconfig(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig",
        metavar="HUB_KUBECONFIG",
        help="the admin's hub kubeconfig (default: $KUBECONFIG, then ~/.kube/config)",
    )


def run(args: argparse.Namespace) -> int:
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config import ConfigException

    command = f"continuum member {args.action}"
    try:
        if args.action == "join":
            return _join(args)
        return _leave(args)
    except JoinError as error:
        print(f"{command}: {error}", file=sys.stderr)
        return 2
    except ConfigException as error:
        print(f"{command}: --kubeconfig: {error}", file=sys.stderr)
        return 1
    except ApiException as error:
        print(f"{command}: the hub refused: {_refusal(error)}", file=sys.stderr)
        return 1


def _join(args: argparse.Namespace) -> int:
    from continuum.operator.adapters import join as adapter

    capacity = parse_capacity(args.capacity) if args.capacity else None
    objects = join_objects(args.name, args.site, args.tier, args.region, capacity)
    ttl_s = parse_duration(args.token_ttl)
    api = adapter.admin_client(args.kubeconfig)
    default_server, ca_data = adapter.hub_endpoint(api)
    server = args.server or default_server
    # The token is not issued yet: check the rest of what the agent will be handed first.
    problem = check_kubeconfig(
        agent_kubeconfig(args.name, HubCredential(server, ca_data, "-", datetime.now(UTC)))
    )
    if problem is not None:
        raise JoinError("--server" if "server" in problem.field else "--kubeconfig",
                        problem.message)  # fmt: skip
    _refuse_push_member(api, args.name, "join")
    adapter.apply_objects(api, objects)
    token, expiry = adapter.request_token(api, args.name, ttl_s)
    credential = HubCredential(server, ca_data, token, expiry)
    render = agent_values if args.output == "values" else agent_kubeconfig
    sys.stdout.write(yaml.safe_dump(render(args.name, credential), sort_keys=False))
    print(
        f"Pull member {args.name} joined: its agent works in namespace "
        f"{member_namespace(args.name)} of {server}; its token expires at "
        f"{expiry.isoformat()}",
        file=sys.stderr,
    )
    return 0


def _leave(args: argparse.Namespace) -> int:
    from continuum.operator.adapters import join as adapter

    check_member_name(args.name)
    api = adapter.admin_client(args.kubeconfig)
    _refuse_push_member(api, args.name, "leave")
    if not adapter.delete_member(api, args.name, args.wait):
        print(
            f"Pull member {args.name}: its MemberCluster was still there after {args.wait:g} s "
            "(its agent has not removed its shard resources); its namespace and grants are "
            "being deleted, and what the member still runs is left there",
            file=sys.stderr,
        )
        return 1
    print(f"Pull member {args.name}: its shard resources are removed; its namespace and grants "
          "are being deleted", file=sys.stderr)  # fmt: skip
    return 0


def _refuse_push_member(api: client.ApiClient, name: str, action: str) -> None:
    from continuum.operator.adapters import join as adapter

    mode = adapter.member_mode(api, name)
    if mode not in (None, "Pull"):
        raise JoinError(
            "NAME", f"MemberCluster {name} exists as a {mode} member; `member {action}` is "
            "for Pull members (a member's mode cannot change: delete it first)",
        )  # fmt: skip


def _refusal(error: Any) -> str:
    """The API server's message, or its status line when the body says none."""
    try:
        message = json.loads(error.body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return f"{error.status} {error.reason}" + (f": {message}" if message else "")
