"""The federated job's aggregator and participants over real HTTP on 127.0.0.1, without Ray: a
participant's local training is the model's own SGD, called directly."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from continuum.workloads import federated, training
from continuum.workloads.fedavg import accuracy, fedavg, initial_weights, sgd
from continuum.workloads.sensors import FloatArray, reference_set, site_dataset

pytestmark = pytest.mark.unit

SITES = ["delft", "eindhoven", "ghent"]
REFERENCE = reference_set(SITES, 100)


def aggregator(rounds: int, location: str | None, lines: list[str]) -> federated.Aggregator:
    return federated.Aggregator(rounds, 3, REFERENCE, location, lines.append)


def update(seed: int) -> FloatArray:
    return np.random.default_rng(seed).normal(size=initial_weights().shape)


def closed_address() -> str:
    """An address where nothing listens: the port was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


@contextmanager
def serving(state: federated.Aggregator, lines: list[str]) -> Iterator[str]:
    server = federated.FederationServer(("127.0.0.1", 0), state, lines.append, long_poll_s=0.2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# -- the aggregator's state ----------------------------------------------------------------


def test_only_the_next_round_is_accepted_and_a_resend_replaces_the_earlier_update() -> None:
    lines: list[str] = []
    state = aggregator(rounds=2, location=None, lines=lines)
    for wrong in (0, 2):
        with pytest.raises(federated.StaleRoundError, match=r"round 0 is the last.*next is 1"):
            state.submit(wrong, 0, update(1), 10)

    assert state.submit(1, 0, update(1), 10) is False
    assert state.submit(1, 0, update(2), 30) is False  # shard 0 again: replaces its first update
    assert state.submit(1, 1, update(3), 20) is False
    assert state.model().round_index == 0 and lines == []
    assert state.submit(1, 2, update(4), 40) is True  # the third distinct shard completes it

    model = state.model()
    expected = fedavg([(update(2), 30), (update(3), 20), (update(4), 40)])
    np.testing.assert_allclose(model.weights, expected)
    assert (model.round_index, model.done) == (1, False)
    score = accuracy(expected, REFERENCE)
    assert state.accuracies == {1: score}
    assert lines == [f"round 1 of 2: accuracy {score:.3f} from 3 participants"]
    with pytest.raises(federated.StaleRoundError):
        state.submit(1, 0, update(2), 30)  # a resend after the round completed


def test_malformed_updates_are_invalid_not_stale() -> None:
    state = aggregator(rounds=1, location=None, lines=[])
    with pytest.raises(federated.InvalidUpdateError, match="shape"):
        state.submit(1, 0, np.zeros((3, 3)), 10)
    with pytest.raises(federated.InvalidUpdateError, match="not a participant"):
        state.submit(1, 3, update(1), 10)
    with pytest.raises(federated.InvalidUpdateError, match="samples"):
        state.submit(1, 0, update(1), 0)
    with pytest.raises(federated.InvalidUpdateError, match="finite"):
        state.submit(1, 0, update(1) * np.nan, 10)


def test_rounds_are_checkpointed_and_a_new_aggregator_resumes_after_the_last_one(
    tmp_path: Path,
) -> None:
    location = training.location_of(f"file://{tmp_path}/ckpt/", "3")
    assert location is not None
    first = aggregator(rounds=3, location=location, lines=[])
    for shard in range(3):
        first.submit(1, shard, update(shard), 10)
    first.submit(2, 0, update(7), 10)  # round 2 in progress when this copy stops
    assert sorted(p.name for p in (tmp_path / "ckpt" / "shard-3").iterdir()) == ["round-00001.npz"]

    second = aggregator(rounds=3, location=location, lines=[])
    assert second.resumed_at == 1
    np.testing.assert_allclose(second.model().weights, first.model().weights)
    with pytest.raises(federated.StaleRoundError):
        second.submit(1, 0, update(0), 10)
    for round_index in (2, 3):
        assert not second.model().done
        for shard in range(3):
            second.submit(round_index, shard, update(round_index + shard), 10)
    assert second.model().round_index == 3 and second.model().done
    assert second.wait_done(0.0)
    with pytest.raises(federated.StaleRoundError, match="the job is done"):
        second.submit(4, 0, update(0), 10)

    third = aggregator(rounds=3, location=location, lines=[])
    assert third.resumed_at == 3 and third.model().done


def test_released_once_every_participant_fetched_the_final_model() -> None:
    state = federated.Aggregator(0, 2, REFERENCE, None, lambda _: None)
    assert state.model().done and not state.wait_released(0.0)
    state.release(0)
    state.release(0)
    assert state.unreleased() == [1] and not state.wait_released(0.0)
    state.release(1)
    assert state.wait_released(0.0) and state.unreleased() == []


# -- the HTTP layer ------------------------------------------------------------------------


def test_the_server_answers_400_409_404_and_serves_the_model() -> None:
    state = aggregator(rounds=2, location=None, lines=[])
    with serving(state, []) as address:
        base = f"http://{address}"
        assert federated._request(f"{base}/healthz", None, 5.0) == (200, b"ok\n")
        assert federated._request(f"{base}/nowhere", None, 5.0)[0] == 404

        wrong = federated.encode(weights=np.zeros((2, 2)), samples=np.array(5))
        status, body = federated._request(f"{base}/update?round=1&shard=0", wrong, 5.0)
        assert status == 400 and "shape" in json.loads(body)["error"]
        status, _ = federated._request(f"{base}/update?round=1&shard=0", b"not npz", 5.0)
        assert status == 400
        status, _ = federated._request(f"{base}/update?round=x&shard=0", wrong, 5.0)
        assert status == 400

        good = federated.encode(weights=update(1), samples=np.array(5))
        status, body = federated._request(f"{base}/update?round=2&shard=0", good, 5.0)
        assert status == 409 and json.loads(body)["round"] == 0
        status, body = federated._request(f"{base}/update?round=1&shard=0", good, 5.0)
        assert status == 200 and json.loads(body) == {"round": 0, "completed": False}

        # A long poll that sees no new round answers with the model as it is.
        status, body = federated._request(f"{base}/model?after=0&shard=0", None, 5.0)
        model = federated.model_of(body)
        assert status == 200 and (model.round_index, model.rounds, model.done) == (0, 2, False)
        np.testing.assert_array_equal(model.weights, initial_weights())


# -- the job end to end --------------------------------------------------------------------


class Participant(threading.Thread):
    def __init__(self, shard: int, site: str, address: list[str], failed: threading.Event):
        super().__init__(daemon=True)
        self.shard, self.site, self.address, self.failed = shard, site, address, failed
        self.lines: list[str] = []
        self.outcome: federated.Outcome | BaseException | None = None

    def log(self, line: str) -> None:
        self.lines.append(line)
        if "unreachable" in line:
            self.failed.set()

    def run(self) -> None:
        train, test = site_dataset(self.site, 600)

        def step(weights: FloatArray, seed: int) -> FloatArray:
            return sgd(weights, train, 4, 32, 0.25, seed)

        # The address is read at every attempt, as the entrypoint re-reads its environment.
        link = federated.Link(lambda: self.address[0], 30.0, self.log)
        try:
            self.outcome = federated.participate(self.shard, link, step, len(train), test, self.log)
        except BaseException as error:
            self.outcome = error


def test_three_sites_train_four_rounds_and_the_global_model_improves(tmp_path: Path) -> None:
    lines: list[str] = []
    location = training.location_of(f"file://{tmp_path}/ckpt", "3")
    state = federated.Aggregator(4, 3, reference_set(SITES, 300), location, lines.append)
    server = federated.FederationServer(("127.0.0.1", 0), state, lines.append)

    # Delft starts before the aggregator is up: it retries until it answers.
    address = [closed_address()]
    failed = threading.Event()
    early = Participant(0, "delft", address, failed)
    early.start()
    assert failed.wait(10.0)
    address[0] = f"127.0.0.1:{server.server_port}"

    status: list[int] = []
    aggregating = threading.Thread(
        target=lambda: status.append(federated.serve(state, server, 10.0, lines.append))
    )
    aggregating.start()
    others = [Participant(i, site, address, threading.Event()) for i, site in enumerate(SITES)][1:]
    for participant in others:
        participant.start()
    for thread in [early, *others, aggregating]:
        thread.join(30.0)
        assert not thread.is_alive()

    assert status == [0]
    for participant in [early, *others]:
        assert participant.outcome == federated.Outcome((1, 2, 3, 4), 4), participant.lines
        local = [line for line in participant.lines if "local accuracy" in line]
        assert [line.split()[1] for line in local] == ["1", "2", "3", "4"]
        assert all(re.fullmatch(r"round \d local accuracy \d\.\d{3}", line) for line in local)
        assert participant.lines[-1] == "done at round 4 of 4"
    assert any("unreachable" in line for line in early.lines)
    assert any("answers again" in line for line in early.lines)

    rounds = [line for line in lines if re.fullmatch(r"round \d of 4: .*", line)]
    assert [line.split()[1] for line in rounds] == ["1", "2", "3", "4"]
    assert all(line.endswith(" from 3 participants") for line in rounds)
    scores = [state.accuracies[r] for r in (1, 2, 3, 4)]
    assert scores == sorted(scores) and scores[-1] > scores[0]
    assert lines[-1] == "done: all 3 participants have the final model"
    checkpoints = sorted(p.name for p in (tmp_path / "ckpt" / "shard-3").iterdir())
    assert checkpoints == [f"round-0000{r}.npz" for r in (1, 2, 3, 4)]


def test_an_aggregator_that_restarts_elsewhere_mid_round_gets_the_update_again(
    tmp_path: Path,
) -> None:
    """The first copy had delft's update of round 1 in memory only; delft's long poll sees no
    new round, so it resends the same update, now to the second copy at its new address."""
    location = str(tmp_path / "shard-2")
    first = federated.Aggregator(2, 2, REFERENCE, location, lambda _: None)
    address = [""]
    with serving(first, []) as first_address:
        address[0] = first_address
        delft = Participant(0, "delft", address, threading.Event())
        delft.start()
        for _ in range(200):
            if first.waiting_for() == [1]:
                break
            threading.Event().wait(0.05)
        assert first.waiting_for() == [1]

    lines: list[str] = []
    second = federated.Aggregator(2, 2, REFERENCE, location, lines.append)
    assert second.resumed_at == 0 and second.waiting_for() == [0, 1]
    server = federated.FederationServer(("127.0.0.1", 0), second, lines.append, long_poll_s=0.2)
    address[0] = f"127.0.0.1:{server.server_port}"
    aggregating = threading.Thread(
        target=federated.serve, args=(second, server, 10.0, lines.append)
    )
    aggregating.start()
    eindhoven = Participant(1, "eindhoven", address, threading.Event())
    eindhoven.start()
    for thread in (delft, eindhoven, aggregating):
        thread.join(30.0)
        assert not thread.is_alive()

    # Each trained each round once: delft's round 1 reached the second copy as a resend.
    for participant in (delft, eindhoven):
        assert participant.outcome == federated.Outcome((1, 2), 2), participant.lines
    assert sorted(second.accuracies) == [1, 2]


def test_a_participant_without_an_aggregator_gives_up_after_its_timeout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    train, test = site_dataset("ghent", 100)
    lines: list[str] = []
    address = closed_address()
    status = federated.run_participant(
        2,
        lambda: address,
        lambda weights, seed: sgd(weights, train, 1, 8, 0.25, seed),
        len(train),
        test,
        0.3,
        lines.append,
    )
    assert status == 1
    assert lines[0].startswith(f"aggregator at {address} unreachable")
    assert lines[-1].startswith(f"gives up: no answer from the aggregator at {address} for 0.")
    assert "(timeout 0.3 s," in lines[-1]
    assert "no answer from the aggregator" in capsys.readouterr().err


def test_the_entrypoints_take_their_defaults_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONTINUUM_SHARD_COUNT", "4")
    monkeypatch.setenv("CONTINUUM_FEDERATION_PORT", "9000")
    args = federated.arguments().parse_args(["aggregator", "--rounds", "5"])
    assert (args.rounds, args.participants, args.port, args.reference_samples) == (5, 3, 9000, 300)
    assert federated._sites("") == ["delft", "eindhoven", "ghent", "frankfurt"]
    assert federated._sites("ghent, delft") == ["ghent", "delft"]

    monkeypatch.setenv("CONTINUUM_DATA_SITE", "ghent")
    monkeypatch.setenv("CONTINUUM_SHARD_INDEX", "2")
    monkeypatch.setenv("CONTINUUM_AGGREGATOR_ADDRESS", "aggregator:8470")
    args = federated.arguments().parse_args(["participant"])
    assert (args.site, args.shard, args.local_steps, args.samples) == ("ghent", 2, 4, 600)
    assert args.aggregator is None and args.timeout_s == 900.0

    monkeypatch.delenv("CONTINUUM_DATA_SITE")
    with pytest.raises(SystemExit):
        federated.arguments().parse_args(["participant"])


def test_without_a_role_in_the_arguments_the_role_is_the_environments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CONTINUUM_ROLE", raising=False)
    assert federated.with_role(["--rounds", "3"]) == ["--rounds", "3"]
    monkeypatch.setenv("CONTINUUM_ROLE", "participant")
    assert federated.with_role(["--rounds", "3"]) == ["participant", "--rounds", "3"]
    assert federated.with_role(["aggregator", "--rounds", "3"]) == ["aggregator", "--rounds", "3"]
    monkeypatch.setenv("CONTINUUM_DATA_SITE", "delft")
    monkeypatch.setenv("CONTINUUM_SHARD_INDEX", "0")
    monkeypatch.setenv("CONTINUUM_AGGREGATOR_ADDRESS", "10.0.0.1:8470")
    args = federated.arguments().parse_args(federated.with_role(["--rounds", "3"]))
    assert (args.role, args.site, args.shard, args.rounds) == ("participant", "delft", 0, 3)
