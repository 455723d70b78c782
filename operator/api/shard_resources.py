"""How Continuum names and labels the shard resources it manages in the members, and which
KubeRay kinds they are: the contract between what the hub side writes (the shard manifests, the
Placement's job label) and what the member side selects and reads back. Pure.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final

from continuum.operator.api.mljob import JobMode

GROUP: Final = "ray.io"
VERSION: Final = "v1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

MANAGED_BY: Final = "continuum"
FEDERATION_PORT: Final = 8470
"""The port a Federated job's aggregator listens on in its Ray head pod
(CONTINUUM_FEDERATION_PORT); its participants dial it there."""
MAX_NAME_LENGTH: Final = 47
"""KubeRay refuses RayJob and RayService names longer than 47 characters (it appends a suffix to
name the RayCluster, whose own limit is 53), which is stricter than DNS-1035's 63."""


@dataclass(frozen=True)
class ShardLabelKeys:
    """The labels (and annotations) on every shard resource and its pods."""

    job: str = "continuum.dev/job"
    """The MLJob's name, shortened with a hash when longer than a label value may be."""
    job_uid: str = "continuum.dev/job-uid"
    """Tells apart a re-created MLJob with the same name."""
    shard: str = "continuum.dev/shard"
    epoch: str = "continuum.dev/epoch"
    role: str = "continuum.dev/role"
    managed_by: str = "continuum.dev/managed-by"
    """Always "continuum": selects every shard resource Continuum created."""
    job_name_annotation: str = "continuum.dev/job-name"
    """The MLJob's full name, which the job label may have had to shorten."""
    spec_hash_annotation: str = "continuum.dev/spec-hash"
    """A digest of the spec as built, so that `needs_update` notices fields we stopped setting."""
    last_checkpoint_annotation: str = "continuum.dev/last-checkpoint"
    """RFC 3339 time of the shard's newest checkpoint, written by the workload's side; KubeRay
    itself knows nothing of checkpoints."""
    checkpoint_uri_annotation: str = "continuum.dev/checkpoint-uri"
    """Where this shard's checkpoints are: `<spec.faultTolerance.checkpoint.uri>/shard-<index>`,
    the same wherever the shard runs, so a moved copy finds its predecessor's."""
    resume_epoch_annotation: str = "continuum.dev/resume-epoch"
    """The Placement epoch at which this copy of the shard was (re)started: it resumes from the
    newest checkpoint under its checkpoint URI, which an earlier copy wrote."""
    checkpoint_request_annotation: str = "continuum.dev/checkpoint-requested"
    """Set by the operator on the old copy of a shard moving make-before-break, once its
    replacement runs: the time (RFC 3339) it asked the copy to checkpoint now and stop working.
    The workload answers with a last-checkpoint at or after it, which the replacement resumes
    from; the operator then removes the old copy."""
    resume_checkpoint_annotation: str = "continuum.dev/resume-checkpoint"
    """Set once, when the operator creates the copy: the time of the newest checkpoint the shard
    had reported (status lastCheckpoint), which the new copy should find under its URI."""
    handover_from_annotation: str = "continuum.dev/handover-from"
    """Set by the operator on the replacement of a shard moving make-before-break, while its old
    copy on the member it names still works: the replacement starts (its pods run) but must not
    work, nor write checkpoints, until `handover-done` is set; two copies working at once would
    both write under one checkpoint URI."""
    fenced_session_annotation: str = "continuum.dev/fenced-session"
    """Set by a Pull member's agent on a RayJob it suspended (`spec.suspend`) because it could
    not renew its lease: the session epoch of the work it was fenced under. It resumes only
    under work of a later session, which the hub writes once it has seen the agent back and
    has written any move decided meanwhile."""
    handover_done_annotation: str = "continuum.dev/handover-done"
    """Set by the operator on a replacement that waited (`handover-from`), once its old copy has
    handed its last checkpoint over or is gone (RFC 3339 time): the replacement then resumes from
    the newest checkpoint under its URI."""
    aggregator_address_annotation: str = "continuum.dev/aggregator-address"
    """On a Federated participant: the address (`host:port`) of its job's aggregator it was
    started with, also in its environment. A participant whose aggregator has since moved is
    made again, with the new address."""


SHARD_LABELS: Final = ShardLabelKeys()
MANAGED_SELECTOR: Final = f"{SHARD_LABELS.managed_by}={MANAGED_BY}"
"""A label selector for every shard resource Continuum manages."""


@dataclass(frozen=True)
class ResourceKind:
    """A KubeRay resource type, as the dynamic and custom-objects clients address it."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


RAY_JOB: Final = ResourceKind(GROUP, VERSION, "rayjobs", "RayJob")
RAY_SERVICE: Final = ResourceKind(GROUP, VERSION, "rayservices", "RayService")
RESOURCE_KINDS: Final = (RAY_JOB, RAY_SERVICE)


def resource_kind_for(mode: JobMode) -> ResourceKind:
    """RayService for Inference, which serves until removed; RayJob for jobs that finish."""
    return RAY_SERVICE if mode == JobMode.INFERENCE else RAY_JOB


# ---------------------------------------------------------------------------------------------
# Names and labels


_LABEL_VALUE = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_MAX_LABEL_VALUE = 63
HASH_LENGTH = 8


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


def shard_resource_name(job_name: str, shard_index: int) -> str:
    """The shard resource's name: `<job>-<index>`, a DNS-1035 label of at most 47 characters.

    Job names are DNS subdomains, so they may hold dots, start with a digit or be long. Such a
    name is shortened and made DNS-1035, and a hash of the full name is added so that two jobs
    whose names differ only in what was cut or replaced still get different names.
    """
    if shard_index < 0:
        raise ValueError(f"shard index must be 0 or more, not {shard_index}")
    if not job_name:
        raise ValueError("the job name is empty")
    suffix = f"-{shard_index}"
    room = MAX_NAME_LENGTH - len(suffix)
    base = re.sub(r"[^a-z0-9-]", "-", job_name.lower())
    if not base[0].isalpha():
        base = "j-" + base
    if base == job_name and len(base) <= room and not base.endswith("-"):
        return base + suffix
    stem = base[: room - HASH_LENGTH - 1].rstrip("-")
    return f"{stem}-{short_hash(job_name)}{suffix}"


def shard_checkpoint_uri(job_uri: str, shard_index: int) -> str:
    """Where one shard's checkpoints go beneath its job's checkpoint URI."""
    return f"{job_uri.rstrip('/')}/shard-{shard_index}"


def is_label_value(text: str) -> bool:
    return len(text) <= _MAX_LABEL_VALUE and _LABEL_VALUE.fullmatch(text) is not None


def job_label_value(job_name: str) -> str:
    """The job's name as a label value: as is when it fits, else shortened plus a hash."""
    if is_label_value(job_name):
        return job_name
    stem = job_name[: _MAX_LABEL_VALUE - HASH_LENGTH - 1].rstrip("-.")
    return f"{stem}-{short_hash(job_name)}"


def job_selector(job_name: str, job_uid: str | None = None) -> str:
    """A label selector for the shard resources of one job (of one incarnation, given the uid)."""
    terms = [MANAGED_SELECTOR, f"{SHARD_LABELS.job}={job_label_value(job_name)}"]
    if job_uid:
        terms.append(f"{SHARD_LABELS.job_uid}={job_uid}")
    return ",".join(terms)
