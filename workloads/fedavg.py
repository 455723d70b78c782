"""Federated averaging of a softmax-regression model, with a checkpoint per round per shard.

A participant shard trains the global model on its site's data for a few local steps and
returns its weights and sample count; the aggregator shard averages them by sample count
(FedAvg, McMahan et al. 2017), scores the result on its reference set and checkpoints it.

Checkpoints live under `<root>/<shard>/round-<n>.npz`, by shard index as the KubeRay shards
write beneath the job's checkpoint URI: a shard that moves finds its own checkpoints again and
resumes after the last round it completed.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from continuum.workloads import checkpoints
from continuum.workloads.sensors import (
    FEATURES,
    MODES,
    Dataset,
    FloatArray,
    reference_set,
    site_dataset,
)

CHECKPOINT_PREFIX = "round-"


def initial_weights() -> FloatArray:
    return np.zeros((FEATURES + 1, len(MODES)), dtype=np.float64)


def _with_bias(features: FloatArray) -> FloatArray:
    return np.column_stack([features, np.ones(len(features))])


def probabilities(weights: FloatArray, features: FloatArray) -> FloatArray:
    logits = _with_bias(features) @ weights
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    result: FloatArray = exp / exp.sum(axis=1, keepdims=True)
    return result


def accuracy(weights: FloatArray, data: Dataset) -> float:
    predicted = probabilities(weights, data.features).argmax(axis=1)
    return float((predicted == data.labels).mean())


def sgd(
    weights: FloatArray, data: Dataset, steps: int, batch: int, rate: float, seed: int
) -> FloatArray:
    """Mini-batch gradient descent on the cross-entropy."""
    rng = np.random.default_rng(seed)
    trained = weights.copy()
    onehot = np.eye(len(MODES))[data.labels]
    for _ in range(steps):
        rows = rng.choice(len(data), size=min(batch, len(data)), replace=False)
        features = data.features[rows]
        error = probabilities(trained, features) - onehot[rows]
        trained -= rate * _with_bias(features).T @ error / len(rows)
    return trained


def fedavg(updates: list[tuple[FloatArray, int]]) -> FloatArray:
    total = sum(samples for _, samples in updates)
    if total <= 0:
        raise ValueError("no samples in this round's updates")
    result: FloatArray = sum(
        (weights * (samples / total) for weights, samples in updates), start=initial_weights()
    )
    return result


# -- checkpoints ---------------------------------------------------------------------------


def save_checkpoint(directory: Path, round_index: int, weights: FloatArray) -> Path:
    saved = checkpoints.save_checkpoint(str(directory), round_index, weights, CHECKPOINT_PREFIX)
    return Path(saved)


def latest_checkpoint(directory: Path) -> tuple[int, FloatArray] | None:
    return checkpoints.latest_checkpoint(str(directory), CHECKPOINT_PREFIX)


# -- the shards ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Update:
    round_index: int
    weights: FloatArray
    samples: int
    local_accuracy: float


@dataclass(frozen=True)
class TrainingConfig:
    samples_per_site: int = 600
    local_steps: int = 4
    batch: int = 32
    learning_rate: float = 0.25
    reference_samples_per_site: int = 300
    # The numpy model trains in milliseconds; a real model's local epoch takes longer. Each
    # local round lasts at least this long, so that a round is work a failure can destroy.
    local_compute_s: float = 0.5


def network_delay_s(rtt_ms: float, loss: float, rng: random.Random) -> float:
    """One exchange of the model over the link: a round trip, plus one more for each lost
    packet that has to be retransmitted."""
    retries = 0
    while loss > 0 and rng.random() < loss and retries < 8:
        retries += 1
    return rtt_ms * (1 + retries) / 1000.0


class ParticipantShard:
    """A federated shard at one data site."""

    def __init__(self, site: str, shard: int, checkpoint_root: str, config: TrainingConfig) -> None:
        self.site = site
        self.shard = shard
        self.directory = Path(checkpoint_root) / f"shard-{shard}"
        self.config = config
        self.train_set, self.test_set = site_dataset(site, config.samples_per_site)
        restored = latest_checkpoint(self.directory)
        self.completed_round = restored[0] if restored else 0
        self.network = random.Random(shard)

    def rebind(self, checkpoint_root: str) -> None:
        """Serves another job's shard of the same index and site, from that job's checkpoints;
        `resume` then loads them."""
        self.directory = Path(checkpoint_root) / f"shard-{self.shard}"
        self.network = random.Random(self.shard)

    def resume(self) -> int:
        """Loads the shard's newest checkpoint (a predecessor may have written more since this
        copy started) and returns its round: the shard continues with the next one."""
        restored = latest_checkpoint(self.directory)
        self.completed_round = restored[0] if restored else 0
        return self.completed_round

    def train(self, round_index: int, weights: FloatArray, rtt_ms: float, loss: float) -> Update:
        time.sleep(network_delay_s(rtt_ms, loss, self.network) / 2)  # the global model arrives
        computing_until = time.monotonic() + self.config.local_compute_s
        trained = sgd(
            weights,
            self.train_set,
            self.config.local_steps,
            self.config.batch,
            self.config.learning_rate,
            seed=round_index * 131 + self.shard,
        )
        time.sleep(max(0.0, computing_until - time.monotonic()))
        save_checkpoint(self.directory, round_index, trained)
        self.completed_round = round_index
        time.sleep(network_delay_s(rtt_ms, loss, self.network) / 2)  # the update goes back
        return Update(round_index, trained, len(self.train_set), accuracy(trained, self.test_set))


class AggregatorShard:
    """The cloud shard: FedAvg, scoring on the reference set, the global checkpoint."""

    def __init__(self, sites: list[str], shard: int, checkpoint_root: str, config: TrainingConfig):
        self.directory = Path(checkpoint_root) / f"shard-{shard}"
        self.reference = reference_set(sites, config.reference_samples_per_site)
        restored = latest_checkpoint(self.directory)
        self.round, self.weights = restored if restored else (0, initial_weights())

    def rebind(self, checkpoint_root: str) -> None:
        self.directory = Path(checkpoint_root) / self.directory.name

    def resume(self) -> int:
        restored = latest_checkpoint(self.directory)
        self.round, self.weights = restored if restored else (0, initial_weights())
        return self.round

    def state(self) -> tuple[int, FloatArray]:
        return self.round, self.weights

    def current_weights(self) -> FloatArray:
        return self.weights

    def aggregate(self, round_index: int, *updates: Update) -> float:
        if round_index != self.round + 1:
            raise ValueError(f"round {round_index} after round {self.round}")
        stale = [u.round_index for u in updates if u.round_index != round_index]
        if stale:
            raise ValueError(f"updates of rounds {stale} in round {round_index}")
        self.weights = fedavg([(update.weights, update.samples) for update in updates])
        self.round = round_index
        save_checkpoint(self.directory, round_index, self.weights)
        return accuracy(self.weights, self.reference)


class InferenceClient:
    """The requester at the data site (the cameras' gateway), timing each request itself so
    that the latency measured is the one the site sees, not the demo driver's."""

    def burst(self, server: Any, batches: list[FloatArray], rtt_ms: float) -> list[float]:
        import ray

        latencies = []
        for batch in batches:
            started = time.perf_counter()
            ray.get(server.predict.remote(batch, rtt_ms))
            latencies.append((time.perf_counter() - started) * 1000.0)
        return latencies


class InferenceShard:
    """Serves the HVAC-mode model near its data site, refreshed from the federated job's
    global checkpoints as they appear. `rtt_ms`, the round trip between the requester's site
    and this shard's, is injected as delay."""

    def __init__(self, model_directory: str) -> None:
        self.directory = Path(model_directory)
        self.model_round, self.weights = 0, initial_weights()
        self.reload()

    def reload(self) -> int:
        restored = latest_checkpoint(self.directory)
        if restored is not None:
            self.model_round, self.weights = restored
        return self.model_round

    def predict(self, features: FloatArray, rtt_ms: float) -> list[int]:
        time.sleep(rtt_ms / 1000.0)
        return [int(mode) for mode in probabilities(self.weights, features).argmax(axis=1)]
