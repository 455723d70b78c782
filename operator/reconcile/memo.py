"""A bounded memo of a pure function, for the scheduling cycle's per-job work: every cycle
converts every job, and most jobs are the same from one cycle to the next. It holds nothing
the API server does not (each key names the object's version), and it is cleared when full."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
LIMIT = 20_000


class Memo(Generic[T]):
    def __init__(self, limit: int = LIMIT) -> None:
        self._known: dict[Hashable, T] = {}
        self._limit = limit

    def get(self, key: Hashable | None, make: Callable[[], T]) -> T:
        """`make()`'s value for `key`, made once; a None key (no version to name) is not kept."""
        if key is None:
            return make()
        known = self._known.get(key)
        if known is None:
            if len(self._known) >= self._limit:
                self._known.clear()
            known = self._known[key] = make()
        return known
