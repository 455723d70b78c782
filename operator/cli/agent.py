"""`continuum agent`: a Pull member's agent in the foreground. It dials out only: to the hub
(--hub-kubeconfig) and to its own cluster (--kubeconfig); either, when not given, through the
in-cluster service account.

It stops cleanly on SIGTERM or SIGINT, exit status 0; killed, it loses nothing that a restart
does not rebuild from the hub and the member.
"""

from __future__ import annotations

import argparse
import logging
import threading
from urllib.parse import urlsplit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--member", required=True, metavar="NAME",
                        help="the MemberCluster this agent is (spec.mode Pull)")  # fmt: skip
    parser.add_argument("--kubeconfig", metavar="FILE",
                        help="the member cluster's kubeconfig; in a pod, omit it")  # fmt: skip
    parser.add_argument("--hub-kubeconfig", metavar="FILE",
                        help="the hub's kubeconfig, with the member's credential from "
                        "`continuum member join`; omitted, the in-cluster account")  # fmt: skip
    parser.add_argument("--workers", type=int, default=4,
                        help="works converged at once")  # fmt: skip
    parser.add_argument("--resync-interval", type=float, default=30.0, metavar="SECONDS",
                        help="converge every work again at least this often")  # fmt: skip
    parser.add_argument("--metrics-port", type=int, default=0, metavar="PORT",
                        help="serve the agent's Prometheus metrics on PORT")  # fmt: skip
    parser.add_argument("--metrics-address", default="127.0.0.1")
    parser.add_argument("--probe-target", action="append", default=[], metavar="ADDRESS",
                        help="a place the metrics port's /probe may send an ICMP echo to, as a "
                        "blackbox exporter would (repeatable); the hub API server's host "
                        "always may")  # fmt: skip
    parser.add_argument("--verbose", action="store_true")


def hub_host(url: str) -> str:
    """The host of the hub API server's URL: the place its link probes reach by default."""
    return urlsplit(url).hostname or ""


def run(args: argparse.Namespace) -> int:
    from continuum.operator.adapters.kube import api_client
    from continuum.operator.agent.metrics import agent_registry, serve
    from continuum.operator.agent.probes import LinkProber
    from continuum.operator.agent.runner import Agent, AgentSettings

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.workers < 1:
        raise SystemExit("--workers must be 1 or more")
    if args.resync_interval <= 0:
        raise SystemExit("--resync-interval must be above 0")
    settings = AgentSettings(args.member, args.workers, args.resync_interval)
    # urllib3's retries off: the agent's loops retry on their own schedule, and a retried
    # request would stretch past its timeout and hide the hub's round trip.
    hub = api_client(args.hub_kubeconfig, retries=False)
    agent = Agent(settings, hub, api_client(args.kubeconfig, retries=False))
    server = None
    if args.metrics_port:
        prober = LinkProber([hub_host(hub.configuration.host), *args.probe_target])
        server = serve(args.metrics_address, args.metrics_port, agent_registry(agent.lease), prober)
    agent.start()
    logging.getLogger(__name__).info("agent of member %s started", args.member)
    forever = threading.Event()
    try:
        while not forever.wait(1.0):  # wakes for SIGTERM's and SIGINT's handlers
            pass
    except KeyboardInterrupt:
        pass
    finally:
        agent.stop()
        if server is not None:
            server.shutdown()
    return 0
