"""Operator-wide settings and lifecycle: one startup handler configures everything."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from continuum.operator.adapters import collector
from continuum.operator.adapters.kube import hub_client
from continuum.operator.adapters.webhook_certs import self_signed
from continuum.operator.controller.context import FINALIZER, OperatorContext
from continuum.operator.controller.cycle import scheduling_loop
from continuum.operator.controller.placements import start_controller
from continuum.operator.controller.signals import start_signals
from continuum.operator.handlers.members import start_pull_heartbeats

WEBHOOK_CONFIGURATION = "continuum.dev"
ANNOTATION_PREFIX = "continuum.dev"
WATCH_SERVER_TIMEOUT_S = 300
WATCH_CLIENT_TIMEOUT_S = 330
REQUEST_TIMEOUT_S = 30
# How long start-up waits for the first lists of the hub's objects before going on regardless
# (the cycle and the webhook then see less, never anything wrong).
MIRROR_SYNC_TIMEOUT_S = 30.0
LOG = logging.getLogger(__name__)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # Reads KUBECONFIG when called (`continuum operator run` sets it from --kubeconfig); in a
    # pod, falls back to the service account, through the Kubernetes client as the operator's
    # own clients do: it reaches the API server at KUBERNETES_SERVICE_HOST and _PORT, where
    # Kopf's own service-account login assumes kubernetes.default.svc resolves.
    return kopf.login_with_kubeconfig(**kwargs) or kopf.login_via_client(**kwargs)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT_S
    settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT_S
    settings.networking.request_timeout = REQUEST_TIMEOUT_S
    # Kopf would post an Event for every handler run (every timer tick); only problems, please.
    settings.posting.level = logging.WARNING
    # Kopf's handlers run in this thread pool; the scheduling loop has a thread of its own.
    settings.execution.max_workers = 8
    if not hasattr(memo, "context"):
        # Started as `kopf run -m continuum.operator.handlers`, not `continuum operator run`.
        memo.context = OperatorContext(hub_client(os.environ.get("KUBECONFIG")))
    context: OperatorContext = memo.context
    if context.config.webhook_port:
        # The hub's API server calls back on loopback; Kopf makes a self-signed certificate and
        # keeps the ValidatingWebhookConfiguration's caBundle and URL up to date.
        certificate = self_signed(Path(tempfile.mkdtemp(prefix="continuum-webhook-")))
        settings.admission.server = kopf.WebhookServer(
            addr="127.0.0.1",
            host="127.0.0.1",
            port=context.config.webhook_port,
            certfile=str(certificate.certfile),
            pkeyfile=str(certificate.pkeyfile),
            cadata=certificate.pem,
        )
        settings.admission.managed = WEBHOOK_CONFIGURATION
    # The controller's queue first, so that the mirror's first list fills it.
    memo.resync_thread = start_controller(context)
    context.works.start()
    context.leases.start()
    if not context.mirror.start().wait_synced(MIRROR_SYNC_TIMEOUT_S):
        LOG.warning("the hub's objects are not all listed yet; going on")
    context.placement_writes.start()
    context.events.start()
    # What is alive now lives as long as the process: frozen, it is not walked by the
    # collections whose pauses stop every thread (adapters/collector.py).
    collector.settle_heap()
    thread = threading.Thread(
        target=scheduling_loop, args=(context,), name="scheduling-loop", daemon=True
    )
    thread.start()
    memo.scheduler_thread = thread
    memo.pull_heartbeats_thread = start_pull_heartbeats(context)
    # Only with --prometheus-url: the link signals into the members' status.
    memo.signals_thread = start_signals(context)


@kopf.on.cleanup()
def stop(memo: kopf.Memo, **_: Any) -> None:
    context: OperatorContext = memo.context
    context.stop.set()
    context.wake_scheduler.set()
    for name in ("scheduler_thread", "signals_thread", "pull_heartbeats_thread"):
        thread: threading.Thread | None = getattr(memo, name, None)
        if thread is not None:
            thread.join(timeout=10)
    context.placement_writes.stop()
    for lane in (context.placements, context.statuses):
        if lane is not None:
            lane.stop()
    context.events.stop()
    context.mirror.stop()
    context.member_mirrors.stop()
    context.works.stop()
    context.leases.stop()
    context.members.close()
    if context.config.webhook_port:
        remove_webhook_configuration(context)


def remove_webhook_configuration(context: OperatorContext) -> None:
    """On a clean stop, so that applies do not wait for a webhook that no longer answers."""
    registrations = client.AdmissionregistrationV1Api(context.hub_api)
    try:
        registrations.delete_validating_webhook_configuration(WEBHOOK_CONFIGURATION)
    except ApiException as error:
        if error.status != 404:
            LOG.warning("could not remove the webhook configuration: %s", error.reason)
