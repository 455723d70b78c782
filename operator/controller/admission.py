"""What the validating webhook says of an MLJob or a MemberCluster being written: the same
checks the reconcile makes, at apply. Served by Kopf on loopback (`--webhook-port` alone) and,
in a cluster, by every replica's own HTTPS server (adapters/admission_server.py), so a standby
answers as the leader does.

The CRD's schema and CEL rules already refuse most bad specs; the webhook adds what needs the
Python models or other objects, such as whether the named Tenant exists and admits the
namespace. It judges specs only. An update that leaves the spec as it was (a finalizer taken
off, a label added) or an object being deleted always goes through, and the Tenant is checked
only when the job names it anew: a job whose Tenant was deleted since must still be deletable,
and suspendable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from continuum.operator.api import MemberCluster, MLJob, Tenant, validate_resource
from continuum.operator.api.validation import format_errors
from continuum.operator.controller.context import OperatorContext
from continuum.operator.reconcile.admission import tenant_refusal

UNPROCESSABLE = 422


@dataclass(frozen=True)
class Refused:
    message: str
    code: int = UNPROCESSABLE


def judge(
    context: OperatorContext,
    operation: str,
    body: Mapping[str, Any],
    old: Mapping[str, Any] | None,
) -> Refused | None:
    """None to admit the write; else why it is refused."""
    if operation not in ("CREATE", "UPDATE"):
        return None
    earlier: Mapping[str, Any] = old or {}
    deleting = "deletionTimestamp" in (body.get("metadata") or {})
    if operation == "UPDATE" and (earlier.get("spec") == body.get("spec") or deleting):
        return None
    found = validate_resource(dict(body))
    if isinstance(found, list):
        return Refused(format_errors(found))
    if isinstance(found, MLJob):
        if operation == "UPDATE" and (earlier.get("spec") or {}).get("tenant") == found.spec.tenant:
            return None
        refusal = tenant_refusal(found, context.mirror.list(Tenant).valid)
        if refusal is not None:
            # The mirror may lag a Tenant applied a moment ago, or not run (a standby).
            refusal = tenant_refusal(found, context.hub.list(Tenant).valid)
        return None if refusal is None else Refused(refusal.message)
    if isinstance(found, MemberCluster):
        unreadable = context.members.secret_namespace_refusal(found)
        return None if unreadable is None else Refused(unreadable.message)
    return Refused(f"this webhook judges MLJobs and MemberClusters, not {body.get('kind')}", 400)
