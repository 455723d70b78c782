"""An inference shard: the HVAC-mode model served over HTTP by Ray Serve, as a RayService runs it.

    spec.ray.entrypoint: continuum.workloads.inference:app

KubeRay puts the entrypoint in the RayService's serveConfigV2 as the application's import path;
Serve builds the application by calling `app` and serves it on port 8000 of every node that
holds a replica (the head, in a shard without workers).

    POST /   {"features": [[9 numbers], ...]}  ->  {"modes": ["heating", ...], "modelRound": r}
    GET  /   ->  {"site": ..., "modelRound": r, "shard": ...}

The model is the newest checkpoint under CONTINUUM_MODEL_URI (a Federated job's aggregator
checkpoints, `<its checkpoint uri>/shard-<aggregator>`), looked for again every
CONTINUUM_MODEL_REFRESH_SECONDS (30 by default), so that the server follows the federated job's
rounds. Without one yet, the server trains a model on its data site's data (CONTINUUM_DATA_SITE)
when it starts, which takes milliseconds, so it answers from its first request.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from continuum.workloads.checkpoints import latest_checkpoint
from continuum.workloads.fedavg import CHECKPOINT_PREFIX, initial_weights, probabilities, sgd
from continuum.workloads.sensors import FEATURES, MODES, FloatArray, site_dataset

DEFAULT_REFRESH_S = 30.0
MAX_BATCH = 1024
# A model trained where no checkpoint is yet: enough steps for a usable one, in milliseconds.
BOOTSTRAP_SAMPLES, BOOTSTRAP_STEPS = 800, 200


class RequestError(ValueError):
    """A request the server refuses, saying which field is wrong and why."""


@dataclass(frozen=True)
class Model:
    round_index: int
    weights: FloatArray


def bootstrap_model(site: str) -> Model:
    train, _ = site_dataset(site, BOOTSTRAP_SAMPLES)
    return Model(0, sgd(initial_weights(), train, BOOTSTRAP_STEPS, 64, 0.5, seed=0))


def features_of(body: Mapping[str, Any]) -> FloatArray:
    rows = body.get("features")
    if not isinstance(rows, list) or not rows:
        raise RequestError("features: a non-empty list of rows is required")
    if len(rows) > MAX_BATCH:
        raise RequestError(f"features: at most {MAX_BATCH} rows, not {len(rows)}")
    try:
        array = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise RequestError(f"features: rows of numbers are required ({error})") from None
    if array.ndim != 2 or array.shape[1] != FEATURES:
        raise RequestError(f"features: each row needs {FEATURES} numbers, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise RequestError("features: every number must be finite")
    return array


class Classifier:
    """The model and its refresh from the checkpoints; what the Serve deployment wraps."""

    def __init__(
        self,
        site: str,
        model_uri: str | None,
        refresh_s: float = DEFAULT_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.site, self.model_uri, self.refresh_s, self.clock = site, model_uri, refresh_s, clock
        self.lock = threading.Lock()
        self.model = self._newest() or bootstrap_model(site)
        self.checked = clock()

    def _newest(self) -> Model | None:
        found = latest_checkpoint(self.model_uri, CHECKPOINT_PREFIX) if self.model_uri else None
        return Model(*found) if found else None

    def refresh(self) -> Model:
        """The model to answer with: a newer checkpoint, when one was written since the last
        look (which is at most every refresh_s)."""
        with self.lock:
            if self.clock() - self.checked >= self.refresh_s:
                self.checked = self.clock()
                newer = self._newest()
                if newer is not None and newer.round_index > self.model.round_index:
                    self.model = newer
            return self.model

    def predict(self, body: Mapping[str, Any]) -> dict[str, Any]:
        features = features_of(body)
        model = self.refresh()
        modes = probabilities(model.weights, features).argmax(axis=1)
        return {"modes": [MODES[int(mode)] for mode in modes], "modelRound": model.round_index}

    def describe(self) -> dict[str, Any]:
        return {"site": self.site, "modelRound": self.refresh().round_index,
                "shard": os.environ.get("CONTINUUM_SHARD_INDEX")}  # fmt: skip


def classifier_from_environment() -> Classifier:
    site = os.environ.get("CONTINUUM_DATA_SITE")
    if not site:
        raise RuntimeError("CONTINUUM_DATA_SITE is not set: the server needs its data site")
    refresh = float(os.environ.get("CONTINUUM_MODEL_REFRESH_SECONDS", DEFAULT_REFRESH_S))
    return Classifier(site, os.environ.get("CONTINUUM_MODEL_URI"), refresh)


def app(args: Mapping[str, Any] | None = None) -> Any:
    """The Serve application (an application builder: Serve calls it with the config's args)."""
    from ray import serve  # only here: the classifier is used and tested without Serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    class HvacModeServer:
        def __init__(self) -> None:
            self.classifier = classifier_from_environment()

        async def __call__(self, request: Request) -> JSONResponse:
            if request.method == "GET":
                return JSONResponse(self.classifier.describe())
            try:
                return JSONResponse(self.classifier.predict(await request.json()))
            except RequestError as error:
                return JSONResponse({"error": str(error)}, status_code=400)
            except ValueError:
                return JSONResponse({"error": "the body must be JSON"}, status_code=400)

    # A replica on the head, beside Ray's own processes: a shard's one CPU is enough for both.
    deployment: Any = serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0.1})
    return deployment(HvacModeServer).bind()
