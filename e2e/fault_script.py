"""Fault scripts: a CSV that drives the sites' links and failures over time, and its player.

    at_s,site,rtt_ms,jitter_ms,loss_pct,state
    0,delft,20,2,0,up
    10,delft,80,5,2,up
    20,delft,,,,partition
    30,delft,,,,restore

- The header is exactly that line. Blank lines are skipped; every other line is a row of six
  fields, and errors name the file's line number (the header is line 1) and the field.
- `at_s`: seconds from the start of the scenario, a number >= 0, not less than the row above
  (rows are sorted by it; rows with the same time apply in file order). At most MAX_AT_S.
- `site`: one of the topology's sites.
- `rtt_ms` (added round-trip time, split evenly between the two directions), `jitter_ms`
  (likewise: each direction +-jitter/2, uniform) and `loss_pct` (applied in each direction):
  numbers, required on an `up` row, rtt and jitter within 0..MAX_RTT_MS, loss within 0..100.
  On a `down`, `partition` or `restore` row they must be empty or 0: those rows set no shaping
  (`restore` brings a site back healthy), and a value there would silently mean nothing.
- `state`: `up` (the site runs, its link shaped as given), `down` (the site fails: its
  processes are killed, its link drops everything), `partition` (it runs, its link drops
  everything) or `restore` (it comes back, healthy, after `down` or `partition`).
- Each site starts up and healthy. `up` and `partition` need the site up; `down` needs it up or
  partitioned; `restore` needs it down or partitioned. A row that breaks this is an error.
- A site's values hold until its next row, so a ramp is several rows. The player leaves the
  links as the last rows set them.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

HEADER = ("at_s", "site", "rtt_ms", "jitter_ms", "loss_pct", "state")
STATES = ("up", "down", "partition", "restore")
MAX_AT_S = 24 * 3600.0
MAX_RTT_MS = 10_000.0
# What a site's state may be before a row of each state.
ALLOWED_FROM = {
    "up": ("up",),
    "partition": ("up",),
    "down": ("up", "partition"),
    "restore": ("down", "partition"),
}
AFTER = {"up": "up", "partition": "partition", "down": "down", "restore": "up"}
# The player sleeps at most this long at a time, so a stop is noticed soon.
TICK_S = 0.1


class FaultScriptError(ValueError):
    def __init__(self, source: str, line: int, field: str | None, message: str) -> None:
        where = f"{source}:{line}" + (f": field {field}" if field else "")
        super().__init__(f"{where}: {message}")
        self.line = line
        self.field = field


@dataclass(frozen=True)
class Row:
    line: int
    at_s: float
    site: str
    rtt_ms: float
    jitter_ms: float
    loss_pct: float
    state: str


def _number(
    text: str, source: str, line: int, field: str, top: float, required: bool
) -> float | None:
    if text == "":
        if required:
            raise FaultScriptError(source, line, field, "a number is required on an `up` row")
        return None
    try:
        value = float(text)
    except ValueError:
        raise FaultScriptError(source, line, field, f"not a number: {text!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= top:
        raise FaultScriptError(source, line, field, f"{text} is not within 0..{top:g}")
    return value


def parse(text: str, sites: Iterable[str], source: str = "<script>") -> list[Row]:
    """The rows of a fault script, checked; `sites` are the sites the script may name."""
    known = list(sites)
    lines = text.splitlines()
    if not lines or tuple(field.strip() for field in next(csv.reader([lines[0]]))) != HEADER:
        raise FaultScriptError(source, 1, None, f"the header must be {','.join(HEADER)}")
    rows: list[Row] = []
    states = dict.fromkeys(known, "up")
    since = dict.fromkeys(known, 0)
    for number, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        fields = [field.strip() for field in next(csv.reader([raw]))]
        if len(fields) != len(HEADER):
            raise FaultScriptError(
                source, number, None, f"{len(fields)} fields, the header has {len(HEADER)}"
            )
        at_text, site, rtt_text, jitter_text, loss_text, state = fields
        at_s = _number(at_text, source, number, "at_s", MAX_AT_S, required=True)
        assert at_s is not None
        if rows and at_s < rows[-1].at_s:
            raise FaultScriptError(
                source, number, "at_s",
                f"{at_text} is before the row above ({rows[-1].at_s:g}): rows are sorted by at_s",
            )  # fmt: skip
        if site not in states:
            raise FaultScriptError(
                source, number, "site", f"unknown site {site!r} (sites: {', '.join(known)})"
            )
        if state not in STATES:
            raise FaultScriptError(
                source, number, "state", f"{state!r} is not one of {', '.join(STATES)}"
            )
        values = []
        for field, value_text, top in (
            ("rtt_ms", rtt_text, MAX_RTT_MS),
            ("jitter_ms", jitter_text, MAX_RTT_MS),
            ("loss_pct", loss_text, 100.0),
        ):
            value = _number(value_text, source, number, field, top, required=state == "up")
            if state != "up" and value:
                raise FaultScriptError(
                    source, number, field,
                    f"must be empty or 0 on a `{state}` row (only `up` rows shape a link)",
                )  # fmt: skip
            values.append(value or 0.0)
        if states[site] not in ALLOWED_FROM[state]:
            raise FaultScriptError(
                source, number, "state",
                f"`{state}` on {site}, which is {states[site]} since line {since[site]}: "
                f"`{state}` needs it {' or '.join(ALLOWED_FROM[state])}",
            )  # fmt: skip
        states[site] = AFTER[state]
        since[site] = number
        rows.append(Row(number, at_s, site, values[0], values[1], values[2], state))
    return rows


def load(path: Path, sites: Iterable[str]) -> list[Row]:
    return parse(path.read_text(), sites, str(path))


class Target(Protocol):
    """What the player drives: e2e.sites.Sites has these."""

    def shape(
        self, site: str, rtt_ms: float, jitter_ms: float = 0.0, loss_pct: float = 0.0
    ) -> None: ...
    def partition(self, site: str) -> None: ...
    def down(self, site: str) -> None: ...
    def restore(self, site: str) -> None: ...


def apply(row: Row, target: Target) -> None:
    if row.state == "up":
        target.shape(row.site, row.rtt_ms, row.jitter_ms, row.loss_pct)
    elif row.state == "partition":
        target.partition(row.site)
    elif row.state == "down":
        target.down(row.site)
    else:
        target.restore(row.site)


def describe(row: Row) -> str:
    shaping = (
        f" rtt_ms={row.rtt_ms:g} jitter_ms={row.jitter_ms:g} loss_pct={row.loss_pct:g}"
        if row.state == "up"
        else ""
    )
    return f"line {row.line}: at {row.at_s:g} s {row.site} {row.state}{shaping}"


def play(
    rows: Sequence[Row],
    target: Target,
    hold_s: float = 0.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[str]:
    """Applies each row at its time from the start (now), yielding a line per row applied as
    it is applied; ends `hold_s` after the last row's time. Bounded: one pass over the rows,
    at most MAX_AT_S + hold_s long. A row applied late (a slow previous row) is not skipped."""
    if not 0.0 <= hold_s <= MAX_AT_S:
        raise ValueError(f"hold_s must be within 0..{MAX_AT_S:g}")
    start = clock()

    def wait_until(offset: float) -> None:
        while (left := start + offset - clock()) > 0:
            sleep(min(left, TICK_S))

    for row in rows:
        wait_until(row.at_s)
        apply(row, target)
        yield f"t={clock() - start:.2f} s {describe(row)}"
    wait_until((rows[-1].at_s if rows else 0.0) + hold_s)
