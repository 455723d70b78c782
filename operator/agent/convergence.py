"""Local convergence: one pass over one MemberWork, as a keyed work queue runs it (one work is
never converged by two threads at once, and many events for it make one pass).

A pass reads the work from the view of the hub and the job's resources from the member's
mirror, plans (`reconcile.agent_work.plan_work`: push mode's plan, deleting only with proof),
carries the plan out with push mode's writes (`adapters.member_writes.apply_plan`), and applies
the work's status when it says something new. A work that is absent is no reason to do
anything: its resources stay where they are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from continuum.operator.adapters.kube import api_status_message, describe_connection_error
from continuum.operator.adapters.member_gate import CONNECTION_ERRORS
from continuum.operator.adapters.member_writes import apply_plan, put_resource
from continuum.operator.adapters.workqueue import RetryLater
from continuum.operator.agent.local import LocalResources
from continuum.operator.agent.works import WorkView
from continuum.operator.api.keys import JobKey
from continuum.operator.api.validation import FieldError, format_errors, validate_as
from continuum.operator.api.work import MemberWork
from continuum.operator.reconcile.agent_work import (
    Outcome,
    as_created,
    needs_report,
    plan_work,
    work_status,
)
from continuum.operator.reconcile.fencing import hold_fenced, resumable, resumed

LOG = logging.getLogger(__name__)
# What the member's API server says of a write it will refuse again unchanged: the work says
# so (Refused), and the pass comes back later rather than at once.
REFUSALS = frozenset({400, 403, 422})
REFUSED_RETRY_S = 10.0
# A pass that held something back which time may settle (a view of the hub not synced yet, a
# resource of an earlier incarnation still going) comes back this soon.
WAITING_RETRY_S = 1.0
# A report the hub did not take for want of a connection is tried again this soon.
HUB_RETRY_S = 5.0


class WorkConverger:
    def __init__(
        self,
        member: client.ApiClient,
        works: WorkView,
        local: LocalResources,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        fence_due: Callable[[], bool] = lambda: False,
    ) -> None:
        self.member, self.works, self.local, self.now = member, works, local, now
        self.fence_due = fence_due
        self._invalid: dict[str, str] = {}

    def converge(self, name: str) -> None:
        """One pass over the work `name`; RetryLater when it should come back."""
        # Asked before the work is read: synced then, the view holds what a list on the current
        # connection (or its watch since) said, not what it held before a disconnection.
        synced = self.works.is_synced()
        body = self.works.get(name)
        if body is None:
            return
        work = validate_as(MemberWork, body)
        if isinstance(work, list):
            self._refuse_invalid(name, str(body["metadata"].get("resourceVersion")), work)
            return
        job = work.spec.job_ref
        held = self.local.of_job(JobKey(job.namespace, job.name))
        planned = plan_work(work, held, synced)
        fencing = self.fence_due()
        plan = hold_fenced(planned.plan, work, fencing)
        # A shard fenced while the agent could not renew runs again only under work of a later
        # session, read on the current connection, while the lease holds.
        resumes = [] if fencing or not synced else [r for r in held if resumable(r, work)]
        refused = ""
        try:
            after = apply_plan(
                self.member, job.namespace, plan, held,
                lambda manifest: as_created(work, manifest), self.local.record,
            )  # fmt: skip
            for resource in resumes:
                self.local.record(put_resource(self.member, job.namespace, resumed(resource)), None)
                LOG.info("resumed %s %s/%s under session %s", resource["kind"], job.namespace,
                         resource["metadata"]["name"], work.spec.session_epoch)  # fmt: skip
            if resumes:
                after = self.local.of_job(JobKey(job.namespace, job.name))
        except ApiException as error:
            if error.status not in REFUSALS:
                raise
            refused = f"the member refused a write: HTTP {error.status}: "
            refused += api_status_message(error)
            after = self.local.of_job(JobKey(job.namespace, job.name))
        status = work_status(work, after, Outcome(planned, refused), self.now())
        if needs_report(work, status):
            try:
                self.works.apply_status(name, status.model_dump(mode="json", exclude_none=True))
            except CONNECTION_ERRORS as error:
                # The member is converged; its report waits for the hub to answer again.
                LOG.info("reporting MemberWork %s: %s", name, describe_connection_error(error))
                raise RetryLater(HUB_RETRY_S) from None
        if refused:
            raise RetryLater(REFUSED_RETRY_S)
        if planned.deferred or (planned.kept and not synced):
            raise RetryLater(WAITING_RETRY_S)

    def _refuse_invalid(self, name: str, version: str, errors: list[FieldError]) -> None:
        """A work this agent cannot read (written by a newer hub, say) is left alone, and said
        once per version of it."""
        if self._invalid.get(name) != version:
            self._invalid[name] = version
            LOG.warning("MemberWork %s is not one this agent can read: %s", name,
                        format_errors(errors))  # fmt: skip
