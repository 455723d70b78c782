"""Builder-style wrappers for the four Continuum resources, for unit tests (after Kueue's
`utiltesting` wrappers):

    job = MLJobWrapper("train").namespace("team-a").shards(2).suspend().obj()   # an MLJob
    raw = MLJobWrapper("train").phase("Running").body()                         # its dict

Each wrapper holds the object as the API server would hand it over (camelCase, JSON types) and
starts from a spec that validates; `obj()` validates it into the pydantic model, `body()` gives
a copy of the dict. Setters return the wrapper, so calls chain.

Every MLJobWrapper gets a uid of its own unless one is set: the snapshot keeps what it made of a
job by (uid, generation), as the API server bumps the generation on every spec change, so two
tests' different specs under one uid and generation would meet each other's conversions.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Mapping
from typing import Any, Self

from continuum.operator.api import MemberCluster, MLJob, Placement, Tenant

API_VERSION = "continuum.dev/v1alpha1"
TIME = "2026-12-01T09:00:00Z"
"""The default timestamp: creation, deletion, condition transitions, migrations."""

_uids = itertools.count(1)


def condition(
    kind: str, status: bool | str = True, reason: str | None = None, message: str = ""
) -> dict[str, Any]:
    """A condition as the API server stores it."""
    text = status if isinstance(status, str) else ("True" if status else "False")
    return {
        "type": kind,
        "status": text,
        "reason": reason or f"{kind}{text}",
        "message": message,
        "lastTransitionTime": TIME,
    }


def _amounts(cpu: str | int | None, memory: str | None, gpu: str | int | None) -> dict[str, Any]:
    given = {"cpu": cpu, "memory": memory, "gpu": gpu}
    return {key: value for key, value in given.items() if value is not None}


class _Wrapper:
    """What every wrapper shares: metadata, status and the two ways out."""

    _body: dict[str, Any]

    def body(self) -> dict[str, Any]:
        """The object as the API server hands it over (a copy)."""
        return copy.deepcopy(self._body)

    @property
    def _meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = self._body["metadata"]
        return meta

    @property
    def _spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self._body["spec"]
        return spec

    @property
    def _status(self) -> dict[str, Any]:
        status: dict[str, Any] = self._body.setdefault("status", {})
        return status

    def uid(self, uid: str | None) -> Self:
        self._meta["uid"] = uid
        return self

    def generation(self, generation: int | None) -> Self:
        self._meta["generation"] = generation
        return self

    def resource_version(self, version: str) -> Self:
        self._meta["resourceVersion"] = version
        return self

    def created(self, timestamp: str = TIME) -> Self:
        self._meta["creationTimestamp"] = timestamp
        return self

    def deleting(self, timestamp: str = TIME) -> Self:
        """Being deleted: metadata.deletionTimestamp is set."""
        self._meta["deletionTimestamp"] = timestamp
        return self

    def meta_labels(self, **labels: str) -> Self:
        self._meta.setdefault("labels", {}).update(labels)
        return self

    def condition(
        self, kind: str, status: bool | str = True, reason: str | None = None, message: str = ""
    ) -> Self:
        """Sets one status condition (replacing one of the same type)."""
        conditions = [c for c in self._status.get("conditions", []) if c["type"] != kind]
        self._status["conditions"] = [*conditions, condition(kind, status, reason, message)]
        return self

    def status(self, status: Mapping[str, Any] | None) -> Self:
        """Replaces the whole status (None: no status)."""
        if status is None:
            self._body.pop("status", None)
        else:
            self._body["status"] = copy.deepcopy(dict(status))
        return self


class MLJobWrapper(_Wrapper):
    """An MLJob: by default Training, tenant team-a in namespace team-a, 2 shards of 1 cpu and
    1Gi, one worker each, a uid of its own and generation 1."""

    def __init__(self, name: str = "job") -> None:
        self._body = {
            "apiVersion": API_VERSION,
            "kind": "MLJob",
            "metadata": {
                "name": name,
                "namespace": "team-a",
                "uid": f"uid-{name}-{next(_uids)}",
                "generation": 1,
            },
            "spec": {
                "mode": "Training",
                "tenant": "team-a",
                "shards": {"count": 2, "resources": {"cpu": "1", "memory": "1Gi"}},
                "ray": {"image": "rayproject/ray:2.50.0", "entrypoint": "python train.py"},
            },
        }

    def obj(self) -> MLJob:
        return MLJob.model_validate(self.body())

    def name(self, name: str) -> Self:
        self._meta["name"] = name
        return self

    def namespace(self, namespace: str) -> Self:
        self._meta["namespace"] = namespace
        return self

    def tenant(self, tenant: str) -> Self:
        self._spec["tenant"] = tenant
        return self

    def mode(self, mode: str) -> Self:
        """Sets the mode only; `inference()` and `federated()` make whole valid specs."""
        self._spec["mode"] = mode
        return self

    def inference(self, latency_p99_ms: int = 50, entrypoint: str = "serve.app:app") -> Self:
        """Inference, with the latency objective and the import-path entrypoint it needs."""
        self._spec["mode"] = "Inference"
        self._spec["ray"]["entrypoint"] = entrypoint
        self._spec.setdefault("objectives", {})["latencyP99Ms"] = latency_p99_ms
        return self

    def federated(self, *sites: str, residency: str = "Site") -> Self:
        """Federated over one data source per site, plus the cloud aggregator's shard."""
        self._spec["mode"] = "Federated"
        self._spec["data"] = [
            {"name": f"{site}-data", "site": site, "residency": residency} for site in sites
        ]
        self._spec["shards"]["count"] = len(sites) + 1
        return self

    def shards(self, count: int, min_available: int | None = None) -> Self:
        self._spec["shards"]["count"] = count
        if min_available is None:
            self._spec["shards"].pop("minAvailable", None)
        else:
            self._spec["shards"]["minAvailable"] = min_available
        return self

    def resources(
        self, cpu: str | int = "1", memory: str = "1Gi", gpu: str | int | None = None
    ) -> Self:
        """What each Ray pod of a shard requests."""
        self._spec["shards"]["resources"] = _amounts(cpu, memory, gpu)
        return self

    def workers(self, workers_per_shard: int) -> Self:
        self._spec["ray"]["workersPerShard"] = workers_per_shard
        return self

    def priority(self, priority: int) -> Self:
        self._spec["priority"] = priority
        return self

    def data(
        self,
        name: str,
        site: str | None = None,
        residency: str = "Any",
        rate_mbps: float | None = None,
    ) -> Self:
        """Adds a data source."""
        source: dict[str, Any] = {"name": name, "residency": residency}
        if site is not None:
            source["site"] = site
        if rate_mbps is not None:
            source["rateMbps"] = rate_mbps
        self._spec.setdefault("data", []).append(source)
        return self

    def objectives(self, **objectives: Any) -> Self:
        """camelCase keys, e.g. latencyP99Ms=50, deadlineSeconds=600."""
        self._spec.setdefault("objectives", {}).update(objectives)
        return self

    def _placement(self) -> dict[str, Any]:
        policy: dict[str, Any] = self._spec.setdefault("placement", {})
        return policy

    def selector(
        self,
        match_labels: Mapping[str, str] | None = None,
        match_expressions: Iterable[Mapping[str, Any]] = (),
    ) -> Self:
        """spec.placement.clusterSelector."""
        selector: dict[str, Any] = {}
        if match_labels:
            selector["matchLabels"] = dict(match_labels)
        if match_expressions:
            selector["matchExpressions"] = [dict(term) for term in match_expressions]
        self._placement()["clusterSelector"] = selector
        return self

    def allowed_tiers(self, *tiers: str) -> Self:
        self._placement()["allowedTiers"] = list(tiers)
        return self

    def toleration(
        self,
        key: str | None,
        value: str | None = None,
        operator: str = "Equal",
        effect: str | None = None,
    ) -> Self:
        toleration: dict[str, Any] = {"operator": operator}
        for field, given in (("key", key), ("value", value), ("effect", effect)):
            if given is not None:
                toleration[field] = given
        self._placement().setdefault("tolerations", []).append(toleration)
        return self

    def proactive(self, risk_threshold: float = 0.7, enabled: bool = True) -> Self:
        tolerance = self._spec.setdefault("faultTolerance", {})
        tolerance["proactive"] = {"enabled": enabled, "riskThreshold": risk_threshold}
        return self

    def checkpoint(self, uri: str = "s3://bucket/job", interval_seconds: int = 60) -> Self:
        tolerance = self._spec.setdefault("faultTolerance", {})
        tolerance["checkpoint"] = {"uri": uri, "intervalSeconds": interval_seconds}
        return self

    def suspend(self, suspend: bool = True) -> Self:
        self._spec["suspend"] = suspend
        return self

    def phase(self, phase: str | None) -> Self:
        self._status["phase"] = phase
        return self

    def shard_status(
        self,
        index: int,
        cluster: str | None = None,
        state: str = "Running",
        restarts: int = 0,
        last_checkpoint: str | None = None,
    ) -> Self:
        """Adds status.shards[index] (replacing one with the same index)."""
        shard: dict[str, Any] = {"index": index, "state": state, "restarts": restarts}
        if cluster is not None:
            shard["cluster"] = cluster
        if last_checkpoint is not None:
            shard["lastCheckpoint"] = last_checkpoint
        shards = [s for s in self._status.get("shards", []) if s["index"] != index]
        self._status["shards"] = sorted([*shards, shard], key=lambda s: s["index"])
        return self


class PlacementWrapper(_Wrapper):
    """The Placement of the MLJob `name`: same name and namespace (team-a), jobRef to it, epoch
    1, no decisions, generation 1."""

    def __init__(self, name: str = "job", job_uid: str | None = None) -> None:
        job_ref: dict[str, Any] = {"name": name}
        if job_uid is not None:
            job_ref["uid"] = job_uid
        self._body = {
            "apiVersion": API_VERSION,
            "kind": "Placement",
            "metadata": {"name": name, "namespace": "team-a", "generation": 1},
            "spec": {"jobRef": job_ref, "epoch": 1, "decisions": []},
        }

    @classmethod
    def of(cls, job: MLJob) -> PlacementWrapper:
        """The Placement of `job`: its name, namespace and uid."""
        name = job.metadata.name or ""
        return cls(name, job.metadata.uid).namespace(job.metadata.namespace or "")

    def obj(self) -> Placement:
        return Placement.model_validate(self.body())

    def namespace(self, namespace: str) -> Self:
        self._meta["namespace"] = namespace
        return self

    def job_ref(self, name: str, uid: str | None = None) -> Self:
        self._spec["jobRef"] = {"name": name, **({"uid": uid} if uid is not None else {})}
        return self

    def epoch(self, epoch: int) -> Self:
        self._spec["epoch"] = epoch
        return self

    def decision(
        self,
        shard: int,
        cluster: str,
        score: float = 1.0,
        reasons: Iterable[str] = (),
        epoch: int | None = None,
    ) -> Self:
        """Adds (or replaces) the decision for one shard."""
        decision: dict[str, Any] = {
            "shard": shard,
            "cluster": cluster,
            "score": score,
            "reasons": list(reasons),
        }
        if epoch is not None:
            decision["epoch"] = epoch
        decisions = [d for d in self._spec["decisions"] if d["shard"] != shard]
        self._spec["decisions"] = sorted([*decisions, decision], key=lambda d: d["shard"])
        return self

    def decisions(self, clusters: Mapping[int, str], epoch: int | None = None) -> Self:
        """One decision per shard -> cluster."""
        for shard, cluster in clusters.items():
            self.decision(shard, cluster, epoch=epoch)
        return self

    def migration(
        self, shard: int, source: str, target: str, reason: str = "Proactive", time: str = TIME
    ) -> Self:
        self._spec.setdefault("migrations", []).append(
            {"shard": shard, "from": source, "to": target, "reason": reason, "time": time}
        )
        return self

    def cluster_status(
        self,
        cluster: str,
        state: str = "Applied",
        shards: Iterable[int] = (),
        applied_epoch: int | None = None,
        message: str | None = None,
        last_update_time: str | None = None,
    ) -> Self:
        """Adds (or replaces) status.clusters[cluster]."""
        entry: dict[str, Any] = {"cluster": cluster, "state": state, "shards": list(shards)}
        for key, value in (
            ("appliedEpoch", applied_epoch),
            ("message", message),
            ("lastUpdateTime", last_update_time),
        ):
            if value is not None:
                entry[key] = value
        entries = [e for e in self._status.get("clusters", []) if e["cluster"] != cluster]
        self._status["clusters"] = [*entries, entry]
        return self

    def applied_epoch(self, epoch: int | None) -> Self:
        self._status["appliedEpoch"] = epoch
        return self


class MemberClusterWrapper(_Wrapper):
    """A MemberCluster: Edge at site `site-a` in region `region-1`, a kubeconfig Secret named
    after it, declared capacity 8 cpu and 32Gi, no status (not probed yet: not usable; see
    `healthy()`)."""

    def __init__(self, name: str = "member-1") -> None:
        self._body = {
            "apiVersion": API_VERSION,
            "kind": "MemberCluster",
            "metadata": {"name": name, "generation": 1},
            "spec": {
                "tier": "Edge",
                "site": "site-a",
                "region": "region-1",
                "kubeconfigSecretRef": {"name": f"{name}-kubeconfig"},
                "capacity": {"cpu": "8", "memory": "32Gi"},
            },
        }

    def obj(self) -> MemberCluster:
        return MemberCluster.model_validate(self.body())

    def tier(self, tier: str) -> Self:
        self._spec["tier"] = tier
        return self

    def cloud(self) -> Self:
        return self.tier("Cloud")

    def site(self, site: str, region: str | None = None) -> Self:
        self._spec["site"] = site
        if region is not None:
            self._spec["region"] = region
        return self

    def region(self, region: str) -> Self:
        self._spec["region"] = region
        return self

    def capacity(
        self, cpu: str | int | None = None, memory: str | None = None, gpu: str | int | None = None
    ) -> Self:
        """Declared capacity (spec.capacity); all None removes it."""
        amounts = _amounts(cpu, memory, gpu)
        if amounts:
            self._spec["capacity"] = amounts
        else:
            self._spec.pop("capacity", None)
        return self

    def allocatable(
        self,
        cpu: str | int | None = None,
        memory: str | None = None,
        gpu: str | int | None = None,
        source: str = "Nodes",
    ) -> Self:
        """status.allocatable, as a probe found it."""
        self._status["allocatable"] = _amounts(cpu, memory, gpu)
        self._status["allocatableSource"] = source
        return self

    def cost(self, per_hour: float) -> Self:
        self._spec["costPerHour"] = per_hour
        return self

    def labels(self, **labels: str) -> Self:
        """spec.labels, which MLJob cluster selectors match (not metadata.labels)."""
        self._spec.setdefault("labels", {}).update(labels)
        return self

    def taint(self, key: str, value: str | None = None, effect: str = "NoSchedule") -> Self:
        taint: dict[str, Any] = {"key": key, "effect": effect}
        if value is not None:
            taint["value"] = value
        self._spec.setdefault("taints", []).append(taint)
        return self

    def reachable(self, reachable: bool = True, reason: str | None = None) -> Self:
        return self.condition(
            "Reachable", reachable, reason or ("APIServerAnswered" if reachable else "Timeout")
        )

    def ready(self, ready: bool = True, reason: str | None = None) -> Self:
        return self.condition(
            "Ready", ready, reason or ("CapacityKnown" if ready else "NoCapacity")
        )

    def healthy(self) -> Self:
        """Reachable and Ready, as after a good probe."""
        return self.reachable().ready()

    def duplicate(self, of: str = "member-0") -> Self:
        """Reachable, and Ready=False because it registers a cluster `of` already does."""
        return self.reachable().condition(
            "Ready", False, "DuplicateCluster", f"MemberCluster {of} registers the same cluster"
        )

    def risk(self, score: float, **signals: float) -> Self:
        self._status["risk"] = {"score": score, "signals": signals}
        return self

    def cluster_id(self, cluster_id: str | None) -> Self:
        self._status["clusterID"] = cluster_id
        return self


class TenantWrapper(_Wrapper):
    """A Tenant: weight 1, no quota, every namespace admitted."""

    def __init__(self, name: str = "team-a") -> None:
        self._body = {
            "apiVersion": API_VERSION,
            "kind": "Tenant",
            "metadata": {"name": name, "generation": 1},
            "spec": {},
        }

    def obj(self) -> Tenant:
        return Tenant.model_validate(self.body())

    def weight(self, weight: float) -> Self:
        self._spec["weight"] = weight
        return self

    def quota(
        self, cpu: str | int | None = None, memory: str | None = None, gpu: str | int | None = None
    ) -> Self:
        """spec.nominalQuota; a resource left out is not limited."""
        self._spec["nominalQuota"] = _amounts(cpu, memory, gpu)
        return self

    def namespaces(self, *namespaces: str) -> Self:
        self._spec["namespaces"] = list(namespaces)
        return self
