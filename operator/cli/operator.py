"""`continuum operator run`: the operator in the foreground, against the hub in --kubeconfig.

It stops cleanly on SIGTERM or SIGINT: Kopf finishes the handlers in flight, the cleanup
handler stops the scheduling loop, and the process exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes import client

    from continuum.operator.adapters.leader import LeaseElector
    from continuum.operator.recovery.signals import SignalsConfig

LOG = logging.getLogger(__name__)

PROMETHEUS_URL_ENV = "CONTINUUM_PROMETHEUS_URL"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    run_parser = actions.add_parser("run", help="run the operator in the foreground")
    run_parser.add_argument("--kubeconfig", help="the hub's kubeconfig; in a pod, omit it")
    run_parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="handle MLJobs in this namespace only, in the hub and the members (repeatable);"
        " default: every namespace",
    )
    run_parser.add_argument("--system-namespace", default="continuum-system")
    run_parser.add_argument("--cycle-interval", type=float, default=2.0, metavar="SECONDS")
    run_parser.add_argument(
        "--resync-interval",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="converge every Placement and sweep orphaned shard resources at least this often",
    )
    run_parser.add_argument("--policy", default="continuum")
    run_parser.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve Prometheus metrics on PORT, and the probes /healthz and /readyz",
    )
    run_parser.add_argument("--metrics-address", default="127.0.0.1")
    run_parser.add_argument(
        "--webhook-port",
        type=int,
        default=0,
        help="serve the MLJob validating webhook on 127.0.0.1:PORT and register it in the hub; "
        "with --webhook-secret, on --webhook-address:PORT behind the chart's Service",
    )
    webhook = run_parser.add_argument_group(
        "the webhook in a cluster",
        "every replica serves it, with certificates kept in a Secret (docs/operator.md, "
        "The webhook in a cluster)",
    )
    webhook.add_argument("--webhook-address", default="127.0.0.1")
    webhook.add_argument("--webhook-secret", metavar="NAME",
                         help="the Secret of the system namespace with the serving certificate "
                         "(tls.crt, tls.key, ca.crt)")  # fmt: skip
    webhook.add_argument("--webhook-service", metavar="NAME",
                         help="the Service in front of the webhook: its names go in the "
                         "certificate")  # fmt: skip
    webhook.add_argument("--webhook-configuration", metavar="NAME",
                         help="the ValidatingWebhookConfiguration whose caBundle the operator "
                         "keeps")  # fmt: skip
    webhook.add_argument("--webhook-certificates-external", action="store_true",
                         help="cert-manager (or another) writes the Secret and the caBundle: "
                         "the operator only reads the Secret")  # fmt: skip
    run_parser.add_argument(
        "--secret-namespace",
        action="append",
        default=[],
        metavar="NS",
        help="read member kubeconfig Secrets in this namespace (repeatable); "
        "default: the system namespace only",
    )
    run_parser.add_argument(
        "--allow-exec-plugin",
        action="append",
        default=[],
        metavar="COMMAND",
        help="let member kubeconfigs run this exec credential plugin, by its exact command "
        "(repeatable); default: none, every exec plugin is refused",
    )
    run_parser.add_argument(
        "--member-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long a request to a member may take before it counts as not answering",
    )
    run_parser.add_argument(
        "--probe-interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="seconds between probes of each member; a member that stops answering is "
        "declared failed within --failure-threshold times this",
    )
    run_parser.add_argument(
        "--member-cleanup-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="how long a deleted MemberCluster that cannot be reached waits before its shard "
        "resources are left in it",
    )
    run_parser.add_argument(
        "--handoff-timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="a shard moved before a failure (Proactive) or for a better place (Rebalance) "
        "keeps running where it was until its replacement runs, or for at most this long",
    )
    run_parser.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="once its replacement runs, how long the old copy of a moved shard of a job with "
        "checkpoints has to report a last checkpoint before it is removed regardless",
    )
    election = run_parser.add_argument_group(
        "leader election",
        "with two or more replicas, one acts and the others stand by (adapters/leader.py)",
    )
    election.add_argument("--leader-elect", action="store_true",
                          help="act only while holding a coordination.k8s.io Lease")  # fmt: skip
    election.add_argument("--leader-election-namespace", metavar="NAMESPACE",
                          help="the Lease's namespace; default: --system-namespace")  # fmt: skip
    election.add_argument("--leader-election-lease", default="continuum-operator",
                          metavar="NAME", help="the Lease's name")  # fmt: skip
    election.add_argument("--lease-duration", type=int, metavar="SECONDS",
                          help="a standby takes over a leader that has not renewed the Lease "
                          "for this long (default 8)")  # fmt: skip
    election.add_argument("--lease-renew-deadline", type=float, metavar="SECONDS",
                          help="a leader that cannot renew the Lease for this long exits "
                          "(default 6)")  # fmt: skip
    election.add_argument("--lease-retry", type=float, metavar="SECONDS",
                          help="how often the Lease is renewed, or tried (default 1)")  # fmt: skip
    reactive = run_parser.add_argument_group(
        "reactive recovery",
        "when a member that stops answering is declared failed, and when its shards are moved "
        "elsewhere (docs/operator.md, Reactive recovery)",
    )
    reactive.add_argument("--probe-timeout", type=float, default=1.5, metavar="SECONDS",
                          help="each probe request's timeout; below --probe-interval")  # fmt: skip
    reactive.add_argument("--failure-threshold", type=int, default=3, metavar="PROBES",
                          help="probes missed in a row that declare a member failed; fewer "
                          "make it a suspect, whose shards stay")  # fmt: skip
    reactive.add_argument("--no-failover", dest="failover", action="store_false",
                          help="never move the shards of a failed member: they stay on it "
                          "until it answers again")  # fmt: skip
    reactive.add_argument("--unhealthy-threshold", type=float, default=0.55, metavar="RATIO",
                          help="when at least this share of the members (of the fleet, or of "
                          "a region) do not answer at once, and at least "
                          "--unhealthy-min-members, no member of it is evicted")  # fmt: skip
    reactive.add_argument("--unhealthy-min-members", type=int, default=3, metavar="N",
                          help="the fewest members not answering at once that hold evictions "
                          "(all of a fleet or region of two or more always do)")  # fmt: skip
    reactive.add_argument("--failover-grace", type=float, default=20.0, metavar="SECONDS",
                          help="move a failed member's shards only once it has not answered "
                          "for this long (a shorter outage is ridden out); 0: at once")  # fmt: skip
    reactive.add_argument("--fence-margin", type=float, default=5.0, metavar="SECONDS",
                          help="a Pull member's shards move no sooner than its lease, its "
                          "fenceAfterSeconds and this after its last renewal: the time its "
                          "agent has to stop them")  # fmt: skip
    reactive.add_argument("--eviction-interval", type=float, default=10.0, metavar="SECONDS",
                          help="the least time between two members' evictions; 0: no "
                          "limit")  # fmt: skip
    signals = run_parser.add_argument_group(
        "link signals",
        "RTT, loss and risk of each member's link, read from Prometheus (docs/monitoring.md); "
        "without --prometheus-url the network is the continuum-network ConfigMap alone",
    )
    signals.add_argument(
        "--prometheus-url",
        default=os.environ.get(PROMETHEUS_URL_ENV, ""),
        metavar="URL",
        help="read the link signals from this Prometheus (default: $"
        f"{PROMETHEUS_URL_ENV}, which keeps credentials in the URL off the command line)",
    )
    signals.add_argument("--prometheus-timeout", type=float, default=5.0, metavar="SECONDS",
                         help="each query's timeout")  # fmt: skip
    signals.add_argument("--signals-interval", type=float, default=2.0, metavar="SECONDS",
                         help="seconds between reads of the signals")  # fmt: skip
    signals.add_argument("--risk-window", type=float, metavar="SECONDS",
                         help="the probes the risk is assessed over (default: the risk model's, "
                         "15)")  # fmt: skip
    signals.add_argument("--risk-confirm", type=int, metavar="READS",
                         help="of the last few reads, how many must be at the alert score "
                         "before a risk is published above 0.5 (default: the risk model's, 4 "
                         "of 6)")  # fmt: skip
    signals.add_argument("--risk-history", type=float, default=300.0, metavar="SECONDS",
                         help="the probes the RTT baseline is taken from")  # fmt: skip
    signals.add_argument("--risk-baseline-floor", type=float, default=10.0, metavar="MS",
                         help="the least baseline RTT inflation is counted against")  # fmt: skip
    signals.add_argument("--degraded-loss", type=float, default=0.2, metavar="RATIO",
                         help="a 30 s loss at or above this makes a member Degraded "
                         "(PacketLoss)")  # fmt: skip
    run_parser.add_argument("--verbose", action="store_true")


def signals_config(args: argparse.Namespace) -> SignalsConfig:
    from dataclasses import replace

    from continuum.operator.recovery.signals import SignalsConfig, probe_risk_config

    risk = replace(
        probe_risk_config(),
        baseline_history=max(1, round(args.risk_history)),
        baseline_floor_ms=args.risk_baseline_floor,
    )
    if args.risk_window is not None:
        window = args.risk_window
        risk = replace(risk, window_s=window, min_samples=max(1, round(window * 2 / 3)))
    if args.risk_confirm is not None:
        risk = replace(risk, confirm_assessments=args.risk_confirm,
                       confirm_of=max(risk.confirm_of, args.risk_confirm))  # fmt: skip
    return SignalsConfig(risk=risk, history_s=args.risk_history, degraded_loss=args.degraded_loss)


def reactive_settings(args: argparse.Namespace) -> dict[str, Any]:
    """OperatorConfig's reactive-recovery fields; refuses settings that cannot work."""
    from continuum.operator.reconcile.eviction import EvictionPolicy

    if not 0 < args.probe_timeout < args.probe_interval:
        raise SystemExit("--probe-timeout must be above 0 and below --probe-interval")
    if args.failure_threshold < 1:
        raise SystemExit("--failure-threshold must be 1 or more")
    if not 0 < args.unhealthy_threshold <= 1:
        raise SystemExit("--unhealthy-threshold must be above 0 and at most 1")
    policy = EvictionPolicy(
        failover=args.failover,
        unhealthy_threshold=args.unhealthy_threshold,
        min_unhealthy=max(1, args.unhealthy_min_members),
        interval_s=max(0.0, args.eviction_interval),
        grace_s=max(0.0, args.failover_grace),
        fence_margin_s=max(0.0, args.fence_margin),
    )
    return {
        "probe_timeout_s": args.probe_timeout,
        "failure_threshold": args.failure_threshold,
        "eviction": policy,
    }


def run(args: argparse.Namespace) -> int:
    reactive = reactive_settings(args)
    # Kopf fixes the probe timer's interval when the handlers are imported, just below.
    os.environ["CONTINUUM_PROBE_INTERVAL_SECONDS"] = str(args.probe_interval)
    import kopf

    import continuum.operator.handlers  # registers the handlers with Kopf
    from continuum.operator.adapters import health, metrics
    from continuum.operator.adapters.kube import hub_client
    from continuum.operator.controller.context import OperatorConfig, OperatorContext

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.webhook_port and not args.webhook_secret:
        import continuum.operator.handlers.admission  # noqa: F401 - registers the webhook
    if args.webhook_secret and not (args.webhook_port and args.webhook_service):
        raise SystemExit("--webhook-secret needs --webhook-port and --webhook-service")
    if args.kubeconfig:
        # Kopf's own login reads KUBECONFIG; the operator's clients use the same file.
        os.environ["KUBECONFIG"] = str(Path(args.kubeconfig).resolve())
    config = OperatorConfig(
        system_namespace=args.system_namespace,
        cycle_interval_s=args.cycle_interval,
        resync_interval_s=args.resync_interval,
        policy=args.policy,
        # In a cluster the webhook is served apart from Kopf, by every replica.
        webhook_port=0 if args.webhook_secret else args.webhook_port,
        secret_namespaces=tuple(args.secret_namespace),
        allowed_exec_commands=tuple(args.allow_exec_plugin),
        member_timeout_s=args.member_timeout,
        member_cleanup_timeout_s=args.member_cleanup_timeout,
        handoff_timeout_s=args.handoff_timeout,
        drain_timeout_s=args.drain_timeout,
        namespaces=tuple(args.namespace),
        prometheus_url=args.prometheus_url,
        prometheus_timeout_s=args.prometheus_timeout,
        signals_interval_s=args.signals_interval,
        signals=signals_config(args),
        **reactive,
    )
    hub = hub_client(args.kubeconfig)
    context = OperatorContext(hub, config=config)
    identity = instance_identity()
    elector = leader_elector(args, hub, identity) if args.leader_elect else None
    leading = threading.Event()
    if args.metrics_port:

        def liveness() -> list[str]:
            return context.health.liveness_problems() if leading.is_set() else []

        def readiness() -> list[str]:
            # A standby is Ready, as controller-runtime's are: `helm install --wait`, Argo CD
            # and Flux count a Deployment healthy only when every replica is.
            return context.readiness_problems() if leading.is_set() else []

        def standing_by() -> list[str]:
            if leading.is_set() or elector is None:
                return context.member_states()
            return [f"standing by: {elector.holder or 'another replica'} leads ({elector.where})"]

        health.serve(args.metrics_address, args.metrics_port, liveness, readiness, standing_by)
    if args.webhook_secret:
        serve_webhook(args, hub, context)
    if elector is not None:
        LOG.info("%s stands by until it holds %s", identity, elector.where)
        elector.wait_until_leading()
        threading.Thread(
            target=elector.keep_leading, args=(leadership_lost,), name="lease", daemon=True
        ).start()
    # The stall clock of /healthz starts when this replica begins to act.
    context.health.began()
    leading.set()
    metrics.LEADER.set(1)
    try:
        kopf.run(
            standalone=True,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            memo=kopf.Memo(context=context),
            # Kopf's type for it is a NewType of str, not exported.
            identity=identity,  # type: ignore[arg-type]
        )
    finally:
        if elector is not None:
            elector.release()
    return 0


def instance_identity() -> str:
    """This replica's name in the Lease and in Kopf: the pod's name (its hostname) and a
    random suffix, as client-go's. Kopf would otherwise ask the user database for the user's
    name, which a container running as an arbitrary uid does not have."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def leader_elector(args: argparse.Namespace, hub: client.ApiClient, identity: str) -> LeaseElector:
    from kubernetes import client

    from continuum.operator.adapters.leader import LeaseElector, LeaseTiming

    given = {"duration_s": args.lease_duration, "renew_deadline_s": args.lease_renew_deadline,
             "retry_s": args.lease_retry}  # fmt: skip
    try:
        timing = LeaseTiming(**{key: value for key, value in given.items() if value is not None})
    except ValueError as error:
        raise SystemExit(
            f"--lease-duration, --lease-renew-deadline, --lease-retry: {error}"
        ) from None
    namespace = args.leader_election_namespace or args.system_namespace
    return LeaseElector(
        client.CoordinationV1Api(hub), namespace, args.leader_election_lease, identity, timing
    )


def serve_webhook(args: argparse.Namespace, hub: client.ApiClient, context: Any) -> None:
    """Serves the validating webhook from this replica, leader or not, once its certificate is
    in the Secret, and keeps the certificate (and the caBundle) current, in a thread."""
    from kubernetes import client

    from continuum.operator.adapters.admission_server import AdmissionServer
    from continuum.operator.adapters.webhook_tls import WebhookCertificates, keep_serving
    from continuum.operator.controller.admission import judge

    service, namespace = args.webhook_service, args.system_namespace
    names = [service, f"{service}.{namespace}", f"{service}.{namespace}.svc"]
    manage = not args.webhook_certificates_external
    certificates = WebhookCertificates(
        client.CoreV1Api(hub), namespace, args.webhook_secret, names, manage=manage
    )
    admission = client.AdmissionregistrationV1Api(hub)
    configuration = args.webhook_configuration if manage else None

    def judged(operation: str, body: Any, old: Any) -> tuple[str, int] | None:
        refused = judge(context, operation, body, old)
        return None if refused is None else (refused.message, refused.code)

    server = AdmissionServer(args.webhook_address, args.webhook_port, judged)
    threading.Thread(
        target=keep_serving,
        args=(server, certificates, admission, configuration, threading.Event()),
        name="webhook-certificates",
        daemon=True,
    ).start()


def leadership_lost() -> None:
    """Another replica may lead now: this one must not write another object. It exits at once,
    and its restart stands by."""
    LOG.critical("the leader Lease was lost: exiting so that only one replica acts")
    logging.shutdown()
    os._exit(1)
