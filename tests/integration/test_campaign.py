"""The bad-input campaign: hypothesis draws odd and hostile MLJobs, Tenants and MemberClusters
(with kubeconfig Secrets built to abuse the operator), applies them to the testbed's hub with
the operator and its webhook running, and the tests below hold the outcome to the contract:

- an object is refused at apply with an error that names the field, or accepted and given its
  condition (MLJob: Admitted, Scheduled or Ready; Tenant: Active; MemberCluster: Reachable)
  within a bounded time;
- a hostile member is Reachable=False with a reason the contract names (and the one its
  kubeconfig calls for), and a refused kubeconfig's message names the field, never a value;
- nothing planted in a Secret reaches any object, Event, the operator's log or its metrics;
- no exec plugin runs, and no refused kubeconfig (tokenFile, auth-provider, ...) ever reaches
  the listener it points at;
- afterwards the operator is alive and ready, the registered members are still Reachable, and
  a control job is placed on a real member and deployed there.

The campaign runs once (the `campaign` fixture: apply everything, wait once for all the
conditions, look at everything); each test checks one part of the contract. Examples are
derandomized, so a failure replays: `CONTINUUM_CAMPAIGN_EXAMPLES` sets how many (a longer run:
`CONTINUUM_CAMPAIGN_EXAMPLES=1000 pytest tests/integration/test_campaign.py`), and
`CONTINUUM_CAMPAIGN_SEED` draws others. The counts by outcome are printed and written to
`campaign-report.json` in the fixture's tmp dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from campaign_listener import RecordingListener
from campaign_strategies import (
    ALL_REASONS,
    CAMPAIGN_LABEL,
    MARKER_PATTERN,
    MEMBER_FORMS,
    REFUSED,
    KubeconfigPlan,
    Markers,
    MemberCase,
    ObjectCase,
    Targets,
    build_kubeconfig,
    build_member,
    build_mljob,
    build_tenant,
    expected_reasons,
    member_cases,
    mljob_cases,
    secret_manifest,
    shaped_name,
    tenant_cases,
)
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from e2e.operator_process import REPO, Operator, condition, get_json
from e2e.pytest_plugin import RunningTestbed, eventually
from e2e.registration import register_members
from e2e.testbed import free_port

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("CONTINUUM_CAMPAIGN_EXAMPLES", "400"))
SEED = os.environ.get("CONTINUUM_CAMPAIGN_SEED")
GROUP, VERSION = "continuum.dev", "v1alpha1"
SYSTEM_NAMESPACE = "continuum-system"
REGISTERED = ("member-1", "member-2", "member-3", "member-4")
PROBE_INTERVAL_S = 10.0
# How long an accepted object may go without its condition, from its create.
MEMBER_WITHIN_S = 2 * PROBE_INTERVAL_S + 15
CONDITION_WITHIN_S = {"MLJob": 60.0, "Tenant": 30.0, "MemberCluster": MEMBER_WITHIN_S}
CONDITIONS = {
    "MLJob": ("Admitted", "Scheduled", "Ready"),
    "Tenant": ("Active",),
    "MemberCluster": ("Reachable",),
}
PLURALS = {"MLJob": "mljobs", "Tenant": "tenants", "MemberCluster": "memberclusters"}
# How long the operator may take to delete the campaign's jobs (and clean their shards).
SETTLE_S = 60.0
# An API server error names a field when it names a path under spec or metadata (a
# structural-schema error about the whole spec says "spec: Invalid value", and the decoder of
# metadata, before any schema, "Go struct field ObjectMeta.labels").
NAMES_A_FIELD = re.compile(r"\b(spec|metadata|ObjectMeta)[.:\[]")


@dataclass
class Applied:
    """One object the campaign sent, and what became of it."""

    kind: str
    name: str
    namespace: str | None
    case: str
    outcome: str
    """'schema' or 'webhook' (refused by either, at apply), 'error' (refused otherwise), or
    'accepted'."""
    message: str = ""
    applied_at: float = 0.0
    plan: KubeconfigPlan | None = None
    expected: frozenset[str] = frozenset()
    condition_after_s: float | None = None
    final: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name!r} ({self.case})"


@dataclass
class Campaign:
    run_id: str
    namespace: str
    tmp: Path
    markers: Markers
    targets: Targets
    sink: RecordingListener
    answering: RecordingListener
    operator: Operator
    applied: list[Applied] = field(default_factory=list)
    secrets: list[tuple[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    leak_texts: dict[str, str] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)
    registered: dict[str, dict[str, Any]] = field(default_factory=dict)
    control: dict[str, Any] = field(default_factory=dict)
    apply_finished: datetime | None = None

    def accepted(self, kind: str | None = None) -> list[Applied]:
        return [a for a in self.applied if a.outcome == "accepted" and kind in (None, a.kind)]


# --- applying ------------------------------------------------------------------------------


def _custom(api: client.ApiClient) -> Any:
    """The custom-objects API; it answers plain dicts (its annotations say `object`)."""
    return client.CustomObjectsApi(api)


def _status_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return f"HTTP {error.status}: {error.reason}: {error.body!r}"


def _create(api: client.ApiClient, kind: str, body: dict[str, Any]) -> tuple[str, str, str]:
    """Creates `body` as kubectl would (strict field validation): outcome, message, name."""
    custom = _custom(api)
    try:
        if kind == "MLJob":
            made = custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                body["metadata"]["namespace"],
                "mljobs",
                body,
                field_validation="Strict",
            )
        elif kind == "Secret":
            core: Any = client.CoreV1Api(api)
            made = core.create_namespaced_secret(
                body["metadata"]["namespace"], body, field_validation="Strict"
            ).to_dict()
        else:
            made = custom.create_cluster_custom_object(
                GROUP, VERSION, PLURALS[kind], body, field_validation="Strict"
            )
    except ApiException as error:
        message = _status_message(error)
        if "admission webhook" in message:
            return "webhook", message, ""
        return ("schema" if error.status in (400, 422) else "error"), message, ""
    return "accepted", "", str(made["metadata"]["name"])


def _apply_case(campaign: Campaign, api: client.ApiClient, case: ObjectCase | MemberCase) -> None:
    index = len(campaign.applied)
    prefix = f"c{campaign.run_id}"
    if isinstance(case, MemberCase):
        name = shaped_name(case.name_shape, f"{prefix}-mc-{index}")
        secret_name = f"{prefix}-kc-{index}"
        plan = build_kubeconfig(
            case.kubeconfig, name, secret_name, campaign.markers, campaign.targets
        )
        if plan.secret_namespace is not None:
            secret = secret_manifest(
                secret_name, plan.secret_namespace, plan.secret_data, campaign.run_id
            )
            outcome, message, _ = _create(api, "Secret", secret)
            if outcome != "accepted":
                campaign.applied.append(
                    Applied(
                        "Secret",
                        secret_name,
                        plan.secret_namespace,
                        case.describe(),
                        outcome,
                        message,
                        time.monotonic(),
                    )
                )
                return
            campaign.secrets.append((plan.secret_namespace, secret_name))
        body = build_member(case, name, plan.reference, campaign.run_id)
        expected = expected_reasons(body, plan, SYSTEM_NAMESPACE)
        outcome, message, made = _create(api, "MemberCluster", body)
        campaign.applied.append(
            Applied(
                "MemberCluster",
                made or name,
                None,
                case.describe(),
                outcome,
                message,
                time.monotonic(),
                plan=plan,
                expected=expected,
            )
        )
        return
    if case.kind == "MLJob":
        name = shaped_name(case.name_shape, f"{prefix}-job-{index}")
        body = build_mljob(case, name, campaign.namespace, campaign.namespace, campaign.run_id)
        namespace: str | None = campaign.namespace
    else:
        name = shaped_name(case.name_shape, f"{prefix}-tenant-{index}")
        body = build_tenant(case, name, campaign.namespace, campaign.run_id)
        namespace = None
    outcome, message, made = _create(api, case.kind, body)
    campaign.applied.append(
        Applied(
            case.kind, made or name, namespace, case.describe(), outcome, message, time.monotonic()
        )
    )


# The kinds in the order the examples take them: half MLJobs, a third members, the rest tenants.
KINDS = ("MLJob", "MemberCluster", "MLJob", "Tenant", "MLJob", "MemberCluster")


def _next_case(
    campaign: Campaign, drawn: tuple[ObjectCase, ObjectCase, MemberCase]
) -> ObjectCase | MemberCase:
    """Every example draws one case of each kind (so that what hypothesis draws never depends
    on how far the campaign is), and the campaign takes the one whose turn it is."""
    job, tenant, member = drawn
    kind = KINDS[len(campaign.applied) % len(KINDS)]
    if kind == "MemberCluster":
        members = sum(1 for a in campaign.applied if a.kind in ("MemberCluster", "Secret"))
        form, target = MEMBER_FORMS[members % len(MEMBER_FORMS)]
        kubeconfig = replace(
            member.kubeconfig, form=form, target=target or member.kubeconfig.target
        )
        return replace(member, kubeconfig=kubeconfig)
    return job if kind == "MLJob" else tenant


def _run_examples(campaign: Campaign, api: client.ApiClient) -> None:
    chosen = settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=SEED is None,
        database=None,
        # Nothing fails inside: the contract is checked once everything has been applied.
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )

    @chosen
    @given(st.tuples(mljob_cases(), tenant_cases(), member_cases()))
    def apply_one(drawn: tuple[ObjectCase, ObjectCase, MemberCase]) -> None:
        _apply_case(campaign, api, _next_case(campaign, drawn))

    if SEED is not None:
        apply_one = seed(int(SEED))(apply_one)
    apply_one()


# --- observing -----------------------------------------------------------------------------


def _list(api: client.ApiClient, kind: str, namespace: str) -> list[dict[str, Any]]:
    custom = _custom(api)
    if kind == "MLJob":
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "mljobs")
    else:
        listed = custom.list_cluster_custom_object(GROUP, VERSION, PLURALS[kind])
    items: list[dict[str, Any]] = listed["items"]
    return items


def _wanted_condition(kind: str, obj: dict[str, Any] | None) -> dict[str, Any] | None:
    for wanted in CONDITIONS[kind]:
        found = condition(obj, wanted)
        if found is not None:
            return found
    return None


def _set_after_s(obj: dict[str, Any], found: dict[str, Any]) -> float:
    """Seconds from the object's creation to its condition's last transition, plus the second
    both round down to; infinite when either time is missing."""
    created = obj.get("metadata", {}).get("creationTimestamp")
    transition = found.get("lastTransitionTime")
    if not created or not transition:
        return float("inf")
    return (_parse_time(transition) - _parse_time(created)).total_seconds() + 1.0


def _wait_for_conditions(campaign: Campaign, api: client.ApiClient) -> None:
    """Once, for every accepted object: until each has its condition, or the last one's bound
    has passed. Records when each was first seen with it, and each object as it is at the end."""
    accepted = campaign.accepted()
    if not accepted:
        return

    def look() -> bool:
        now = time.monotonic()
        by_key: dict[tuple[str, str], dict[str, Any]] = {}
        for kind in CONDITIONS:
            for obj in _list(api, kind, campaign.namespace):
                by_key[(kind, obj["metadata"]["name"])] = obj
        for applied in accepted:
            applied.final = by_key.get((applied.kind, applied.name))
            found = _wanted_condition(applied.kind, applied.final)
            if applied.condition_after_s is None and found is not None:
                # A long campaign first looks long after its first objects were applied: when
                # the operator set the condition, by the object's own clock, is the measure.
                assert applied.final is not None
                applied.condition_after_s = min(
                    now - applied.applied_at, _set_after_s(applied.final, found)
                )
        return all(applied.condition_after_s is not None for applied in accepted)

    last_bound = max(a.applied_at + CONDITION_WITHIN_S[a.kind] for a in accepted)
    with contextlib.suppress(AssertionError):  # the tests name the objects without one
        eventually(
            look,
            "every accepted object's condition",
            timeout=max(1.0, last_bound - time.monotonic()),
            interval=1.0,
        )
    look()  # every object as it is now


def _snapshot(campaign: Campaign, testbed: RunningTestbed, when: str) -> None:
    """What the contract greps for markers: the four kinds and all Events as kubectl shows
    them, the operator's log and its metrics."""
    for what in (
        ("memberclusters",),
        ("mljobs", "-A"),
        ("placements", "-A"),
        ("tenants",),
        ("events", "-A"),
    ):
        campaign.leak_texts[f"{when}: kubectl get {' '.join(what)}"] = json.dumps(
            get_json(testbed, *what)
        )
    campaign.leak_texts[f"{when}: operator log"] = campaign.operator.log.read_text(errors="replace")
    code, metrics = campaign.operator.probe("/metrics")
    campaign.leak_texts[f"{when}: /metrics (HTTP {code})"] = metrics


def _registered_members(testbed: RunningTestbed, since: datetime) -> dict[str, dict[str, Any]]:
    """The registered members' Reachable, once each has been probed since `since` (or two
    probe intervals and some have passed)."""
    found: dict[str, dict[str, Any]] = {}

    def look() -> bool:
        for name in REGISTERED:
            member = get_json(testbed, "membercluster", name) or {}
            heartbeat = member.get("status", {}).get("lastHeartbeatTime")
            found[name] = {
                "reachable": condition(member, "Reachable"),
                "probed": heartbeat and _parse_time(heartbeat) >= since.replace(microsecond=0),
                "heartbeat": heartbeat,
            }
        return all(seen["probed"] for seen in found.values())

    with contextlib.suppress(AssertionError):
        eventually(
            look, "a probe of every registered member", timeout=MEMBER_WITHIN_S, interval=1.0
        )
    return found


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _wait_until_gone(api: client.ApiClient, namespace: str, timeout: float) -> bool:
    custom = _custom(api)
    custom.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, "mljobs")
    try:
        eventually(
            lambda: not _list(api, "MLJob", namespace),
            "the campaign's MLJobs to go",
            timeout=timeout,
            interval=0.5,
        )
    except AssertionError:
        return False
    return True


def _control_job(campaign: Campaign, testbed: RunningTestbed, api: client.ApiClient) -> None:
    """With the campaign's jobs gone and its members and tenants still there: a valid job is
    placed on a registered member, and its RayJob appears there."""
    started = time.monotonic()
    gone = _wait_until_gone(api, campaign.namespace, SETTLE_S)
    campaign.timings["campaign jobs deleted (s)"] = time.monotonic() - started
    campaign.control["campaign jobs deleted"] = gone
    name = f"c{campaign.run_id}-control"
    job = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MLJob",
        "metadata": {"name": name, "namespace": campaign.namespace},
        "spec": {
            "mode": "Training",
            "tenant": campaign.namespace,
            "shards": {"count": 1, "resources": {"cpu": "100m", "memory": "128Mi"}},
            "ray": {"image": "rayproject/ray:2.50.0", "entrypoint": "python train.py"},
        },
    }
    outcome, message, _ = _create(api, "MLJob", job)
    campaign.control.update(outcome=outcome, message=message)
    if outcome != "accepted":
        return
    started = time.monotonic()

    def placed() -> str | None:
        placement = get_json(testbed, "placement", name, "-n", campaign.namespace) or {}
        clusters = {d["cluster"] for d in placement.get("spec", {}).get("decisions", [])}
        return next(iter(clusters)) if len(clusters) == 1 else None

    def deployed(member_name: str) -> bool:
        member = next(m for m in testbed.members if m.name == member_name)
        listed = get_json(
            testbed,
            "rayjobs",
            "-n",
            campaign.namespace,
            "-l",
            f"continuum.dev/job={name}",
            cluster=member,
        )
        return bool(listed and listed["items"])

    try:
        cluster = eventually(placed, "the control job's Placement", timeout=45, interval=0.5)
        campaign.control["cluster"] = cluster
        if cluster in REGISTERED:
            eventually(
                lambda: deployed(cluster), "the control job's RayJob", timeout=45, interval=0.5
            )
            campaign.control["rayjob"] = True
    except AssertionError as error:
        campaign.control["error"] = str(error)
    campaign.timings["control job placed and deployed (s)"] = time.monotonic() - started


# --- the report ----------------------------------------------------------------------------


def _counts(campaign: Campaign) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter[str]] = {}
    for applied in campaign.applied:
        if applied.outcome == "accepted":
            if applied.condition_after_s is None:
                outcome = "accepted without a condition"
            elif applied.condition_after_s > CONDITION_WITHIN_S[applied.kind]:
                outcome = "accepted, condition late"
            else:
                outcome = "accepted with a condition"
        else:
            outcome = {
                "schema": "refused by the CRD schema",
                "webhook": "refused by the webhook",
                "error": "refused otherwise",
            }[applied.outcome]
        counts.setdefault(applied.kind, Counter())[outcome] += 1
    reasons: Counter[str] = Counter()
    for applied in campaign.accepted("MemberCluster"):
        found = condition(applied.final, "Reachable") or {}
        reasons[f"{found.get('status')}/{found.get('reason')}"] += 1
    return {**{kind: dict(c) for kind, c in counts.items()}, "Reachable": dict(reasons)}


def _write_report(campaign: Campaign) -> None:
    report: dict[str, Any] = {
        "examples": EXAMPLES,
        "seed": SEED or "derandomized",
        "counts": _counts(campaign),
        "timings_s": {key: round(value, 1) for key, value in campaign.timings.items()},
        "listener connections": {
            "sink": len(campaign.sink.connections),
            "answering": len(campaign.answering.connections),
        },
        "markers planted": len(campaign.markers.planted),
        "objects": [
            {
                "kind": a.kind,
                "name": a.name,
                "case": a.case,
                "outcome": a.outcome,
                "message": a.message[:500],
                "condition_after_s": a.condition_after_s,
                "expected": sorted(a.expected),
                "condition": _wanted_condition(a.kind, a.final) if a.final else None,
            }
            for a in campaign.applied
        ],
    }
    (campaign.tmp / "campaign-report.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"\nbad-input campaign {campaign.run_id}: {campaign.tmp / 'campaign-report.json'}")
    for kind, counts in report["counts"].items():
        print(f"  {kind}: {json.dumps(counts, sort_keys=True)}")
    print(f"  timings (s): {json.dumps(report['timings_s'])}")


# --- the fixture ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def campaign(
    testbed: RunningTestbed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Campaign]:
    started = time.monotonic()
    run_id = uuid.uuid4().hex[:6]
    namespace = f"campaign-{run_id}"
    other_namespace = f"{namespace}-elsewhere"
    tmp = tmp_path_factory.mktemp("campaign")
    for folder in ("exec", "files"):
        (tmp / folder).mkdir()
    register_members([testbed.hub, *testbed.members], None)
    testbed.kubectl("apply", "-f", str(REPO / "examples" / "tenants.yaml"))
    for name in (namespace, other_namespace):
        testbed.kubectl("create", "namespace", name)
    # The tenant every drawn MLJob names unless a mutation changes it.
    base_tenant = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Tenant",
        "metadata": {"name": namespace, "labels": {CAMPAIGN_LABEL: run_id}},
        "spec": {"weight": 1, "namespaces": [namespace]},
    }
    testbed.kubectl("apply", "-f", "-", stdin=json.dumps(base_tenant))

    member_config = json.loads(testbed.members[0].kubeconfig.read_text())
    sink, answering = RecordingListener("sink"), RecordingListener("answering")
    operator = Operator(testbed.hub.kubeconfig, tmp / "operator.log")
    run = Campaign(
        run_id=run_id,
        namespace=namespace,
        tmp=tmp,
        markers=Markers(run_id),
        targets=Targets(
            system_namespace=SYSTEM_NAMESPACE,
            other_namespace=other_namespace,
            sink_port=sink.port,
            answering_port=answering.port,
            closed_port=free_port(),
            member_server=testbed.members[0].server,
            member_ca_data=member_config["clusters"][0]["cluster"]["certificate-authority-data"],
            exec_dir=tmp / "exec",
            files_dir=tmp / "files",
        ),
        sink=sink,
        answering=answering,
        operator=operator,
    )
    # The kubernetes client's config module carries no annotations.
    api = config.new_client_from_config(config_file=str(testbed.hub.kubeconfig))  # type: ignore[no-untyped-call]
    sink.start()
    answering.start()
    operator.start()
    try:
        eventually(
            lambda: get_json(testbed, "validatingwebhookconfiguration", "continuum.dev"),
            "the operator to register its webhook",
            timeout=60,
            interval=0.5,
        )
        eventually(
            lambda: operator.probe("/readyz")[0] == 200,
            "the operator ready",
            timeout=60,
            interval=0.5,
        )
        run.timings["setup (s)"] = time.monotonic() - started

        phase = time.monotonic()
        _run_examples(run, api)
        run.apply_finished = datetime.now(UTC)
        run.timings["apply (s)"] = time.monotonic() - phase
        phase = time.monotonic()
        _wait_for_conditions(run, api)
        run.timings["wait for conditions (s)"] = time.monotonic() - phase
        _snapshot(run, testbed, "after the campaign")

        phase = time.monotonic()
        _control_job(run, testbed, api)
        assert run.apply_finished is not None
        run.registered = _registered_members(testbed, run.apply_finished)
        # Ready once every member made in the campaign has been probed.
        with contextlib.suppress(AssertionError):
            eventually(
                lambda: operator.probe("/readyz")[0] == 200,
                "the operator ready",
                timeout=MEMBER_WITHIN_S,
                interval=1.0,
            )
        run.health = {
            "alive": operator.is_running(),
            "healthz": operator.probe("/healthz"),
            "readyz": operator.probe("/readyz"),
        }
        _snapshot(run, testbed, "at the end")
        run.timings["control job and health (s)"] = time.monotonic() - phase
        run.timings["total (s)"] = time.monotonic() - started
        _write_report(run)
        yield run
    finally:
        _clean_up(run, testbed, api)
        api.close()


def _clean_up(campaign: Campaign, testbed: RunningTestbed, api: client.ApiClient) -> None:
    """What the campaign made (other tests share the hub), while the operator still runs: it
    takes the jobs' shards away, and Kopf its finalizer off the members. The jobs go first,
    as their tenants must still be there when their finalizer comes off (the webhook checks
    the tenant on every update). Whatever still holds a finalizer when the operator has
    stopped loses it then, and the members' copy of the namespace goes with their shards."""
    custom = _custom(api)
    try:
        if campaign.operator.is_running():
            # Not the whole wait again if the operator could not delete them before.
            failed_before = campaign.control.get("campaign jobs deleted") is False
            _wait_until_gone(api, campaign.namespace, 10.0 if failed_before else SETTLE_S)
        for kind in ("MemberCluster", "Tenant"):
            for name in _campaign_names(campaign, api, kind):
                _ignore_missing(
                    custom.delete_cluster_custom_object, GROUP, VERSION, PLURALS[kind], name
                )
        core: Any = client.CoreV1Api(api)
        for namespace, name in campaign.secrets:
            _ignore_missing(core.delete_namespaced_secret, name, namespace)
        if campaign.operator.is_running():
            with contextlib.suppress(AssertionError):
                eventually(
                    lambda: not _campaign_names(campaign, api, "MemberCluster"),
                    "the campaign's members to go",
                    timeout=30,
                    interval=0.5,
                )
    finally:
        if campaign.operator.is_running():
            campaign.operator.stop()
        unhold = {"metadata": {"finalizers": None}}
        for job in _list(api, "MLJob", campaign.namespace):
            _ignore_missing(
                custom.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                campaign.namespace,
                "mljobs",
                job["metadata"]["name"],
                unhold,
            )
        for kind in ("MemberCluster", "Tenant"):
            for name in _campaign_names(campaign, api, kind):
                _ignore_missing(
                    custom.patch_cluster_custom_object, GROUP, VERSION, PLURALS[kind], name, unhold
                )
        eventually(
            lambda: not any(_campaign_names(campaign, api, k) for k in ("MemberCluster", "Tenant")),
            "the campaign's members and tenants to be gone",
            timeout=30,
            interval=0.5,
        )
        for name in (campaign.namespace, campaign.targets.other_namespace):
            testbed.kubectl("delete", "namespace", name, "--wait=false", check=False)
        for member in testbed.members:
            testbed.kubectl(
                "delete",
                "namespace",
                campaign.namespace,
                "--wait=false",
                "--ignore-not-found",
                cluster=member,
                check=False,
            )
        campaign.sink.stop()
        campaign.answering.stop()


def _campaign_names(campaign: Campaign, api: client.ApiClient, kind: str) -> set[str]:
    """The campaign's objects of a cluster-scoped kind that are still there: by label, and by
    the names it created (a drawn mutation may have taken the label away)."""
    listed = _list(api, kind, "")
    created = {a.name for a in campaign.accepted(kind)}
    if kind == "Tenant":
        created.add(campaign.namespace)
    return {
        item["metadata"]["name"]
        for item in listed
        if item["metadata"]["name"] in created
        or (item["metadata"].get("labels") or {}).get(CAMPAIGN_LABEL) == campaign.run_id
    }


def _ignore_missing(call: Callable[..., Any], *args: Any) -> None:
    try:
        call(*args)
    except ApiException as error:
        if error.status != 404:
            raise


# --- the contract --------------------------------------------------------------------------


def _failures(found: list[str], what: str) -> None:
    assert not found, f"{len(found)} {what}:\n" + "\n".join(found[:40])


def test_a_refusal_at_apply_names_the_field(campaign: Campaign) -> None:
    refused = [a for a in campaign.applied if a.outcome != "accepted"]
    _failures(
        [
            f"{a.label}: {a.outcome}: {a.message[:300]}"
            for a in refused
            if a.outcome == "error" or not NAMES_A_FIELD.search(a.message)
        ],
        "refusals that do not name a field under spec or metadata",
    )


def test_every_accepted_object_gets_its_condition_in_time(campaign: Campaign) -> None:
    late = []
    for applied in campaign.accepted():
        bound = CONDITION_WITHIN_S[applied.kind]
        if applied.condition_after_s is None or applied.condition_after_s > bound:
            seen = (
                "never"
                if applied.condition_after_s is None
                else f"after {applied.condition_after_s:.0f} s"
            )
            late.append(
                f"{applied.label}: {' or '.join(CONDITIONS[applied.kind])} {seen}, "
                f"bound {bound:.0f} s"
            )
    _failures(late, "accepted objects without their condition in time")


def test_a_hostile_member_is_unreachable_for_a_reason_the_contract_names(
    campaign: Campaign,
) -> None:
    wrong = []
    for applied in campaign.accepted("MemberCluster"):
        reachable = condition(applied.final, "Reachable")
        if reachable is None:
            continue  # the condition test names it
        status, reason, message = reachable["status"], reachable["reason"], reachable["message"]
        if status != "False" or reason not in ALL_REASONS:
            wrong.append(f"{applied.label}: Reachable {status}/{reason}: {message[:200]}")
        elif reason not in applied.expected:
            wrong.append(
                f"{applied.label}: reason {reason}, expected one of "
                f"{sorted(applied.expected)}: {message[:200]}"
            )
        elif (
            reason == REFUSED
            and applied.plan is not None
            and applied.plan.names_field
            and not (any(key in message for key in applied.plan.names_field))
        ):
            wrong.append(
                f"{applied.label}: {REFUSED} without naming "
                f"{' or '.join(applied.plan.names_field)}: {message[:200]}"
            )
    _failures(wrong, "hostile members with a Reachable the contract does not allow")


def test_nothing_from_a_secret_reaches_status_events_metrics_or_the_log(
    campaign: Campaign,
) -> None:
    sources: dict[str, list[str]] = {}
    example: dict[str, str] = {}
    for source, text in campaign.leak_texts.items():
        for marker, forms in campaign.markers.found_in(text).items():
            sources.setdefault(marker, []).append(f"{source} ({'/'.join(forms)})")
            at = text.find(marker)
            if at >= 0 and marker not in example:
                example[marker] = repr(text[max(0, at - 150) : at + 50])
    _failures(
        [
            f"{marker} from {campaign.markers.planted[marker].where}; in {', '.join(found)}; "
            f"{example.get(marker, '')}"
            for marker, found in sorted(sources.items())
        ],
        f"markers from Secrets found outside them (of {len(campaign.markers.planted)} planted)",
    )


def test_no_exec_plugin_ever_runs(campaign: Campaign) -> None:
    made = sorted(path.name for path in (campaign.tmp / "exec").iterdir())
    planned = [
        path for a in campaign.accepted("MemberCluster") if a.plan for path in a.plan.exec_files
    ]
    if not planned:
        pytest.skip("no member with an exec plugin was accepted: raise the examples")
    _failures(
        [
            f"{name}: {campaign.markers.planted[name].where}"
            for name in made
            if name in campaign.markers.planted
        ]
        + [name for name in made if name not in campaign.markers.planted],
        f"files made by exec plugins that ran (of {len(planned)} planted in accepted members)",
    )


def _sender(campaign: Campaign, path: str) -> str:
    """The member whose kubeconfig names `path` on the listener (its server's path, or its
    oidc issuer's), from the marker in it."""
    for marker in MARKER_PATTERN.findall(path):
        planted = campaign.markers.planted.get(marker)
        if planted is not None:
            return planted.where.split(":", 1)[0]
    return "a TLS client (no path)" if not path else f"unknown ({path[:80]})"


def test_no_refused_kubeconfig_reaches_its_server(campaign: Campaign) -> None:
    """The sink is the only server of every kubeconfig the contract refuses (tokenFile,
    auth-provider, exec, file paths, unknown fields, broken ones, ones out of reach): it must
    hear nothing. And no listener may receive what only a refused field holds."""
    refused = [a for a in campaign.accepted("MemberCluster") if a.plan and a.plan.must_not_connect]
    if not refused:
        pytest.skip("no member with a kubeconfig to refuse was accepted: raise the examples")
    reached: Counter[str] = Counter()
    for connection in campaign.sink.connections:
        reached[f"sink: connections from {_sender(campaign, connection.path)}"] += 1
    for listener in (campaign.sink, campaign.answering):
        for connection in listener.connections:
            found = campaign.markers.found_in(connection.received.decode("latin-1"))
            for marker in found:
                planted = campaign.markers.planted[marker]
                if not planted.may_be_sent:
                    reached[f"{listener.name} received {planted.where}"] += 1
    _failures(
        [f"{what}: {count} times" for what, count in sorted(reached.items())],
        f"kinds of connection or secret that reached a listener (members that must not "
        f"connect: {len(refused)})",
    )


def test_the_operator_survives_and_places_a_control_job(campaign: Campaign) -> None:
    health = campaign.health
    assert health["alive"], "the operator process died during the campaign"
    assert health["healthz"] == (200, "ok\n"), health
    assert health["readyz"] == (200, "ok\n"), health
    control = campaign.control
    assert control.get("campaign jobs deleted"), "the campaign's MLJobs were not all deleted"
    assert control.get("outcome") == "accepted", control
    assert control.get("cluster") in REGISTERED, control
    assert control.get("rayjob"), control


def test_the_registered_members_stay_reachable(campaign: Campaign) -> None:
    stale = []
    for name, seen in campaign.registered.items():
        reachable = seen["reachable"] or {}
        if reachable.get("status") != "True":
            stale.append(f"{name}: Reachable {reachable}")
        elif not seen["probed"]:
            stale.append(f"{name}: last heartbeat {seen['heartbeat']}, before the campaign ended")
    _failures(stale, "registered members not Reachable, or not probed since the campaign")
