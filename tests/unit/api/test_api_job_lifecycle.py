"""An MLJob's lifecycle as the model says it: finished, stopping, and wanting no shards."""

from __future__ import annotations

import pytest

from continuum.operator.api import MLJobPhase
from continuum.operator.api.mljob import is_finished_phase
from tests.wrappers import MLJobWrapper

pytestmark = pytest.mark.unit

FINISHED = {MLJobPhase.SUCCEEDED, MLJobPhase.FAILED}


@pytest.mark.parametrize("phase", list(MLJobPhase))
def test_only_succeeded_and_failed_are_finished_phases(phase: MLJobPhase) -> None:
    assert phase.is_finished == (phase in FINISHED)
    assert is_finished_phase(phase) == (phase in FINISHED)


@pytest.mark.parametrize(
    ("raw", "finished"),
    [
        ("Succeeded", True),
        ("Failed", True),
        ("Running", False),
        ("Suspended", False),
        ("succeeded", False),  # phases are case-sensitive, as the CRD's enum is
        ("", False),
        (None, False),
        (0, False),
    ],
)
def test_a_phase_as_stored_in_a_body(raw: object, finished: bool) -> None:
    assert is_finished_phase(raw) is finished


@pytest.mark.parametrize(
    ("phase", "finished"),
    [(None, False), ("Pending", False), ("Running", False), ("Succeeded", True), ("Failed", True)],
)
def test_a_job_is_finished_by_its_phase(phase: str | None, finished: bool) -> None:
    assert MLJobWrapper().phase(phase).obj().is_finished is finished


def test_a_job_without_status_is_not_finished() -> None:
    job = MLJobWrapper().obj()
    assert job.status is None
    assert not job.is_finished
    assert not job.is_stopping
    assert not job.wants_no_shards


@pytest.mark.parametrize(
    ("suspend", "deleting", "phase", "stopping", "no_shards"),
    [
        (False, False, "Running", False, False),
        (True, False, "Running", True, True),
        (False, True, "Running", True, True),
        (True, True, None, True, True),
        # A finished job is not stopping: it keeps the resources it finished in.
        (False, False, "Succeeded", False, True),
        (False, False, "Failed", False, True),
        (False, True, "Failed", True, True),
    ],
)
def test_stopping_and_wanting_no_shards(
    suspend: bool, deleting: bool, phase: str | None, stopping: bool, no_shards: bool
) -> None:
    wrapper = MLJobWrapper().suspend(suspend).phase(phase)
    if deleting:
        wrapper.deleting()
    job = wrapper.obj()
    assert job.is_stopping is stopping
    assert job.wants_no_shards is no_shards
