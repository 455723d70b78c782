"""What a Pull member's agent decides for one MemberWork: the deletion rule (only with proof),
the plan, the condensed resources it reports and the work's status."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from continuum.operator.api import MLJob
from continuum.operator.api.shard_resources import RAY_JOB, RAY_SERVICE, SHARD_LABELS
from continuum.operator.api.work import MemberWork, WorkReason, member_namespace, work_name
from continuum.operator.reconcile.agent_work import (
    Outcome,
    as_created,
    condensed,
    deletable,
    judge_deletion,
    needs_report,
    plan_work,
    work_status,
)
from continuum.operator.reconcile.kuberay import build_shard_resource, observe_shard
from e2e import kuberay_sim
from tests.wrappers import MLJobWrapper

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 6, 9, tzinfo=UTC)
LATER = datetime(2026, 12, 6, 10, tzinfo=UTC)
CHECKPOINT = "2026-12-06T08:30:00Z"

JOB = MLJobWrapper("train").shards(3).uid("uid-1").obj()
REMADE = MLJobWrapper("train").shards(3).uid("uid-2").obj()
OTHER = MLJobWrapper("other").shards(3).uid("uid-3").obj()


def held(job: MLJob, shard: int, epoch: int, **status: Any) -> dict[str, Any]:
    """The shard's resource as the member holds it."""
    resource = build_shard_resource(job, shard, epoch)
    resource["metadata"].update(uid=f"res-{shard}-{epoch}", resourceVersion="7", generation=1)
    if status:
        resource["status"] = status
    return resource


def work(
    job: MLJob,
    epoch: int,
    shards: dict[int, int],
    *,
    deleted: bool = False,
    finished: bool = False,
    resume: dict[int, str] | None = None,
    generation: int = 1,
    status: dict[str, Any] | None = None,
) -> MemberWork:
    """The job's MemberWork of Placement epoch `epoch`, listing shard -> its epoch."""
    namespace, name = job.metadata.namespace or "", job.metadata.name or ""
    resources = []
    for shard, shard_epoch in shards.items():
        manifest = build_shard_resource(job, shard, shard_epoch)
        entry = {
            "kind": manifest["kind"],
            "name": manifest["metadata"]["name"],
            "shard": shard,
            "epoch": shard_epoch,
            "onDisconnect": "Fence",
            "manifest": manifest,
        }
        if resume and shard in resume:
            entry["resumeCheckpoint"] = resume[shard]
        resources.append(entry)
    body: dict[str, Any] = {
        "apiVersion": "continuum.dev/v1alpha1",
        "kind": "MemberWork",
        "metadata": {
            "name": work_name(namespace, name),
            "namespace": member_namespace("edge-1"),
            "generation": generation,
        },
        "spec": {
            "member": "edge-1",
            "jobRef": {"namespace": namespace, "name": name, "uid": job.metadata.uid},
            "placementEpoch": epoch,
            "finished": finished,
            "jobDeleted": deleted,
            "resources": resources,
        },
    }
    if status is not None:
        body["status"] = status
    return MemberWork.model_validate(body)


SHARD_0_AT_2 = held(JOB, 0, 2)

# (resource, the work the agent's view holds of its job, whether that view is synced) -> delete?
DELETION_CASES = {
    "dropped by a work of a later epoch": (SHARD_0_AT_2, work(JOB, 3, {1: 3}), True, True),
    "dropped by a work of the same epoch": (SHARD_0_AT_2, work(JOB, 2, {1: 2}), True, True),
    "still listed": (SHARD_0_AT_2, work(JOB, 3, {0: 2}), True, False),
    "the job is deleted": (SHARD_0_AT_2, work(JOB, 3, {0: 2}, deleted=True), True, True),
    "an earlier incarnation of the job": (held(REMADE, 0, 9), work(JOB, 1, {}), True, True),
    "hub wiped: nothing deleted": (SHARD_0_AT_2, None, True, False),
    "backup restored: older epochs, nothing deleted": (
        SHARD_0_AT_2, work(JOB, 1, {1: 1}), True, False,
    ),
    "view not synced": (SHARD_0_AT_2, work(JOB, 3, {1: 3}), False, False),
    "view not synced, the job deleted": (
        SHARD_0_AT_2, work(JOB, 3, {}, deleted=True), False, False,
    ),
    "view not synced, an earlier incarnation": (held(REMADE, 0, 1), work(JOB, 3, {}), False, False),
    "a work of another job": (SHARD_0_AT_2, work(OTHER, 3, {}), True, False),
    "no epoch label": (
        {**SHARD_0_AT_2, "metadata": {**SHARD_0_AT_2["metadata"],
                                      "labels": {**SHARD_0_AT_2["metadata"]["labels"],
                                                 SHARD_LABELS.epoch: ""}}},
        work(JOB, 3, {}), True, False,
    ),
    "another namespace": (
        {**SHARD_0_AT_2, "metadata": {**SHARD_0_AT_2["metadata"], "namespace": "team-b"}},
        work(JOB, 3, {}, deleted=True), True, False,
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    ("resource", "the_work", "synced", "expected"),
    list(DELETION_CASES.values()),
    ids=list(DELETION_CASES),
)
def test_a_resource_is_deleted_only_with_proof(
    resource: dict[str, Any], the_work: MemberWork | None, synced: bool, expected: bool
) -> None:
    assert deletable(resource, the_work, synced) is expected
    assert judge_deletion(resource, the_work, synced).reason.startswith(
        "deletes" if expected else "keeps"
    )


def test_the_reasons_name_the_resource_and_the_epochs() -> None:
    verdict = judge_deletion(SHARD_0_AT_2, work(JOB, 1, {}), synced=True)
    assert verdict.reason == (
        "keeps RayJob/train-0: the work's placementEpoch 1 is older than its epoch 2"
    )


# plan_work


def test_a_new_work_creates_its_resources_with_their_resume_checkpoints() -> None:
    the_work = work(JOB, 4, {0: 4, 2: 3}, resume={0: CHECKPOINT})
    planned = plan_work(the_work, [], synced=True)
    assert planned.settled
    assert [item["metadata"]["name"] for item in planned.plan.create] == ["train-0", "train-2"]
    created = [as_created(the_work, item) for item in planned.plan.create]
    annotations = [item["metadata"]["annotations"] for item in created]
    assert annotations[0][SHARD_LABELS.resume_checkpoint_annotation] == CHECKPOINT
    assert SHARD_LABELS.resume_checkpoint_annotation not in annotations[1]


def test_a_work_converged_plans_nothing() -> None:
    planned = plan_work(work(JOB, 4, {0: 4}), [held(JOB, 0, 4)], synced=True)
    assert planned.plan.is_empty and planned.settled


def test_a_shard_moved_away_by_a_later_epoch_is_deleted() -> None:
    planned = plan_work(work(JOB, 5, {1: 5}), [held(JOB, 0, 2), held(JOB, 1, 5)], synced=True)
    assert [item["metadata"]["name"] for item in planned.plan.delete] == ["train-0"]
    assert planned.settled


def test_hub_wiped_and_restored_from_a_backup_nothing_is_deleted() -> None:
    """A restored hub's work is older than what the member runs: it drops nothing."""
    holding = [held(JOB, 0, 6), held(JOB, 1, 7)]
    planned = plan_work(work(JOB, 3, {}), holding, synced=True)
    assert planned.plan.delete == ()
    assert [verdict.delete for verdict in planned.kept] == [False, False]
    assert not planned.settled


def test_an_unsynced_view_deletes_nothing_but_still_creates() -> None:
    planned = plan_work(work(JOB, 5, {1: 5}, deleted=False), [held(JOB, 0, 2)], synced=False)
    assert planned.plan.delete == ()
    assert [item["metadata"]["name"] for item in planned.plan.create] == ["train-1"]
    assert "not synced" in planned.kept[0].reason


def test_a_deleted_job_loses_every_resource_of_its_uid() -> None:
    holding = [held(JOB, 0, 2), held(JOB, 1, 2)]
    planned = plan_work(work(JOB, 2, {0: 2, 1: 2}, deleted=True), holding, synced=True)
    assert planned.plan.create == () and planned.plan.update == ()
    assert [item["metadata"]["name"] for item in planned.plan.delete] == ["train-0", "train-1"]


def test_a_finished_job_keeps_what_it_holds_and_makes_nothing_again() -> None:
    planned = plan_work(work(JOB, 3, {0: 3, 1: 3}, finished=True), [held(JOB, 0, 3)], True)
    assert planned.plan.is_empty


def test_a_remade_job_first_removes_its_earlier_incarnation_then_creates() -> None:
    """The new incarnation's resource has the old one's name: its create waits for it to go."""
    planned = plan_work(work(REMADE, 1, {0: 1, 1: 1}), [held(JOB, 0, 4)], synced=True)
    assert [item["metadata"]["uid"] for item in planned.plan.delete] == ["res-0-4"]
    assert [item["metadata"]["name"] for item in planned.plan.create] == ["train-1"]
    assert planned.deferred == (("RayJob", "train-0"),)
    assert not planned.settled


def test_an_older_manifest_of_a_listed_resource_is_an_update() -> None:
    planned = plan_work(work(JOB, 4, {0: 4}), [held(JOB, 0, 3)], synced=True)
    assert [(new["metadata"]["labels"][SHARD_LABELS.epoch], old["metadata"]["uid"])
            for new, old in planned.plan.update] == [("4", "res-0-3")]  # fmt: skip


# condensed


def _sim_statuses() -> list[tuple[str, dict[str, Any]]]:
    """Every status kuberay_sim writes, on a RayJob and on a RayService."""
    rayjob = build_shard_resource(JOB, 0, 1)
    rayservice = build_shard_resource(MLJobWrapper("serve").inference().obj(), 0, 1)
    cases: list[tuple[str, dict[str, Any]]] = []
    for target in kuberay_sim.Target:
        for kind, resource, build in (
            (RAY_JOB, rayjob, kuberay_sim._ray_job_status),
            (RAY_SERVICE, rayservice, kuberay_sim._ray_service_status),
        ):
            status = build(resource, target)
            if status is not None:
                cases.append((f"{kind.kind}-{target.value}", status))
    return cases


SIM_STATUSES = _sim_statuses()


@pytest.mark.parametrize(("case", "status"), SIM_STATUSES, ids=[case for case, _ in SIM_STATUSES])
@pytest.mark.parametrize("checkpointed", [False, True], ids=["", "checkpointed"])
def test_the_hub_observes_a_condensed_resource_as_the_resource(
    case: str, status: dict[str, Any], checkpointed: bool
) -> None:
    job = JOB if case.startswith("RayJob") else MLJobWrapper("serve").inference().obj()
    resource = held(job, 0, 1)
    resource["status"] = copy.deepcopy(status)
    resource["metadata"]["generation"] = 2  # KubeRay has observed 1 of 2: the message says so
    if checkpointed:
        annotations = resource["metadata"]["annotations"]
        annotations[SHARD_LABELS.last_checkpoint_annotation] = "2026-12-06T08:59:00.123+00:00"
    assert observe_shard(condensed(resource)) == observe_shard(resource)


def test_all_of_kuberay_sims_states_are_covered() -> None:
    # 6 RayJob states (with Suspending and Suspended), 3 RayService ones (it never succeeds
    # nor suspends)
    assert len(SIM_STATUSES) == 9


def test_condensing_keeps_identity_labels_and_continuums_annotations_only() -> None:
    resource = held(JOB, 0, 1, jobDeploymentStatus="Running", jobStatus="RUNNING")
    resource["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied"] = "{}"
    resource["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    resource["metadata"]["finalizers"] = ["ray.io/rayjob-finalizer"]
    result = condensed(resource)
    assert set(result) == {"apiVersion", "kind", "metadata", "status"}
    assert set(result["metadata"]) == {
        "name", "namespace", "uid", "resourceVersion", "generation", "labels", "annotations",
    }  # fmt: skip
    assert all(key.startswith("continuum.dev/") for key in result["metadata"]["annotations"])
    assert result["metadata"]["labels"] == resource["metadata"]["labels"]
    assert "status" not in condensed(held(JOB, 0, 1))


# the status


def test_the_status_reports_every_resource_of_the_uid_and_says_applied() -> None:
    the_work = work(JOB, 3, {0: 3}, generation=4)
    holding = [held(JOB, 0, 3, jobDeploymentStatus="Running", jobStatus="RUNNING"),
               held(REMADE, 1, 9)]  # fmt: skip
    status = work_status(the_work, holding, Outcome(plan_work(the_work, [], True)), NOW)
    assert status.observed_generation == 4
    assert [(r.kind, r.name, r.shard, r.epoch) for r in status.resources] == [
        ("RayJob", "train-0", 0, 3)
    ]
    assert status.resources[0].observed["status"]["jobStatus"] == "RUNNING"
    (applied,) = status.conditions
    assert (applied.type, applied.status, applied.reason) == ("Applied", "True", "Applied")
    assert applied.observed_generation == 4


def test_a_kept_resource_says_applying_and_why() -> None:
    the_work = work(JOB, 1, {})
    holding = [held(JOB, 0, 2)]
    status = work_status(the_work, holding, Outcome(plan_work(the_work, holding, True)), NOW)
    (applied,) = status.conditions
    assert (applied.status, applied.reason) == ("False", WorkReason.APPLYING)
    assert "placementEpoch 1 is older than its epoch 2" in applied.message
    assert [r.name for r in status.resources] == ["train-0"]


def test_a_refusal_is_reported() -> None:
    the_work = work(JOB, 1, {0: 1})
    outcome = Outcome(plan_work(the_work, [], True), refused="HTTP 422: spec.entrypoint: bad")
    (applied,) = work_status(the_work, [], outcome, NOW).conditions
    assert (applied.status, applied.reason, applied.message) == (
        "False", "Refused", "HTTP 422: spec.entrypoint: bad",
    )  # fmt: skip


def test_a_report_is_written_only_when_it_says_something_new() -> None:
    the_work = work(JOB, 3, {0: 3})
    holding = [held(JOB, 0, 3)]
    outcome = Outcome(plan_work(the_work, holding, True))
    first = work_status(the_work, holding, outcome, NOW)
    assert needs_report(the_work, first)
    reported = work(JOB, 3, {0: 3}, status=first.model_dump(mode="json", exclude_none=True))
    # The same again an hour later: nothing new, and the condition keeps its transition time.
    again = work_status(reported, holding, outcome, LATER)
    assert not needs_report(reported, again)
    assert again.conditions[0].last_transition_time == NOW
    # KubeRay moved the resource on: new.
    running = [held(JOB, 0, 3, jobDeploymentStatus="Running", jobStatus="RUNNING")]
    assert needs_report(reported, work_status(reported, running, outcome, LATER))
    # The hub changed the spec (a new generation): new, even with nothing else changed.
    newer = work(JOB, 3, {0: 3}, generation=2, status=first.model_dump(mode="json"))
    assert needs_report(newer, work_status(newer, holding, outcome, LATER))


def test_a_work_whose_manifest_is_not_the_jobs_is_refused_whole() -> None:
    the_work = work(JOB, 5, {0: 5, 1: 5})
    body = the_work.model_dump(mode="json", exclude_none=True)
    body["spec"]["resources"][1]["manifest"]["metadata"]["labels"][SHARD_LABELS.job_uid] = "x"
    refused = MemberWork.model_validate(body)
    planned = plan_work(refused, [held(JOB, 2, 1)], synced=True)
    assert planned.plan.is_empty and not planned.settled
    assert (
        planned.refused
        == "the work is refused: RayJob/train-1: its manifest lacks the job's labels"
    )
    body["spec"]["resources"][1]["manifest"]["metadata"]["namespace"] = "team-b"
    assert (
        "not in the job's namespace team-a"
        in plan_work(MemberWork.model_validate(body), [], True).refused
    )
    (applied,) = work_status(refused, [], Outcome(planned), NOW).conditions
    assert (applied.status, applied.reason) == ("False", "Refused")
