"""Baseline policies: each models how an anchor system would place the same work.

They run in the same engine as `continuum`, so the comparison isolates the policy. The anchors
have no notion of data residency or cluster risk, so the baselines that model them see only the
filters Kubernetes itself has (health, tier via labels, selectors, taints); `nearest` and `drf`
are ablations of continuum and keep all of its filters.
"""

from __future__ import annotations

from continuum.schedulers.config import Assign, Order, Score, Strategy
from continuum.schedulers.filters import ALL_FILTERS, KUBERNETES_FILTERS
from continuum.schedulers.model import Tier

FIFO = Strategy(
    name="fifo",
    summary="first cluster in name order that fits, jobs by priority then arrival",
    order=Order.FIFO,
    filters=KUBERNETES_FILTERS,
    score=Score.FIRST_FIT,
)
MULTIKUEUE = Strategy(
    name="multikueue",
    summary="whole job to the first cluster that admits all of it",
    order=Order.FIFO,
    filters=KUBERNETES_FILTERS,
    score=Score.FIRST_FIT,
    assign=Assign.WHOLE_JOB,
)
KARMADA = Strategy(
    name="karmada",
    summary="replicas split by static cluster weights (cpu capacity), latency-blind",
    order=Order.FIFO,
    filters=KUBERNETES_FILTERS,
    score=Score.FIRST_FIT,
    assign=Assign.STATIC_SPLIT,
    gang=False,
)
CLOUD_ONLY = Strategy(
    name="cloud-only",
    summary="least-loaded cloud cluster",
    order=Order.FIFO,
    filters=KUBERNETES_FILTERS,
    score=Score.LEAST_LOADED,
    tiers=(Tier.CLOUD,),
)
NEAREST = Strategy(
    name="nearest",
    summary="lowest estimated p99 latency, no fair share",
    order=Order.FIFO,
    filters=ALL_FILTERS,
    score=Score.LATENCY,
)
DRF = Strategy(
    name="drf",
    summary="weighted DRF order and preemption, cost and WAN without latency",
    order=Order.DRF,
    filters=ALL_FILTERS,
    score=Score.OBJECTIVE_WITHOUT_SLO,
    quota=True,
    preempt=True,
    proactive=True,
)
RANDOM = Strategy(
    name="random",
    summary="a seeded random cluster among those that fit, jobs in random order",
    order=Order.RANDOM,
    filters=KUBERNETES_FILTERS,
    score=Score.RANDOM,
    gang=False,
)

BASELINES: tuple[Strategy, ...] = (FIFO, MULTIKUEUE, KARMADA, CLOUD_ONLY, NEAREST, DRF, RANDOM)
