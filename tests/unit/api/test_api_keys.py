"""JobKey: one key for an MLJob, its Placement, its raw body and the scheduler's text."""

from __future__ import annotations

import pytest

from continuum.operator.api.keys import JobKey
from tests.wrappers import MLJobWrapper, PlacementWrapper

pytestmark = pytest.mark.unit


def test_a_job_and_its_placement_have_one_key() -> None:
    job = MLJobWrapper("train").namespace("team-b").obj()
    placement = PlacementWrapper.of(job).obj()
    assert JobKey.of(job) == JobKey("team-b", "train")
    assert JobKey.of_placement(placement) == JobKey.of(job)


def test_a_placement_is_keyed_by_its_job_ref_not_its_own_name() -> None:
    placement = PlacementWrapper("placement-name").job_ref("the-job").namespace("ns").obj()
    assert JobKey.of_placement(placement) == JobKey("ns", "the-job")


def test_the_key_of_a_body_reads_its_metadata() -> None:
    body = MLJobWrapper("train").namespace("team-b").body()
    assert JobKey.of_body(body) == JobKey("team-b", "train")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, JobKey("", "")),
        ({"metadata": None}, JobKey("", "")),
        ({"metadata": {"name": "a"}}, JobKey("", "a")),
        ({"metadata": {"namespace": "ns", "name": None}}, JobKey("ns", "")),
    ],
)
def test_a_body_without_metadata_has_empty_parts(body: dict[str, object], expected: JobKey) -> None:
    assert JobKey.of_body(body) == expected


def test_a_model_without_namespace_or_name_has_empty_parts() -> None:
    job = MLJobWrapper("x").obj()
    job.metadata.namespace = None
    job.metadata.name = None
    assert JobKey.of(job) == JobKey("", "")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("team-a/train", JobKey("team-a", "train")),
        ("team-a/", JobKey("team-a", "")),
        ("/train", JobKey("", "train")),
        ("no-slash", JobKey("no-slash", "")),
        # Only the first slash separates: names cannot hold one, so nothing is lost.
        ("a/b/c", JobKey("a", "b/c")),
    ],
)
def test_parse_splits_at_the_first_slash(text: str, key: JobKey) -> None:
    assert JobKey.parse(text) == key


@pytest.mark.parametrize("key", [JobKey("team-a", "train"), JobKey("ns", "a.b-c"), JobKey("", "")])
def test_the_text_round_trips(key: JobKey) -> None:
    assert str(key) == f"{key.namespace}/{key.name}"
    assert JobKey.parse(str(key)) == key


def test_a_key_is_a_plain_tuple_for_equality_hashing_and_order() -> None:
    key = JobKey("team-a", "train")
    assert key == ("team-a", "train")
    assert ("team-a", "train") == key  # noqa: SIM300 (the tuple on the left side)
    assert hash(key) == hash(("team-a", "train"))
    assert {("team-a", "train"): 1}[key] == 1
    assert key != ("train", "team-a")
    namespace, name = key
    assert (namespace, name) == (key.namespace, key.name) == ("team-a", "train")
    assert sorted([JobKey("b", "a"), JobKey("a", "z")]) == [("a", "z"), ("b", "a")]
