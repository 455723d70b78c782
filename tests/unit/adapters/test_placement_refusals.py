"""A Placement the hub refuses for good is retried after a growing backoff, and its refusal is
kept for the job's status until a write is accepted.

The hub here is a stand-in (`RefusingHub`) that answers the two calls PlacementWrites makes;
tests/integration/test_hardening.py has the hub itself refuse a Placement through a
ValidatingAdmissionPolicy.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from continuum.operator.adapters.placement_writes import PlacementWrites
from continuum.operator.api import MLJob, Placement, PlacementSpec

pytestmark = pytest.mark.unit


class RefusingHub:
    """Refuses every Placement with 422 while `refusing` is set; records each try."""

    def __init__(self) -> None:
        self.refusing = True
        self.tries = 0
        self.tried = threading.Event()

    def model(self, kind: type[Any], key: tuple[str, str]) -> None:
        return None

    def write_placement(self, job: MLJob, spec: PlacementSpec, existing: Placement | None) -> bool:
        self.tries += 1
        self.tried.set()
        if self.refusing:
            error = ApiException(status=422, reason="Unprocessable Entity")
            error.body = json.dumps({"kind": "Status", "message": "frozen by policy"})
            raise error
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def job() -> MLJob:
    return MLJob.model_validate({
        "apiVersion": "continuum.dev/v1alpha1", "kind": "MLJob",
        "metadata": {"name": "j", "namespace": "ns", "uid": "u1"},
        "spec": {"mode": "Training", "tenant": "t",
                 "shards": {"count": 1, "resources": {"cpu": "1", "memory": "1Gi"}},
                 "ray": {"image": "rayproject/ray:2.50.0", "entrypoint": "python t.py"}},
    })  # fmt: skip


SPEC = PlacementSpec.model_validate({
    "jobRef": {"name": "j", "uid": "u1"}, "epoch": 1,
    "decisions": [{"shard": 0, "cluster": "c", "score": 0}],
})  # fmt: skip


def write(writes: PlacementWrites, hub: RefusingHub) -> None:
    hub.tried.clear()
    writes.submit(job(), SPEC, None)
    assert hub.tried.wait(5)
    for _ in range(100):  # the refusal is recorded just after the try
        if not writes.is_pending(("ns", "j")):
            break
        threading.Event().wait(0.01)


def test_a_refused_write_backs_off_and_is_reported_until_one_is_accepted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub, clock, lost = RefusingHub(), Clock(), threading.Event()
    writes = PlacementWrites(hub, on_lost=lost.set, writers=1, clock=clock)  # type: ignore[arg-type]
    writes.start()
    try:
        write(writes, hub)
        refusal = writes.refusal(job())
        assert refusal is not None
        assert refusal.reason == "PlacementRefused"
        assert refusal.message == "the hub refused the Placement: HTTP 422: frozen by policy"
        assert not refusal.may_retry
        assert lost.is_set()  # the scheduler is woken to say so
        clock.now += 1.0
        assert writes.refusal(job()).may_retry  # type: ignore[union-attr]
        write(writes, hub)
        clock.now += 1.5  # the second wait is 2 s
        assert not writes.refusal(job()).may_retry  # type: ignore[union-attr]
        clock.now += 0.5
        assert writes.refusal(job()).may_retry  # type: ignore[union-attr]
        hub.refusing = False
        write(writes, hub)
        assert writes.refusal(job()) is None
    finally:
        writes.stop()
    assert hub.tries == 3
    warnings = [r for r in caplog.records if "refused the Placement of ns/j" in r.getMessage()]
    assert len(warnings) == 2
    assert not any(r.exc_info for r in caplog.records)


def test_a_refusal_of_an_earlier_job_of_the_same_name_is_not_this_ones() -> None:
    hub, clock = RefusingHub(), Clock()
    writes = PlacementWrites(hub, on_lost=lambda: None, writers=1, clock=clock)  # type: ignore[arg-type]
    writes.start()
    try:
        write(writes, hub)
        again = job().model_copy(
            update={"metadata": job().metadata.model_copy(update={"uid": "u2"})}
        )
        assert writes.refusal(again) is None
        assert writes.refusal(job()) is None  # forgotten with it
    finally:
        writes.stop()
