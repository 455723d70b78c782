"""The inference shard's model and requests, without Serve: a server answers from its first
request, follows the federated job's checkpoints, and refuses bad rows saying why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from continuum.workloads.checkpoints import save_checkpoint
from continuum.workloads.fedavg import CHECKPOINT_PREFIX, accuracy, initial_weights
from continuum.workloads.inference import Classifier, RequestError, features_of
from continuum.workloads.sensors import FEATURES, MODES, site_dataset

pytestmark = pytest.mark.unit

_, TEST = site_dataset("delft", 800)


def test_without_a_checkpoint_it_serves_a_model_trained_on_its_sites_data() -> None:
    classifier = Classifier("delft", None)
    assert classifier.model.round_index == 0
    assert accuracy(classifier.model.weights, TEST) > 0.6
    answer = classifier.predict({"features": TEST.features[:5].tolist()})
    assert answer["modelRound"] == 0 and len(answer["modes"]) == 5
    assert set(answer["modes"]) <= set(MODES)


def test_it_takes_a_newer_checkpoint_at_the_next_refresh(tmp_path: Path) -> None:
    location = f"file://{tmp_path}/shard-3"
    save_checkpoint(location, 2, initial_weights() + 0.1, CHECKPOINT_PREFIX)
    now = [0.0]
    classifier = Classifier("delft", location, refresh_s=30, clock=lambda: now[0])
    assert classifier.model.round_index == 2
    save_checkpoint(location, 5, initial_weights(), CHECKPOINT_PREFIX)
    now[0] = 29.0
    assert classifier.refresh().round_index == 2, "not looked for before the refresh interval"
    now[0] = 30.0
    assert classifier.refresh().round_index == 5
    assert np.array_equal(classifier.model.weights, initial_weights())


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({}, "non-empty list"),
        ({"features": []}, "non-empty list"),
        ({"features": "x"}, "non-empty list"),
        ({"features": [[1.0] * (FEATURES - 1)]}, f"{FEATURES} numbers"),
        ({"features": [["a"] * FEATURES]}, "rows of numbers"),
        ({"features": [[float("nan")] * FEATURES]}, "finite"),
        ({"features": [[0.0] * FEATURES] * 1025}, "at most 1024"),
    ],
)
def test_a_bad_request_names_the_field_and_the_reason(body: dict[str, object], says: str) -> None:
    with pytest.raises(RequestError, match="features") as raised:
        features_of(body)
    assert says in str(raised.value)
