"""The resync passes over a job again only when what its last settled pass read has changed,
or after RESYNC_SKIPS_AT_MOST intervals. Over an OperatorContext whose mirrors are not started:
what they hold comes by `store`, as a write's result would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from continuum.operator.api import MemberCluster, MLJob, Placement
from continuum.operator.api.join import join_objects
from continuum.operator.api.keys import JobKey
from continuum.operator.controller.context import (
    RESYNC_SKIPS_AT_MOST,
    OperatorConfig,
    OperatorContext,
)

pytestmark = pytest.mark.unit
KEY = JobKey("team", "train")
START = datetime(2026, 12, 7, 9, tzinfo=UTC)


def stored(kind: str, version: str, **spec: Any) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"namespace": "team", "name": "train", "uid": f"{kind}-1",
                                       "resourceVersion": version}, "spec": spec}  # fmt: skip


def work(member: str, version: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": f"continuum-member-{member}", "name": "team.train",
                     "resourceVersion": version},
        "spec": {"member": member, "jobRef": {"namespace": "team", "name": "train"}},
    }  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = START

    def read(self) -> datetime:
        return self.now


CLOCK = Clock()


@pytest.fixture
def context() -> OperatorContext:
    CLOCK.now = START
    made = OperatorContext(client.ApiClient(), OperatorConfig(resync_interval_s=30.0),
                           clock=CLOCK.read)  # fmt: skip
    made.mirror.caches[MLJob].store(stored("MLJob", "1"))
    made.mirror.caches[Placement].store(stored("Placement", "1"))
    made.works.cache.store(work("edge-1", "5"))
    return made


def test_a_job_never_settled_is_passed_over(context: OperatorContext) -> None:
    assert context.needs_resync(KEY)
    context.record_pass(KEY, context.job_inputs(KEY), settled=False)
    assert context.needs_resync(KEY)


def test_a_settled_job_is_skipped_until_something_it_read_changes(
    context: OperatorContext,
) -> None:
    context.record_pass(KEY, context.job_inputs(KEY), settled=True)
    assert not context.needs_resync(KEY)
    # Its agent reported: the work's version moved.
    context.works.cache.store(work("edge-1", "6"))
    assert context.needs_resync(KEY)
    context.record_pass(KEY, context.job_inputs(KEY), settled=True)
    assert not context.needs_resync(KEY)
    # A new decision: the Placement's version moved.
    context.mirror.caches[Placement].store(stored("Placement", "2"))
    assert context.needs_resync(KEY)


def test_a_settled_job_is_still_passed_over_every_few_intervals(
    context: OperatorContext,
) -> None:
    context.record_pass(KEY, context.job_inputs(KEY), settled=True)
    later = START + timedelta(seconds=RESYNC_SKIPS_AT_MOST * 30.0 - 1)
    CLOCK.now = later
    assert not context.needs_resync(KEY)
    CLOCK.now = later + timedelta(seconds=1)
    assert context.needs_resync(KEY)


def test_a_pass_that_did_not_settle_or_a_forgotten_job_is_passed_over_again(
    context: OperatorContext,
) -> None:
    context.record_pass(KEY, context.job_inputs(KEY), settled=True)
    context.record_pass(KEY, context.job_inputs(KEY), settled=False)
    assert context.needs_resync(KEY)
    context.record_pass(KEY, context.job_inputs(KEY), settled=True)
    context.forget_job(KEY)
    assert context.needs_resync(KEY)


def test_a_new_session_of_a_member_with_a_work_changes_the_jobs_inputs(
    context: OperatorContext,
) -> None:
    (member,) = [body for body in join_objects("edge-1", site="a", tier="Edge")
                 if body["kind"] == "MemberCluster"]  # fmt: skip
    member["metadata"].update(uid="member-1", resourceVersion="1")
    member["status"] = {"sessionEpoch": 1}
    context.mirror.caches[MemberCluster].store(member)
    context.record_pass(KEY, context.job_inputs(KEY), settled=True)
    assert not context.needs_resync(KEY)
    # Its agent came back: the hub started a session, which the job's work must carry.
    context.mirror.caches[MemberCluster].store(
        {**member, "metadata": {**member["metadata"], "resourceVersion": "2"},
         "status": {"sessionEpoch": 2}}
    )  # fmt: skip
    assert context.needs_resync(KEY)
