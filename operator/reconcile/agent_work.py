"""What a Pull member's agent decides for one MemberWork: what to write in its cluster, what it
may delete there, and what it reports back to the hub. Pure.

The agent converges with the same plan as push mode (`shards.plan_cluster`), with one rule of
its own on top: it deletes a resource only with proof that the hub no longer assigns it to this
member. A hub that was wiped, restored from a backup or is not in view must not empty a member
that keeps running through a disconnection, as pull agents that delete on reconnection do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from continuum.operator.api import GROUP, ConditionStatus, upsert_condition
from continuum.operator.api.plans import ClusterPlan
from continuum.operator.api.shard_resources import MANAGED_BY, SHARD_LABELS, job_label_value
from continuum.operator.api.work import (
    MemberWork,
    MemberWorkStatus,
    ReportedResource,
    WorkConditionType,
    WorkReason,
    WorkResource,
)
from continuum.operator.reconcile.fencing import fenced_session
from continuum.operator.reconcile.handoff import shard_of
from continuum.operator.reconcile.kuberay import with_resume_checkpoint
from continuum.operator.reconcile.shards import plan_cluster

Manifest = dict[str, Any]
ResourceKey = tuple[str, str]
MESSAGE_LIMIT = 1024
# The metadata the hub reads of a resource a member reports: who it is, which version, and what
# Continuum wrote on it (its labels, its annotations below).
CONDENSED_METADATA = ("name", "namespace", "uid", "resourceVersion", "generation", "labels")
CONTINUUM_ANNOTATIONS = f"{GROUP}/"


def _metadata(resource: Mapping[str, Any]) -> Mapping[str, Any]:
    return resource.get("metadata") or {}


def _label(resource: Mapping[str, Any], key: str) -> str | None:
    value = (_metadata(resource).get("labels") or {}).get(key)
    return value if isinstance(value, str) else None


def key_of(resource: Mapping[str, Any]) -> ResourceKey:
    return str(resource.get("kind", "")), str(_metadata(resource).get("name", ""))


def epoch_of(resource: Mapping[str, Any]) -> int | None:
    """The Placement epoch at which the resource's shard was assigned (its epoch label)."""
    value = _label(resource, SHARD_LABELS.epoch)
    return int(value) if value is not None and value.isdigit() else None


def job_uid_of(resource: Mapping[str, Any]) -> str | None:
    return _label(resource, SHARD_LABELS.job_uid)


# ---------------------------------------------------------------------------------------------
# Deletion


@dataclass(frozen=True)
class Verdict:
    """Whether the agent may delete a resource, and why (or why not)."""

    delete: bool
    reason: str


def _of_job(resource: Mapping[str, Any], work: MemberWork) -> bool:
    """Whether the resource belongs to the job the work names (by name, any incarnation)."""
    job = work.spec.job_ref
    metadata = _metadata(resource)
    named = (metadata.get("annotations") or {}).get(SHARD_LABELS.job_name_annotation)
    return (
        metadata.get("namespace") == job.namespace
        and _label(resource, SHARD_LABELS.job) == job_label_value(job.name)
        and (named is None or named == job.name)
    )


def judge_deletion(resource: Mapping[str, Any], work: MemberWork | None, synced: bool) -> Verdict:
    """Whether the agent may delete `resource`, given the work of its job as the agent's view
    of the hub holds it (`work`; None: there is none) and whether that view is `synced` (listed
    since the agent's current connection to the hub).

    Only proof deletes: the work for the resource's job, seen in a synced view, either names
    another incarnation of the job (another uid), says the job is deleted, or no longer lists
    the resource although it was rendered from an epoch at or after the resource's own. A work
    that is absent (a hub wiped, or not yet told), older than the resource (a hub restored from
    a backup) or seen in a view that is not synced proves nothing, and the resource stays."""
    name = "/".join(key_of(resource))
    if not synced:
        return Verdict(False, f"keeps {name}: the view of the hub is not synced")
    if work is None:
        return Verdict(False, f"keeps {name}: no work of the hub names its job")
    if not _of_job(resource, work):
        return Verdict(False, f"keeps {name}: it is not of job {work.spec.job_ref.name}")
    uid = job_uid_of(resource)
    if uid != work.spec.job_ref.uid:
        return Verdict(True, f"deletes {name}: it is of an earlier incarnation of the job")
    if work.spec.job_deleted:
        return Verdict(True, f"deletes {name}: the job is deleted")
    if key_of(resource) in {(item.kind, item.name) for item in work.spec.resources}:
        return Verdict(False, f"keeps {name}: the work lists it")
    epoch = epoch_of(resource)
    if epoch is None:
        return Verdict(False, f"keeps {name}: it has no epoch label to compare")
    if work.spec.placement_epoch < epoch:
        return Verdict(
            False,
            f"keeps {name}: the work's placementEpoch {work.spec.placement_epoch} is older "
            f"than its epoch {epoch}",
        )
    return Verdict(True, f"deletes {name}: the work of epoch {work.spec.placement_epoch} drops it")


def deletable(resource: Mapping[str, Any], work: MemberWork | None, synced: bool) -> bool:
    """Whether the agent may delete `resource` (`judge_deletion`)."""
    return judge_deletion(resource, work, synced).delete


# ---------------------------------------------------------------------------------------------
# Planning


@dataclass(frozen=True)
class WorkPlan:
    """What to write in the member for one work, and what it leaves undone for now."""

    plan: ClusterPlan
    kept: tuple[Verdict, ...] = ()
    """The resources the plan would delete but may not (yet), and why."""
    deferred: tuple[ResourceKey, ...] = ()
    """Resources to create once an earlier incarnation's resource of that name is gone."""
    refused: str = ""
    """What is wrong with the work itself, which nothing is written for."""

    @property
    def settled(self) -> bool:
        """Nothing is held back: once the plan is carried out the member holds what the work
        lists, and nothing more of the job."""
        return not self.kept and not self.deferred and not self.refused


def work_problems(work: MemberWork) -> list[str]:
    """Manifests that are not what their entries say, or not the job's: writing one would make
    a resource the agent could not find again as the job's (and make it again on every pass)."""
    job = work.spec.job_ref
    problems = []
    for entry in work.spec.resources:
        manifest = entry.manifest
        metadata = _metadata(manifest)
        labels = metadata.get("labels") or {}
        where = f"{entry.kind}/{entry.name}"
        if key_of(manifest) != (entry.kind, entry.name):
            problems.append(f"{where}: its manifest is {'/'.join(key_of(manifest))}")
        elif metadata.get("namespace") != job.namespace:
            problems.append(f"{where}: its manifest is not in the job's namespace {job.namespace}")
        elif (
            labels.get(SHARD_LABELS.managed_by) != MANAGED_BY
            or labels.get(SHARD_LABELS.job) != job_label_value(job.name)
            or labels.get(SHARD_LABELS.job_uid) != job.uid
        ):
            problems.append(f"{where}: its manifest lacks the job's labels")
    return problems


def plan_work(work: MemberWork, held: Sequence[Manifest], synced: bool) -> WorkPlan:
    """The plan for `work` in the member, which holds `held` of the work's job (of any uid).

    Creates and updates are push mode's (`plan_cluster` over the resources of the work's uid);
    a deletion, of this uid or of another, only with proof (`judge_deletion`). A resource of an
    earlier incarnation that holds the name of one to create is deleted first: the create waits
    for it to go, else it would meet the old one. A work with a manifest that is not the job's
    (`work_problems`) is refused whole: it proves nothing, and makes nothing."""
    problems = work_problems(work)
    if problems:
        return WorkPlan(ClusterPlan(), refused="the work is refused: " + "; ".join(problems))
    uid = work.spec.job_ref.uid
    own = [item for item in held if job_uid_of(item) == uid]
    earlier = [item for item in held if job_uid_of(item) != uid and _of_job(item, work)]
    desired = [] if work.spec.job_deleted else [item.manifest for item in work.spec.resources]
    planned = plan_cluster(desired, own, finished=work.spec.finished)
    delete: list[Manifest] = []
    kept: list[Verdict] = []
    for item in [*planned.delete, *earlier]:
        verdict = judge_deletion(item, work, synced)
        if verdict.delete:
            delete.append(item)
        else:
            kept.append(verdict)
    occupied = {key_of(item) for item in earlier}
    create = tuple(item for item in planned.create if key_of(item) not in occupied)
    deferred = tuple(key_of(item) for item in planned.create if key_of(item) in occupied)
    return WorkPlan(ClusterPlan(create, planned.update, tuple(delete)), tuple(kept), deferred)


def as_created(work: MemberWork, manifest: Manifest) -> Manifest:
    """A manifest of the work as the agent creates it: with the checkpoint the hub says the
    shard's new copy resumes from, if any."""
    listed: dict[ResourceKey, WorkResource] = {
        (item.kind, item.name): item for item in work.spec.resources
    }
    entry = listed.get(key_of(manifest))
    return with_resume_checkpoint(manifest, entry.resume_checkpoint if entry else None)


# ---------------------------------------------------------------------------------------------
# The report


def condensed(resource: Mapping[str, Any]) -> Manifest:
    """A resource as the member reports it to the hub: its identity and version, its labels,
    Continuum's annotations and KubeRay's status; what `observe_shard`, the shard statuses and
    the hand-overs read, without the spec the hub wrote itself."""
    metadata = _metadata(resource)
    kept: dict[str, Any] = {key: metadata[key] for key in CONDENSED_METADATA if key in metadata}
    annotations = {
        key: value
        for key, value in (metadata.get("annotations") or {}).items()
        if key.startswith(CONTINUUM_ANNOTATIONS)
    }
    if annotations:
        kept["annotations"] = annotations
    result: Manifest = {
        "apiVersion": resource.get("apiVersion"),
        "kind": resource.get("kind"),
        "metadata": kept,
    }
    if "status" in resource:
        result["status"] = resource["status"]
    return result


def reported_resources(work: MemberWork, held: Sequence[Manifest]) -> list[ReportedResource]:
    """Every resource the member holds of the work's job and uid, listed or not. One without a
    shard or epoch label is not Continuum's making and is left out."""
    reported = []
    for item in sorted(held, key=key_of):
        shard, epoch = shard_of(item), epoch_of(item)
        if job_uid_of(item) != work.spec.job_ref.uid or shard is None or epoch is None:
            continue
        kind, name = key_of(item)
        fields = {"kind": kind, "name": name, "shard": shard, "epoch": epoch,
                  "fenced": fenced_session(item) is not None}  # fmt: skip
        reported.append(ReportedResource.model_validate({**fields, "observed": condensed(item)}))
    return reported


@dataclass(frozen=True)
class Outcome:
    """How carrying out a WorkPlan went: `refused` is what the member's API server said when it
    refused a write ("" when it took them all)."""

    planned: WorkPlan
    refused: str = ""


def _applied_condition(
    work: MemberWork, outcome: Outcome, held: Sequence[Manifest]
) -> tuple[ConditionStatus, str, str]:
    planned = outcome.planned
    if planned.refused or outcome.refused:
        return ConditionStatus.FALSE, WorkReason.REFUSED, planned.refused or outcome.refused
    stopped = sorted(
        key_of(item)[1]
        for item in held
        if job_uid_of(item) == work.spec.job_ref.uid and fenced_session(item) is not None
    )
    if stopped:
        return (
            ConditionStatus.FALSE,
            WorkReason.FENCED,
            (
                f"fenced when the agent could not renew its lease: {', '.join(stopped)}; they run "
                "again under the hub's next session, or go if moved"
            ),
        )
    if planned.settled:
        count = 0 if work.spec.job_deleted else len(work.spec.resources)
        return ConditionStatus.TRUE, WorkReason.APPLIED, f"the member holds the {count} listed"
    waiting = [verdict.reason for verdict in planned.kept]
    waiting += [
        f"creates {'/'.join(key)} once its earlier incarnation is gone" for key in planned.deferred
    ]
    return ConditionStatus.FALSE, WorkReason.APPLYING, "; ".join(waiting)


def work_status(
    work: MemberWork, held: Sequence[Manifest], outcome: Outcome, now: datetime
) -> MemberWorkStatus:
    """The work's status once its plan was carried out and the member holds `held` of the job:
    the generation it describes, the Applied condition, the resources, the time."""
    previous = work.status or MemberWorkStatus()
    status, reason, message = _applied_condition(work, outcome, held)
    conditions = upsert_condition(
        previous.conditions,
        WorkConditionType.APPLIED,
        status,
        reason,
        message[:MESSAGE_LIMIT],
        observed_generation=work.metadata.generation,
        now=now,
    )
    return MemberWorkStatus(
        observed_generation=work.metadata.generation,
        conditions=conditions,
        resources=reported_resources(work, held),
        report_time=now,
    )


def _comparable(status: MemberWorkStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", exclude={"report_time"})


def needs_report(work: MemberWork, status: MemberWorkStatus) -> bool:
    """Whether `status` says something the work's status does not (its time aside)."""
    return work.status is None or _comparable(work.status) != _comparable(status)
