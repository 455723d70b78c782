"""A federated job across sites: each participant shard trains the global model on its own site's
data and sends only the weights; the aggregator shard averages them (FedAvg), scores the average
on its reference set, checkpoints it and serves it as the next round's global model.

    python -m continuum.workloads.federated aggregator --rounds R [--port P] [--participants N]
        [--sites delft,ghent] [--reference-samples 300] [--linger-s 60]
    python -m continuum.workloads.federated participant [--site S] [--aggregator HOST:PORT]
        [--shard I] [--local-steps 4] [--samples 600] [--timeout-s 900]

Without the role, it is CONTINUUM_ROLE's (aggregator or participant, as the operator sets it), so
that every shard of a job can run the same entrypoint, such as `... federated --rounds 5`; a
participant accepts --rounds and ignores it (the aggregator's decides).

Each is a Ray job's entrypoint, one per shard, and the shards run as separate Ray clusters in
different member clusters, so they talk over HTTP, with the standard library only
(`http.server.ThreadingHTTPServer`, `urllib.request`): the protocol is two endpoints that move a
few numpy arrays as an .npz body, which needs no web framework, no RPC library and nothing more
in the shard image. The aggregator serves

- `GET /model[?after=<r>&shard=<i>]`: the global model, an .npz of `weights`, `round` (the rounds
  aggregated so far), `rounds` and `done`. With `after`, it waits up to 10 s for a round after r
  (a long poll), and answers with the current model either way. With `shard`, a participant that
  receives the final model is counted as released.
- `POST /update?round=<r>&shard=<i>`: participant i's update for round r, an .npz of `weights`
  and `samples` (its training set's size, the update's weight in the average). Only the next
  round is accepted (409 with the current round otherwise); a resend replaces the earlier update.
  An update of the wrong shape, or from a shard that is not a participant, is a 400.
- `GET /healthz`: 200 while it serves.

The aggregator (in the last shard's Ray head pod; it needs no Ray itself) listens on 0.0.0.0, at
--port or CONTINUUM_FEDERATION_PORT or 8470. It expects participants 0..N-1, N being
--participants or CONTINUUM_SHARD_COUNT - 1 (the operator makes the shard after the data sources
the aggregator). Its reference set draws on --sites, or CONTINUUM_FEDERATION_SITES, or every
known site (both comma-separated). With CONTINUUM_CHECKPOINT_URI it checkpoints each round's model
to `<uri>/shard-<CONTINUUM_SHARD_INDEX>/round-<r>.npz` and resumes from the newest one there, so a
restarted or moved aggregator continues with the next round. After the last round it serves on
until every participant has fetched the final model, or for at most --linger-s, then exits 0.

A participant trains on CONTINUUM_DATA_SITE (or --site), as shard CONTINUUM_SHARD_INDEX (or
--shard), one Ray task per round, and finds the aggregator at CONTINUUM_AGGREGATOR_ADDRESS (or
--aggregator), `host:port`. The address is read, and the host resolved, anew for every attempt,
so an aggregator that is not up yet, or that moves and comes back elsewhere, is waited for:
connection errors, timeouts and 5xx answers are retried with a backoff of 0.5 s doubling to 5 s.
It keeps no checkpoints: its state is the global model, which it fetches again after a restart.
When the aggregator has moved on without it (409), it fetches the current model and trains the
next round from there. It exits 0 once the model is done, and 1 after --timeout-s without a
single answer from the aggregator. Local training is seeded with round * 131 + shard.

Both print one line per round, prefixed with the role, shard and CONTINUUM_EPOCH:
`round <r> of <R>: accuracy <a> from <N> participants` (the aggregator, on its reference set)
and `round <r> local accuracy <a>` (a participant, on its site's test set).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import numpy.typing as npt

from continuum.workloads.checkpoints import latest_checkpoint, save_checkpoint
from continuum.workloads.fedavg import (
    CHECKPOINT_PREFIX,
    TrainingConfig,
    accuracy,
    fedavg,
    initial_weights,
    sgd,
)
from continuum.workloads.sensors import CLIMATES, Dataset, FloatArray, reference_set, site_dataset
from continuum.workloads.training import location_of

DEFAULT_PORT = 8470
LONG_POLL_S = 10.0
LINGER_S = 60.0
BACKOFF_S, BACKOFF_CAP_S = 0.5, 5.0
# A request's own timeout; a long poll's allows for the aggregator's wait as well.
REQUEST_TIMEOUT_S = 30.0
MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULTS = TrainingConfig()
ROLES = ("aggregator", "participant")

# (the global weights, the round's seed) -> the weights trained on the site's data
Step = Callable[[FloatArray, int], FloatArray]
Log = Callable[[str], None]


def seed_of(round_index: int, shard: int) -> int:
    return round_index * 131 + shard


# -- the wire format -----------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """The global model after `round_index` rounds (0: the initial weights)."""

    round_index: int
    rounds: int
    weights: FloatArray

    @property
    def done(self) -> bool:
        return self.round_index >= self.rounds


def encode(**arrays: npt.ArrayLike) -> bytes:
    buffer = io.BytesIO()
    named: dict[str, Any] = dict(arrays)  # (mypy: ArrayLike values could fill allow_pickle)
    np.savez(buffer, **named)
    return buffer.getvalue()


def decode(body: bytes) -> dict[str, npt.NDArray[Any]]:
    with np.load(io.BytesIO(body), allow_pickle=False) as stored:
        return {name: np.array(stored[name]) for name in stored.files}


def model_body(model: Model) -> bytes:
    return encode(
        weights=model.weights,
        round=np.array(model.round_index),
        rounds=np.array(model.rounds),
        done=np.array(model.done),
    )


def model_of(body: bytes) -> Model:
    arrays = decode(body)
    return Model(
        int(arrays["round"]), int(arrays["rounds"]), np.asarray(arrays["weights"], np.float64)
    )


# -- the aggregator ------------------------------------------------------------------------


class StaleRoundError(Exception):
    """An update for a round other than the next one: the HTTP layer answers 409."""

    def __init__(self, submitted: int, current: int, done: bool) -> None:
        expected = "none, the job is done" if done else str(current + 1)
        super().__init__(
            f"update for round {submitted}, but round {current} is the last aggregated; "
            f"the next is {expected}"
        )
        self.current = current


class InvalidUpdateError(ValueError):
    """An update that can never be accepted: the HTTP layer answers 400."""


class Aggregator:
    """The aggregator's state, shared by the server's threads: the global model, the updates of
    the round in progress by participant, and which participants have the final model."""

    def __init__(
        self,
        rounds: int,
        participants: int,
        reference: Dataset,
        location: str | None,
        log: Log,
    ) -> None:
        if participants < 1:
            raise ValueError(f"a federated job needs participants, not {participants}")
        self.rounds = rounds
        self.participants = participants
        self.reference = reference
        self.location = location
        self.log = log
        restored = latest_checkpoint(location, CHECKPOINT_PREFIX) if location else None
        self._round, self._weights = restored if restored else (0, initial_weights())
        self.resumed_at = self._round
        self._updates: dict[int, tuple[FloatArray, int]] = {}
        self._released: set[int] = set()
        self._changed = threading.Condition()
        # The reference accuracy of each round this copy aggregated.
        self.accuracies: dict[int, float] = {}

    def _model(self) -> Model:
        return Model(self._round, self.rounds, self._weights)

    def model(self) -> Model:
        with self._changed:
            return self._model()

    def wait(self, after: int, timeout_s: float) -> Model:
        """The model once it is past round `after` (or done), or after `timeout_s` as it is."""
        with self._changed:
            self._changed.wait_for(lambda: self._round > after or self._model().done, timeout_s)
            return self._model()

    def submit(self, round_index: int, shard: int, weights: FloatArray, samples: int) -> bool:
        """Takes participant `shard`'s update for the next round; True when it completed the
        round. Raises StaleRoundError for any other round, InvalidUpdateError for a malformed
        update."""
        if not 0 <= shard < self.participants:
            raise InvalidUpdateError(
                f"shard {shard} is not a participant (0..{self.participants - 1})"
            )
        expected = initial_weights().shape
        if weights.shape != expected:
            raise InvalidUpdateError(f"weights of shape {weights.shape}, expected {expected}")
        if not np.isfinite(weights).all():
            raise InvalidUpdateError("weights that are not all finite")
        if samples < 1:
            raise InvalidUpdateError(f"an update of {samples} samples")
        with self._changed:
            if self._model().done or round_index != self._round + 1:
                raise StaleRoundError(round_index, self._round, self._model().done)
            self._updates[shard] = (np.array(weights, dtype=np.float64), samples)
            if len(self._updates) < self.participants:
                return False
            averaged = fedavg([self._updates[index] for index in sorted(self._updates)])
            if self.location:
                save_checkpoint(self.location, round_index, averaged, CHECKPOINT_PREFIX)
            score = accuracy(averaged, self.reference)
            self._round, self._weights = round_index, averaged
            self._updates.clear()
            self.accuracies[round_index] = score
            self.log(
                f"round {round_index} of {self.rounds}: accuracy {score:.3f} "
                f"from {self.participants} participants"
            )
            self._changed.notify_all()
            return True

    def waiting_for(self) -> list[int]:
        """The participants whose update for the round in progress has not arrived."""
        with self._changed:
            return sorted(set(range(self.participants)) - set(self._updates))

    def release(self, shard: int) -> None:
        """Participant `shard` has received the final model."""
        with self._changed:
            if self._model().done and 0 <= shard < self.participants:
                self._released.add(shard)
                self._changed.notify_all()

    def unreleased(self) -> list[int]:
        with self._changed:
            return sorted(set(range(self.participants)) - self._released)

    def wait_done(self, timeout_s: float | None = None) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._model().done, timeout_s)

    def wait_released(self, timeout_s: float) -> bool:
        with self._changed:
            return self._changed.wait_for(
                lambda: len(self._released) >= self.participants, timeout_s
            )


class FederationServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        aggregator: Aggregator,
        log: Log,
        long_poll_s: float = LONG_POLL_S,
    ) -> None:
        self.aggregator = aggregator
        self.log = log
        self.long_poll_s = long_poll_s
        super().__init__(address, _Handler)


class BadRequestError(ValueError):
    pass


def _optional(query: dict[str, list[str]], name: str) -> int | None:
    values = query.get(name)
    if not values:
        return None
    try:
        return int(values[0])
    except ValueError:
        raise BadRequestError(f"{name}={values[0]!r} is not an integer") from None


def _required(query: dict[str, list[str]], name: str) -> int:
    value = _optional(query, name)
    if value is None:
        raise BadRequestError(f"the {name} parameter is missing")
    return value


class _Handler(BaseHTTPRequestHandler):
    server: FederationServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the aggregator logs rounds, not requests."""

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            if url.path == "/healthz":
                self._reply(200, b"ok\n", "text/plain")
            elif url.path == "/model":
                after = _optional(query, "after")
                shard = _optional(query, "shard")
                aggregator = self.server.aggregator
                model = (
                    aggregator.model()
                    if after is None
                    else aggregator.wait(after, self.server.long_poll_s)
                )
                self._reply(200, model_body(model), "application/octet-stream")
                if model.done and shard is not None:
                    aggregator.release(shard)
            else:
                self._error(404, f"no {url.path}; there are /model, /update and /healthz")
        except BadRequestError as error:
            self._error(400, str(error))

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/update":
            self._error(404, f"no POST {url.path}; updates go to /update")
            return
        aggregator = self.server.aggregator
        try:
            query = parse_qs(url.query)
            round_index, shard = _required(query, "round"), _required(query, "shard")
            length = self.headers.get("Content-Length", "0")
            if not length.isdigit() or not 0 < int(length) <= MAX_BODY_BYTES:
                raise BadRequestError(f"a body of {length} bytes")
            try:
                arrays = decode(self.rfile.read(int(length)))
                weights = np.asarray(arrays["weights"], dtype=np.float64)
                samples = int(arrays["samples"])
            except (ValueError, KeyError, OSError) as error:
                message = f"the body is not an .npz of weights and samples: {error}"
                raise BadRequestError(message) from None
            completed = aggregator.submit(round_index, shard, weights, samples)
        except (BadRequestError, InvalidUpdateError) as error:
            self._error(400, str(error))
        except StaleRoundError as error:
            self._error(409, str(error), round=error.current)
        except Exception as error:  # the checkpoint store, most likely: the sender retries
            self.server.log(f"update failed: {error!r}")
            self._error(500, f"{type(error).__name__}: {error}")
        else:
            self._json(200, {"round": aggregator.model().round_index, "completed": completed})

    def _error(self, status: int, message: str, **extra: int) -> None:
        self._json(status, {"error": message, **extra})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._reply(status, json.dumps(body).encode() + b"\n", "application/json")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting; it will ask again


def serve(aggregator: Aggregator, server: FederationServer, linger_s: float, log: Log) -> int:
    """Serves until the last round is aggregated and every participant has the final model, or
    `linger_s` after the last round; returns the exit status."""
    log(
        f"resumes at round {aggregator.resumed_at} of {aggregator.rounds}, serving "
        f"{aggregator.participants} participants on port {server.server_port}"
    )
    thread = threading.Thread(target=server.serve_forever, name="federation-server", daemon=True)
    thread.start()
    try:
        while not aggregator.wait_done(timeout_s=1.0):
            pass
        if aggregator.wait_released(linger_s):
            log(f"done: all {aggregator.participants} participants have the final model")
        else:
            log(
                f"done: participants {aggregator.unreleased()} did not fetch the final model "
                f"within {linger_s:g} s"
            )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    return 0


# -- a participant -------------------------------------------------------------------------


class GaveUpError(RuntimeError):
    """No answer from the aggregator for the participant's whole timeout."""


class RefusedError(RuntimeError):
    """The aggregator rejected a request for good (4xx other than 409): a bug, not a fault."""


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # direct, never a proxy


def _request(url: str, body: bytes | None, timeout_s: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="GET" if body is None else "POST")
    if body is not None:
        request.add_header("Content-Type", "application/octet-stream")
    try:
        with _opener.open(request, timeout=timeout_s) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


class Link:
    """The participant's side of the exchange, retrying while the aggregator is unreachable."""

    def __init__(
        self,
        address: Callable[[], str],
        timeout_s: float,
        log: Log,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.log = log
        self.clock = clock
        self.sleep = sleep
        self.last_answer = clock()

    def fetch(self, shard: int, after: int | None) -> Model:
        query = f"shard={shard}" if after is None else f"after={after}&shard={shard}"
        timeout_s = REQUEST_TIMEOUT_S + (0 if after is None else LONG_POLL_S)
        _, body = self._exchange(f"/model?{query}", None, timeout_s)
        return model_of(body)

    def send(self, shard: int, round_index: int, weights: FloatArray, samples: int) -> bool:
        """Sends the update; False when the aggregator is at another round (409)."""
        body = encode(weights=weights, samples=np.array(samples))
        status, _ = self._exchange(
            f"/update?round={round_index}&shard={shard}", body, REQUEST_TIMEOUT_S
        )
        return status != 409

    def _exchange(self, path: str, body: bytes | None, timeout_s: float) -> tuple[int, bytes]:
        delay, failures = BACKOFF_S, 0
        while True:
            address = self.address()
            try:
                status, answer = _request(f"http://{address}{path}", body, timeout_s)
                if status >= 500:
                    raise ConnectionError(f"{status} {answer.decode(errors='replace').strip()}")
            except (OSError, http.client.HTTPException) as error:
                failures += 1
                if failures == 1:
                    self.log(f"aggregator at {address} unreachable ({error}); retrying")
                waited = self.clock() - self.last_answer
                if waited >= self.timeout_s:
                    raise GaveUpError(
                        f"no answer from the aggregator at {address} for {waited:.1f} s "
                        f"(timeout {self.timeout_s:g} s, {failures} attempts): {error}"
                    ) from error
                self.sleep(min(delay, self.timeout_s - waited))
                delay = min(delay * 2, BACKOFF_CAP_S)
                continue
            self.last_answer = self.clock()
            if failures:
                self.log(f"aggregator at {address} answers again after {failures} failures")
            if status not in {200, 409}:
                message = answer.decode(errors="replace").strip()
                raise RefusedError(
                    f"the aggregator at {address} refused {path}: {status} {message}"
                )
            return status, answer


@dataclass(frozen=True)
class Outcome:
    trained: tuple[int, ...]
    final_round: int


def participate(
    shard: int, link: Link, step: Step, samples: int, test: Dataset, log: Log
) -> Outcome:
    """Trains every round the aggregator asks for, from its global model, until it is done."""
    model = link.fetch(shard, after=None)
    # The last update: resent as it is while the aggregator still waits for that round.
    pending: tuple[int, FloatArray, FloatArray] | None = None
    trained: list[int] = []
    while not model.done:
        round_index = model.round_index + 1
        if (
            pending is None
            or pending[0] != round_index
            or not np.array_equal(pending[1], model.weights)
        ):
            weights = step(model.weights, seed_of(round_index, shard))
            log(f"round {round_index} local accuracy {accuracy(weights, test):.3f}")
            pending = (round_index, model.weights, weights)
            trained.append(round_index)
        if link.send(shard, round_index, pending[2], samples):
            # Until the round completes; without progress, the update is resent (the aggregator
            # may have restarted and lost it).
            model = link.fetch(shard, after=model.round_index)
        else:
            model = link.fetch(shard, after=None)
    log(f"done at round {model.round_index} of {model.rounds}")
    return Outcome(tuple(trained), model.round_index)


def run_participant(
    shard: int,
    address: Callable[[], str],
    step: Step,
    samples: int,
    test: Dataset,
    timeout_s: float,
    log: Log,
) -> int:
    """`participate`, as an exit status: 1 when the aggregator is gone or refuses."""
    try:
        participate(shard, Link(address, timeout_s, log), step, samples, test, log)
    except (GaveUpError, RefusedError) as error:
        log(f"gives up: {error}")
        print(f"continuum-federated participant: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


# -- the entrypoints -----------------------------------------------------------------------


def _printer(role: str, shard: str, extra: str = "") -> Log:
    epoch = os.environ.get("CONTINUUM_EPOCH", "")

    def log(line: str) -> None:
        print(f"continuum-federated {role} shard {shard}{extra} epoch {epoch}: {line}", flush=True)

    return log


def _sites(value: str | None) -> list[str]:
    sites = [site.strip() for site in (value or "").split(",") if site.strip()]
    return sites or list(CLIMATES)


def _aggregator(args: argparse.Namespace) -> int:
    shard = os.environ.get("CONTINUUM_SHARD_INDEX", str(args.participants))
    log = _printer("aggregator", shard)
    sites = _sites(args.sites or os.environ.get("CONTINUUM_FEDERATION_SITES"))
    aggregator = Aggregator(
        args.rounds,
        args.participants,
        reference_set(sites, args.reference_samples),
        location_of(os.environ.get("CONTINUUM_CHECKPOINT_URI"), shard),
        log,
    )
    server = FederationServer(("0.0.0.0", args.port), aggregator, log)
    return serve(aggregator, server, args.linger_s, log)


def _participant(args: argparse.Namespace) -> int:
    log = _printer("participant", str(args.shard), f" site {args.site}")
    given = args.aggregator

    def address() -> str:
        return given or os.environ.get("CONTINUUM_AGGREGATOR_ADDRESS", "")

    train_set, test_set = site_dataset(args.site, args.samples)

    import ray  # only here: the module's functions are used and tested without Ray

    ray.init()
    remote_sgd = ray.remote(sgd)
    train_ref = ray.put(train_set)

    def step(weights: FloatArray, seed: int) -> FloatArray:
        trained: FloatArray = ray.get(
            remote_sgd.remote(
                weights, train_ref, args.local_steps, DEFAULTS.batch, DEFAULTS.learning_rate, seed
            )
        )
        return trained

    return run_participant(args.shard, address, step, len(train_set), test_set, args.timeout_s, log)


def _env_int(name: str, offset: int = 0) -> int | None:
    value = os.environ.get(name)
    return int(value) + offset if value else None


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="federated", description=__doc__.splitlines()[0])
    roles = parser.add_subparsers(dest="role", required=True)

    aggregator = roles.add_parser("aggregator", help="average the participants' rounds")
    aggregator.add_argument("--rounds", type=int, required=True)
    aggregator.add_argument(
        "--port",
        type=int,
        default=_env_int("CONTINUUM_FEDERATION_PORT") or DEFAULT_PORT,
        help=f"(CONTINUUM_FEDERATION_PORT, else {DEFAULT_PORT})",
    )
    participants = _env_int("CONTINUUM_SHARD_COUNT", -1)
    aggregator.add_argument(
        "--participants",
        type=int,
        default=participants,
        required=participants is None,
        help="shards 0..N-1 (CONTINUUM_SHARD_COUNT - 1)",
    )
    aggregator.add_argument(
        "--sites", help="the reference set's sites (CONTINUUM_FEDERATION_SITES, else all)"
    )
    aggregator.add_argument(
        "--reference-samples", type=int, default=DEFAULTS.reference_samples_per_site
    )
    aggregator.add_argument("--linger-s", type=float, default=LINGER_S)

    participant = roles.add_parser("participant", help="train rounds on one site's data")
    site = os.environ.get("CONTINUUM_DATA_SITE")
    participant.add_argument(
        "--site", default=site, required=site is None, help="whose data (CONTINUUM_DATA_SITE)"
    )
    address = os.environ.get("CONTINUUM_AGGREGATOR_ADDRESS")
    participant.add_argument(
        "--aggregator",
        required=address is None,
        help="host:port (CONTINUUM_AGGREGATOR_ADDRESS, read again at every attempt)",
    )
    shard = _env_int("CONTINUUM_SHARD_INDEX")
    participant.add_argument(
        "--shard", type=int, default=shard, required=shard is None, help="(CONTINUUM_SHARD_INDEX)"
    )
    participant.add_argument("--rounds", type=int, help="ignored: the aggregator's decides")
    participant.add_argument("--local-steps", type=int, default=DEFAULTS.local_steps)
    participant.add_argument("--samples", type=int, default=DEFAULTS.samples_per_site)
    participant.add_argument("--timeout-s", type=float, default=900.0)
    return parser


def with_role(argv: Sequence[str]) -> list[str]:
    """The arguments, led by CONTINUUM_ROLE when they do not name a role."""
    role = os.environ.get("CONTINUUM_ROLE")
    if role in ROLES and (not argv or argv[0] not in ROLES):
        return [role, *argv]
    return list(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments().parse_args(with_role(sys.argv[1:] if argv is None else argv))
    if args.role == "aggregator":
        return _aggregator(args)
    return _participant(args)


if __name__ == "__main__":
    sys.exit(main())
