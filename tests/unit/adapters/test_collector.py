"""The operator's garbage-collector settings: thresholds set, every pause measured once."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from continuum.operator.adapters import collector


def _pauses(generation: int) -> float:
    for metric in collector.PAUSE_SECONDS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count") and sample.labels == {"generation": str(generation)}:
                return sample.value
    return 0.0


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds, callbacks = gc.get_threshold(), list(gc.callbacks)
    yield
    gc.set_threshold(*thresholds)
    gc.callbacks[:] = callbacks
    gc.unfreeze()


@pytest.mark.usefixtures("restored_collector")
def test_settle_heap_freezes_what_lives_and_makes_full_collections_rare() -> None:
    kept = [{"a": [1, 2]} for _ in range(1000)]
    collector.settle_heap()
    assert gc.get_threshold() == (
        collector.YOUNG_THRESHOLD,
        collector.MIDDLE_THRESHOLD,
        collector.FULL_THRESHOLD,
    )
    assert gc.get_freeze_count() >= len(kept)
    assert collector.YOUNG_THRESHOLD > 700 and collector.FULL_THRESHOLD > 10  # the defaults


@pytest.mark.usefixtures("restored_collector")
def test_every_pause_is_measured_once_by_generation() -> None:
    collector.settle_heap()
    collector.settle_heap()  # a second start-up adds no second timer
    samples = [sample for metric in collector.PAUSE_SECONDS.collect() for sample in metric.samples]
    # Every generation is exported from the start, counted from 0.
    assert {
        sample.labels["generation"] for sample in samples if sample.name.endswith("_count")
    } == {"0", "1", "2"}
    full, young = _pauses(2), _pauses(0)
    gc.collect()
    gc.collect(0)
    assert _pauses(2) == full + 1
    assert _pauses(0) == young + 1
