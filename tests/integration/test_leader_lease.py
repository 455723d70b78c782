"""Leader election against the testbed's real API server: two candidates for one Lease, the
resourceVersion deciding each round, a release handing over at once, a holder that stops
renewing taken over after the lease duration."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from kubernetes import client

from continuum.operator.adapters.leader import LeaseElector, LeaseTiming

pytestmark = pytest.mark.integration

TIMING = LeaseTiming(duration_s=2, renew_deadline_s=1.5, retry_s=0.2)


@pytest.fixture
def coordination(hub_api: client.ApiClient) -> client.CoordinationV1Api:
    return client.CoordinationV1Api(hub_api)


def elector(api: client.CoordinationV1Api, namespace: str, lease: str, who: str) -> LeaseElector:
    return LeaseElector(api, namespace, lease, who, TIMING)


def test_one_of_two_candidates_leads_and_a_release_hands_over_at_once(
    coordination: client.CoordinationV1Api, namespace: str
) -> None:
    lease = f"leader-{uuid.uuid4().hex[:6]}"
    first, second = (elector(coordination, namespace, lease, who) for who in ("a", "b"))
    assert first.try_acquire_or_renew()
    assert not second.try_acquire_or_renew()
    assert second.holder == "a"
    assert first.try_acquire_or_renew()  # a renewal
    first.release()
    spec = coordination.read_namespaced_lease(lease, namespace).spec
    assert spec.holder_identity is None
    assert second.try_acquire_or_renew()
    spec = coordination.read_namespaced_lease(lease, namespace).spec
    assert spec.holder_identity == "b" and spec.lease_transitions == 1


def test_a_holder_that_stops_renewing_is_taken_over_after_the_lease_duration(
    coordination: client.CoordinationV1Api, namespace: str
) -> None:
    lease = f"leader-{uuid.uuid4().hex[:6]}"
    crashed, standby = (elector(coordination, namespace, lease, who) for who in ("a", "b"))
    assert crashed.try_acquire_or_renew()  # and then nothing more, as a killed process
    started = time.monotonic()
    assert standby.wait_until_leading()
    waited = time.monotonic() - started
    assert TIMING.duration_s <= waited <= TIMING.duration_s + 2 * TIMING.retry_s + 1.0, waited


def test_a_leader_that_cannot_renew_within_its_deadline_is_told_it_lost(
    coordination: client.CoordinationV1Api, namespace: str
) -> None:
    lease = f"leader-{uuid.uuid4().hex[:6]}"
    leader = elector(coordination, namespace, lease, "a")
    assert leader.try_acquire_or_renew()
    lost = threading.Event()
    renewing = threading.Thread(target=leader.keep_leading, args=(lost.set,), daemon=True)
    renewing.start()
    time.sleep(1.0)
    assert not lost.is_set()  # renewed every retry while it could
    # Another writer takes the Lease from under it (as a standby would after a partition).
    spec = coordination.read_namespaced_lease(lease, namespace)
    spec.spec.holder_identity = "b"
    spec.spec.lease_duration_seconds = 60
    coordination.replace_namespaced_lease(lease, namespace, spec)
    assert lost.wait(TIMING.renew_deadline_s + 2.0)
    renewing.join(timeout=5)
    leader.release()  # not its Lease any more: left as it is
    assert coordination.read_namespaced_lease(lease, namespace).spec.holder_identity == "b"
