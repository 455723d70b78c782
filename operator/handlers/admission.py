"""The validating admission webhooks for MLJobs and MemberClusters, served by Kopf on loopback
(`continuum operator run --webhook-port` outside a cluster). What they say is
controller/admission.py's; its failure policy is Ignore: with the operator down, applies still
go through, and the scheduling cycle refuses the job with the same message in its Admitted
condition.
"""

from __future__ import annotations

from typing import Any

import kopf

from continuum.operator.api import GROUP, VERSION
from continuum.operator.controller.admission import judge
from continuum.operator.controller.context import OperatorContext


def _judge(body: kopf.Body, memo: kopf.Memo, request: dict[str, Any]) -> None:
    context: OperatorContext = memo.context
    refused = judge(context, str(request.get("operation") or ""), body, request.get("old"))
    if refused is not None:
        raise kopf.AdmissionError(refused.message, code=refused.code)


@kopf.on.validate(
    GROUP, VERSION, "mljobs", id="mljob-spec", operations=["CREATE", "UPDATE"],
    ignore_failures=True, side_effects=False,
)  # fmt: skip
def validate_mljob(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    _judge(body, memo, kwargs)


@kopf.on.validate(
    GROUP, VERSION, "memberclusters", id="membercluster-spec", operations=["CREATE", "UPDATE"],
    ignore_failures=True, side_effects=False,
)  # fmt: skip
def validate_membercluster(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """A MemberCluster whose kubeconfig Secret is in a namespace the operator does not read
    from is refused at apply; the probe says the same in Reachable if it got in all the same."""
    _judge(body, memo, kwargs)
