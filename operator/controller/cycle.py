"""The thread that runs the scheduling cycle over the hub."""

from __future__ import annotations

import logging

from continuum.operator.adapters import metrics
from continuum.operator.controller.context import HUB_SYNC_RETRY_S, OperatorContext
from continuum.operator.controller.scheduling import run_cycle

LOG = logging.getLogger(__name__)
MIN_GAP_S = 0.05


def scheduling_loop(context: OperatorContext) -> None:
    """Runs cycles until `context.stop` is set, every `cycle_interval_s` or as soon as a handler
    sets `wake_scheduler`. A failed cycle is logged and retried at the next tick."""
    while not context.stop.is_set():
        context.health.turned()
        context.wake_scheduler.clear()
        if not context.mirror.wait_synced(0):
            # Decisions over part of the hub (some MemberClusters or Placements not listed
            # yet) would be wrong, not just late.
            context.stop.wait(HUB_SYNC_RETRY_S)
            continue
        metrics.RECONCILES.labels("SchedulingCycle").inc()
        try:
            run_cycle(
                context.mirror,
                context.clock(),
                context.config.policy,
                context.config.system_namespace,
                events=context.events,
                hand_over=context.hand_over_status,
                placement_writes=context.placement_writes,
            )
        except Exception as error:
            metrics.RECONCILE_ERRORS.labels("SchedulingCycle").inc()
            context.health.cycle_failed(error)
            LOG.exception("scheduling cycle failed; retrying at the next tick")
        else:
            context.health.cycle_succeeded()
        # A short pause even when woken: the changes of a burst of applies are taken together,
        # and the mirror brings the versions the cycle's own writes made before it runs again.
        context.stop.wait(MIN_GAP_S)
        context.wake_scheduler.wait(context.config.cycle_interval_s)
