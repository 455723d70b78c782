"""The hub's side of a Pull member: the work it writes, what the agent's report means, the
member's liveness from its Lease, and its eviction only after the agent has fenced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from continuum.operator.api import (
    ApplyState,
    DisconnectAction,
    MemberCluster,
    MLJob,
    validate_resource,
)
from continuum.operator.api.membercluster import AgentReport, MemberClusterStatus
from continuum.operator.reconcile.eviction import EvictionPolicy, HoldReason, eviction_status
from continuum.operator.reconcile.kuberay import build_shard_resource
from continuum.operator.reconcile.membership import probed_status
from continuum.operator.reconcile.work import (
    AGENT_NEVER_CONNECTED,
    LEASE_EXPIRED,
    LEASE_RENEWED,
    disconnect_action,
    is_emptied,
    lease_probe,
    next_session,
    pull_outcome,
    pull_status,
    settled_session,
    spec_differs,
    work_body,
    work_spec,
)

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 7, 9, 0, 0, tzinfo=UTC)
CHECKPOINT = datetime(2026, 12, 7, 8, 59, 40, tzinfo=UTC)


def job(mode: str = "Training", shards: int = 2) -> MLJob:
    ray = {"image": "rayproject/ray:2.50.0", "entrypoint": "python train.py"}
    spec: dict[str, Any] = {
        "mode": mode,
        "tenant": "team-a",
        "shards": {"count": shards, "resources": {"cpu": "1", "memory": "1Gi"}},
        "ray": ray,
    }
    if mode == "Inference":
        spec["ray"] = {**ray, "entrypoint": "detector.serve:app"}
        spec["objectives"] = {"latencyOptOutReason": "batch"}
    body = {
        "apiVersion": "continuum.dev/v1alpha1",
        "kind": "MLJob",
        "metadata": {"name": "train", "namespace": "team-a", "uid": "uid-1"},
        "spec": spec,
        "status": {"shards": [{"index": 0, "state": "Running",
                               "lastCheckpoint": CHECKPOINT.strftime("%Y-%m-%dT%H:%M:%SZ")}]},
    }  # fmt: skip
    validated = validate_resource(body)
    assert isinstance(validated, MLJob), validated
    return validated


def pulled(status: dict[str, Any] | None = None, **agent: int) -> MemberCluster:
    body: dict[str, Any] = {
        "apiVersion": "continuum.dev/v1alpha1",
        "kind": "MemberCluster",
        "metadata": {"name": "munich", "generation": 1},
        "spec": {"tier": "Edge", "site": "munich", "region": "eu-central", "mode": "Pull",
                 "capacity": {"cpu": "8", "memory": "32Gi"},
                 **({"agent": agent} if agent else {})},
    }  # fmt: skip
    if status is not None:
        body["status"] = status
    validated = validate_resource(body)
    assert isinstance(validated, MemberCluster), validated
    return validated


def test_training_is_fenced_and_inference_keeps_serving_through_a_disconnection() -> None:
    assert disconnect_action(job("Training")) == DisconnectAction.FENCE
    assert disconnect_action(job("Inference")) == DisconnectAction.KEEP_RUNNING


def test_only_a_resource_the_member_lacks_carries_the_checkpoint_it_resumes_from() -> None:
    training = job()
    desired = [build_shard_resource(training, 0, 4), build_shard_resource(training, 1, 2)]
    spec = work_spec(training, "munich", desired, [], placement_epoch=5, session_epoch=1)
    assert [(r.name, r.shard, r.epoch) for r in spec.resources] == [
        ("train-0", 0, 4),
        ("train-1", 1, 2),
    ]
    assert spec.resources[0].resume_checkpoint == "2026-12-07T08:59:40Z"
    assert spec.resources[1].resume_checkpoint is None  # no checkpoint reported yet
    assert spec.resources[0].manifest == desired[0]
    assert (spec.placement_epoch, spec.session_epoch, spec.job_ref.uid) == (5, 1, "uid-1")
    held = work_spec(training, "munich", desired, [desired[0]], 5, 1)
    assert held.resources[0].resume_checkpoint is None


def test_a_work_read_back_with_the_servers_defaults_is_not_written_again() -> None:
    training = job()
    spec = work_spec(training, "munich", [build_shard_resource(training, 0, 4)], [], 5, 0)
    body = work_body(training, spec)
    assert body["metadata"] == {
        "name": "team-a.train",
        "namespace": "continuum-member-munich",
        "labels": {
            "continuum.dev/managed-by": "continuum",
            "continuum.dev/member": "munich",
            "continuum.dev/job": "train",
            "continuum.dev/job-uid": "uid-1",
        },
    }
    stored = {**body, "spec": {**body["spec"], "finished": False, "jobDeleted": False,
                               "sessionEpoch": 0}}  # fmt: skip
    assert not spec_differs(stored, spec)
    assert spec_differs(None, spec)
    moved = work_spec(training, "munich", [], [], 6, 0)
    assert spec_differs(stored, moved)


def test_the_outcome_is_what_the_agent_reported_for_the_current_spec() -> None:
    observed = {"kind": "RayJob", "metadata": {"name": "train-0"}, "status": {"jobStatus": "X"}}
    work = {
        "metadata": {"generation": 3},
        "spec": {"resources": []},
        "status": {"observedGeneration": 2, "resources": [{"observed": observed}]},
    }
    pending = pull_outcome("munich", work, lease_fresh=True)
    assert (pending.state, pending.resources) == (ApplyState.PENDING, (observed,))
    work["status"]["observedGeneration"] = 3
    assert pull_outcome("munich", work, lease_fresh=True).state == ApplyState.APPLIED
    assert not is_emptied(work)
    lost = pull_outcome("munich", work, lease_fresh=False)
    assert (lost.state, lost.resources) == (ApplyState.UNREACHABLE, (observed,))
    work["status"]["resources"] = []
    assert is_emptied(work)


def test_the_lease_says_whether_the_member_answers_and_since_when() -> None:
    probe, heartbeat = lease_probe(pulled(), None, None, NOW)
    assert (probe.answered, probe.failure_reason, heartbeat) == (False, AGENT_NEVER_CONNECTED, None)
    probe, heartbeat = lease_probe(pulled(), 16.0, None, NOW)
    assert (probe.failure_reason, heartbeat) == (LEASE_EXPIRED, NOW - timedelta(seconds=16))
    assert "16 s" in probe.message and "leaseDurationSeconds 15" in probe.message
    report = AgentReport.model_validate(
        {
            "nodes": 2,
            "nodesReady": 2,
            "allocatable": {"cpu": "8", "memory": "16Gi"},
            "kubernetesVersion": "v1.33.1",
            "clusterID": "c-1",
            "hubRttMs": 12.5,
        }
    )
    probe, heartbeat = lease_probe(pulled(), 3.0, report, NOW)
    assert probe.answered and probe.answered_reason == LEASE_RENEWED
    assert (probe.node_count, probe.cluster_id, probe.latency_ms) == (2, "c-1", 12.5)
    assert heartbeat == NOW - timedelta(seconds=3)
    # Not truncated to the second the status holds, which would move the eviction earlier.
    assert lease_probe(pulled(), 2.5, report, NOW)[1] == NOW - timedelta(seconds=2)
    status = probed_status(pulled(), probe, NOW)
    reachable = next(c for c in status.conditions if c.type == "Reachable")
    # The round trip is in the agent's report, not the message, which would change each time.
    assert (reachable.reason, reachable.message) == ("LeaseRenewed", "its agent renews its lease")
    assert lease_probe(pulled(leaseDurationSeconds=30, renewIntervalSeconds=5), 16.0, None, NOW)[
        0
    ].answered


def test_a_lost_pull_member_keeps_its_shards_until_its_agent_has_fenced_them() -> None:
    policy = EvictionPolicy()
    assert policy.grace_for(pulled()) == 15 + 15 + 5
    assert policy.grace_for(pulled(fenceAfterSeconds=60)) == 15 + 60 + 5
    was_up = pulled(
        {
            "lastHeartbeatTime": "2026-12-07T08:59:30Z",
            "conditions": [
                {"type": "Reachable", "status": "True", "reason": "LeaseRenewed", "message": "",
                 "lastTransitionTime": "2026-12-07T08:00:00Z"},
                {"type": "Ready", "status": "True", "reason": "CapacityKnown", "message": "",
                 "lastTransitionTime": "2026-12-07T08:00:00Z"},
            ],
        }
    )  # fmt: skip
    others = [pulled().model_copy(update={"metadata": was_up.metadata.model_copy(
        update={"name": name})}) for name in ("a", "b", "c", "d")]  # fmt: skip

    def after(silent_s: float) -> tuple[str, str]:
        now = datetime(2026, 12, 7, 8, 59, 30, tzinfo=UTC) + timedelta(seconds=silent_s)
        probe, _ = lease_probe(was_up, silent_s, None, now)
        status = eviction_status(was_up, probed_status(was_up, probe, now), others, policy, now)
        ready = next(c for c in status.conditions if c.type == "Ready")
        return ready.status.value, ready.reason

    assert after(10) == ("True", "CapacityKnown")
    assert after(16) == ("Unknown", HoldReason.GRACE_PERIOD.value)
    assert after(34) == ("Unknown", HoldReason.GRACE_PERIOD.value)
    assert after(36) == ("False", "Unreachable")


def _with_reachable(status: str, since: datetime, session: int | None = None) -> MemberCluster:
    body: dict[str, Any] = {
        "lastHeartbeatTime": "2026-12-07T08:00:00Z",
        "conditions": [{"type": "Reachable", "status": status, "reason": "x", "message": "",
                        "lastTransitionTime": since.strftime("%Y-%m-%dT%H:%M:%SZ")}],
    }  # fmt: skip
    if session is not None:
        body["sessionEpoch"] = session
    return pulled(body)


def test_an_agent_back_after_its_lease_expired_starts_a_new_session() -> None:
    assert next_session(pulled(), answered=True) is None  # its first answer: no return
    assert next_session(_with_reachable("False", NOW, 2), answered=True) == 3
    assert next_session(_with_reachable("False", NOW), answered=True) == 1
    assert next_session(_with_reachable("False", NOW, 2), answered=False) is None
    assert next_session(_with_reachable("True", NOW, 2), answered=True) is None


def test_a_new_session_reaches_the_work_only_once_the_return_has_settled() -> None:
    back = _with_reachable("True", NOW - timedelta(seconds=1), session=3)
    assert settled_session(back, 2, False, NOW, settle_s=4.0) == (2, 3.0)
    assert settled_session(back, 2, False, NOW + timedelta(seconds=4), 4.0) == (3, 0.0)
    # a move decided before the return is still being written: not yet
    assert settled_session(back, 2, True, NOW + timedelta(seconds=4), 4.0) == (2, 0.5)
    assert settled_session(back, 3, False, NOW, 4.0) == (3, 0.0)
    lost = _with_reachable("False", NOW - timedelta(seconds=10), session=3)
    assert settled_session(lost, 2, False, NOW, 4.0) == (2, 0.0)


def test_the_hub_starts_a_session_for_shards_its_agent_fenced_unseen() -> None:
    # The agent fenced under session 2, but the hub never saw its lease expire.
    assert next_session(_with_reachable("True", NOW, 2), answered=True, awaiting=2) == 3
    assert next_session(_with_reachable("True", NOW, 3), answered=True, awaiting=2) is None


def test_a_pull_members_status_changes_only_when_something_read_changes() -> None:
    member = pulled()
    facts = {"nodes": 2, "nodesReady": 2, "clusterID": "c-1"}
    report = AgentReport.model_validate(
        {**facts, "hubRttMs": 9.0, "reportTime": "2026-12-07T08:59:55Z"}
    )
    before = MemberClusterStatus.model_validate(
        {"lastHeartbeatTime": "2026-12-07T08:59:57Z",
         "agent": {**facts, "hubRttMs": 12.0, "reportTime": "2026-12-07T08:59:30Z"}}
    )  # fmt: skip
    status = MemberClusterStatus()

    def written(at: datetime, answered: bool, with_report: AgentReport | None = report) -> Any:
        after = pull_status(before, status, member, at, answered, with_report)
        return after.last_heartbeat_time, after.agent

    # Renewed 3 s after the written heartbeat, and 59 s after: kept; the report's facts are the
    # same and it is younger than a minute, kept.
    assert written(NOW, True) == (before.last_heartbeat_time, before.agent)
    assert written(NOW + timedelta(seconds=56), True)[0] == before.last_heartbeat_time
    # A minute after, refreshed.
    assert written(NOW + timedelta(seconds=57), True)[0] == NOW + timedelta(seconds=57)
    # Expired: the last renewal seen, exactly, whatever was written.
    assert written(NOW - timedelta(seconds=1), False)[0] == NOW - timedelta(seconds=1)
    # The facts changed: the report is written.
    changed = report.model_copy(update={"nodes_ready": 1})
    assert written(NOW, True, changed)[1] == changed
    # No report with this renewal: the last one stays.
    assert written(NOW, True, None)[1] == before.agent
