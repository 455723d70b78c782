"""The hub's side of Pull members: the MemberWorks the operator writes and their agents
report on, and the agents' Leases, each mirrored by one list-and-watch across the cluster.

A Lease's age is taken from this operator's own monotonic clock: the time it saw the Lease's
renewTime change, never the renewTime itself, so the agent's clock does not matter (as the
node lifecycle controller does with node Leases). A Lease first seen when the operator
starts counts as renewed then: a restarted operator gives every agent a whole lease.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from continuum.operator.adapters.watchcache import Body, WatchCache, custom_object_cache
from continuum.operator.api import GROUP, VERSION
from continuum.operator.api.membercluster import AgentReport
from continuum.operator.api.work import AGENT_REPORT_ANNOTATION, member_namespace

MEMBER_LABEL = "continuum.dev/member"
WORK_PLURAL = "memberworks"
WORK_SELECTOR = "continuum.dev/managed-by=continuum"
# member, job namespace, job name
WorkKey = tuple[str, str, str]
JOB_INDEX = "job"
# the job's namespace and name, for every change of a MemberWork
WorkChangeHandler = Callable[[str, str], None]
LeaseChangeHandler = Callable[[str], None]
MAX_REPORT_CHARACTERS = 16384
# How often the operator checks that it hears the hub, and how long it waits for an answer.
CONTACT_INTERVAL_S = 1.0
CONTACT_TIMEOUT_S = 2.0


def work_key(body: Body) -> WorkKey:
    spec = body.get("spec") or {}
    job = spec.get("jobRef") or {}
    return (str(spec.get("member", "")), str(job.get("namespace", "")), str(job.get("name", "")))


def _member_of(body: Body) -> str:
    return str(work_key(body)[0])


def _job_of(body: Body) -> tuple[str, str]:
    _, namespace, name = work_key(body)
    return (namespace, name)


class _Mirror:
    """One list-and-watch of the hub, started and stopped with the operator."""

    cache: WatchCache

    def start(self) -> None:
        self.cache.start()

    def stop(self) -> None:
        self.cache.stop()

    def is_synced(self) -> bool:
        return self.cache.is_synced()


class WorkMirror(_Mirror):
    """Every MemberWork on the hub, indexed by member and by job;
    writes go through it so that a pass sees its own write at once."""

    def __init__(self, api: client.ApiClient, on_change: WorkChangeHandler | None = None) -> None:
        self._objects = client.CustomObjectsApi(api)

        def changed(event: str, body: Body, before: Body | None) -> None:
            if on_change is not None:
                _, namespace, name = work_key(body)
                on_change(namespace, name)

        cache = custom_object_cache(
            "memberworks",
            self._objects,
            {"group": GROUP, "version": VERSION, "plural": WORK_PLURAL,
             "label_selector": WORK_SELECTOR},
            on_change=changed,
            index=_member_of,
            indexes={JOB_INDEX: _job_of},
        )  # fmt: skip
        assert isinstance(cache, WatchCache)
        self.cache = cache

    def work(self, member: str, namespace: str, job: str) -> Body | None:
        wanted = (member, namespace, job)
        return next((body for body in self.of_member(member) if work_key(body) == wanted), None)

    def members_with_work(self, namespace: str, job: str) -> set[str]:
        """The members that have a work of the job, from the index by job."""
        return {_member_of(body) for body in self.cache.indexed((namespace, job), JOB_INDEX)}

    def of_member(self, member: str) -> list[Body]:
        """The member's works, from the index by member: a fleet's thousands of works are not
        scanned for each member."""
        return self.cache.indexed(member)

    def write(self, body: Body, existing: Body | None) -> Body | None:
        """Creates the work, or replaces its spec at the version read; None on a conflict (the
        mirror brings the newer version, and the pass comes back)."""
        metadata = body["metadata"]
        try:
            if existing is None:
                written: Any = self._objects.create_namespaced_custom_object(
                    GROUP, VERSION, metadata["namespace"], WORK_PLURAL, body
                )
            else:
                replaced = {
                    **body,
                    "metadata": {
                        **metadata,
                        "resourceVersion": existing["metadata"]["resourceVersion"],
                    },
                }
                written = self._objects.replace_namespaced_custom_object(
                    GROUP, VERSION, metadata["namespace"], WORK_PLURAL, metadata["name"], replaced
                )
        except ApiException as error:
            if error.status == 409:
                return None
            raise
        self.cache.store(dict(written))
        return dict(written)

    def delete(self, body: Body) -> None:
        """Deletes the work at the version read (a newer report keeps it)."""
        metadata = body["metadata"]
        try:
            self._objects.delete_namespaced_custom_object(
                GROUP, VERSION, metadata["namespace"], WORK_PLURAL, metadata["name"],
                body=client.V1DeleteOptions(
                    preconditions=client.V1Preconditions(
                        uid=metadata.get("uid"), resource_version=metadata.get("resourceVersion")
                    )
                ),
            )  # fmt: skip
        except ApiException as error:
            if error.status not in (404, 409):
                raise
            if error.status == 409:
                return
        self.cache.discard((metadata["namespace"], metadata["name"]))


@dataclass(frozen=True)
class LeaseSighting:
    """When this operator last saw a member's Lease renewed, on its own monotonic clock, and
    the agent's report that came with it (None: none, or one the model refuses)."""

    renew_time: str
    seen_at: float
    holder: str
    report: AgentReport | None = None


def parse_report(text: object) -> AgentReport | None:
    """The agent's report from its Lease's annotation; None when absent or not one: a
    malformed report is the agent's problem, and the member is judged by its Lease alone."""
    if not isinstance(text, str) or len(text) > MAX_REPORT_CHARACTERS:
        return None
    try:
        return AgentReport.model_validate_json(text)
    except ValueError:
        return None


def _leases_as_dicts(coordination: client.CoordinationV1Api) -> Callable[..., Any]:
    def list_leases(**arguments: Any) -> Any:
        """Leases across the cluster, as plain objects like the custom objects' lists."""
        if arguments.get("watch"):
            return coordination.list_lease_for_all_namespaces(**arguments)
        listing: Callable[..., Any] = coordination.list_lease_for_all_namespaces
        return json.loads(listing(**arguments, _preload_content=False).data)

    return list_leases


class LeaseMirror(_Mirror):
    """The Pull members' Leases (labelled with their member), and when each was last seen
    renewed. `clock`: a monotonic clock, injected.

    A Lease's age counts only while the operator itself is in touch with the hub: a request
    every CONTACT_INTERVAL_S says whether it is. While it is not, the ages stand still (an
    agent cannot be heard through a hub the operator cannot hear), and once it is again,
    every Lease counts as renewed then: a hub outage of any length evicts no Pull member, as
    a restarted operator evicts none."""

    def __init__(
        self,
        api: client.ApiClient,
        on_change: LeaseChangeHandler | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._on_change = on_change
        self._seen: dict[str, LeaseSighting] = {}
        self._lock = threading.Lock()
        self._version = client.VersionApi(api)
        self._out_of_touch_since: float | None = None
        self._stop = threading.Event()
        self.cache = WatchCache(
            "leases",
            _leases_as_dicts(client.CoordinationV1Api(api)),
            {"label_selector": MEMBER_LABEL},
            on_change=self._changed,
        )

    def start(self) -> None:
        super().start()
        threading.Thread(target=self._keep_in_touch, name="hub-contact", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        super().stop()

    def _keep_in_touch(self) -> None:
        while not self._stop.wait(CONTACT_INTERVAL_S):
            try:
                self._version.get_code(_request_timeout=CONTACT_TIMEOUT_S)
            except Exception:  # any failure to hear the hub is being out of touch with it
                self.out_of_touch()
            else:
                self.in_touch()

    def out_of_touch(self) -> None:
        with self._lock:
            if self._out_of_touch_since is None:
                self._out_of_touch_since = self._clock()

    def in_touch(self) -> None:
        with self._lock:
            if self._out_of_touch_since is None:
                return
            self._out_of_touch_since = None
            now = self._clock()
            self._seen = {
                member: replace(seen, seen_at=max(seen.seen_at, now))
                for member, seen in self._seen.items()
            }

    def _changed(self, event: str, body: Body, before: Body | None) -> None:
        metadata = body.get("metadata") or {}
        member = (metadata.get("labels") or {}).get(MEMBER_LABEL, "")
        if not member or metadata.get("namespace") != member_namespace(member):
            return  # only the member's own namespace speaks for it
        spec = body.get("spec") or {}
        renew_time = str(spec.get("renewTime") or "")
        report = parse_report((metadata.get("annotations") or {}).get(AGENT_REPORT_ANNOTATION))
        with self._lock:
            if event == "DELETED":
                self._seen.pop(member, None)
            elif renew_time and (
                # Only a later renewal counts: a watch that replays older versions of the
                # Lease must not make a silent agent look alive. (MicroTimes of one format
                # order as strings.)
                member not in self._seen or self._seen[member].renew_time < renew_time
            ):
                self._seen[member] = LeaseSighting(
                    renew_time, self._clock(), str(spec.get("holderIdentity") or ""), report
                )
        if self._on_change is not None:
            self._on_change(member)

    def sighting(self, member: str) -> LeaseSighting | None:
        """The last renewal seen of the member's Lease; None if it was never renewed."""
        with self._lock:
            return self._seen.get(member)

    def age_s(self, member: str) -> float | None:
        """Seconds since the member's Lease was last seen renewed, not counting the time the
        operator was out of touch with the hub; None if never."""
        with self._lock:
            seen = self._seen.get(member)
            until = self._out_of_touch_since
        if seen is None:
            return None
        return max(0.0, (until if until is not None else self._clock()) - seen.seen_at)
