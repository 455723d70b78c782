"""The fault script's CSV: exactly its header, sorted rows, known sites, numbers in range, and
states that follow each other as a site can; every error names its line and field."""

from __future__ import annotations

import pytest

from e2e.fault_script import FaultScriptError, Row, parse, play

pytestmark = pytest.mark.unit

HEADER = "at_s,site,rtt_ms,jitter_ms,loss_pct,state\n"
SITES = ("delft", "ghent")


def test_a_good_script_parses_to_rows_with_their_lines() -> None:
    rows = parse(
        HEADER
        + "0,delft,20,2,0,up\n"
        + "\n"
        + "5,delft,80,5,2.5,up\n"
        + "5,ghent,,,,partition\n"
        + "10,ghent,0,0,0,down\n"
        + "20,ghent,,,,restore\n",
        SITES,
    )
    assert rows[0] == Row(2, 0.0, "delft", 20.0, 2.0, 0.0, "up")
    assert rows[1] == Row(4, 5.0, "delft", 80.0, 5.0, 2.5, "up")
    assert [(row.line, row.state) for row in rows[2:]] == [
        (5, "partition"), (6, "down"), (7, "restore"),
    ]  # fmt: skip


def test_a_header_alone_is_an_empty_script() -> None:
    assert parse(HEADER, SITES) == []


@pytest.mark.parametrize(
    ("body", "line", "field", "words"),
    [
        ("0,delft,20,0,0,up\n", 1, None, "header"),
        ("", 1, None, "header"),
        ("at_s,site,rtt_ms,jitter_ms,loss_pct\n", 1, None, "header"),
        (HEADER + "0,delft,20,0,0\n", 2, None, "5 fields"),
        (HEADER + "x,delft,20,0,0,up\n", 2, "at_s", "not a number"),
        (HEADER + "-1,delft,20,0,0,up\n", 2, "at_s", "within"),
        (HEADER + "nan,delft,20,0,0,up\n", 2, "at_s", "within"),
        (HEADER + "5,delft,20,0,0,up\n4,delft,20,0,0,up\n", 3, "at_s", "sorted"),
        (HEADER + "0,paris,20,0,0,up\n", 2, "site", "unknown site 'paris'"),
        (HEADER + "0,delft,-3,0,0,up\n", 2, "rtt_ms", "within"),
        (HEADER + "0,delft,20000,0,0,up\n", 2, "rtt_ms", "within"),
        (HEADER + "0,delft,20,inf,0,up\n", 2, "jitter_ms", "within"),
        (HEADER + "0,delft,20,0,100.5,up\n", 2, "loss_pct", "within"),
        (HEADER + "0,delft,20,0,,up\n", 2, "loss_pct", "required"),
        (HEADER + "0,delft,20,0,0,sideways\n", 2, "state", "not one of"),
        (HEADER + "0,delft,20,0,0,partition\n", 2, "rtt_ms", "empty or 0"),
        (HEADER + "0,delft,,,,restore\n", 2, "state", "needs it down or partition"),
        (HEADER + "0,delft,,,,down\n1,delft,10,0,0,up\n", 3, "state", "down since line 2"),
        (HEADER + "0,delft,,,,down\n1,delft,,,,partition\n", 3, "state", "needs it up"),
        (HEADER + "0,delft,,,,down\n1,delft,,,,down\n", 3, "state", "needs it up or partition"),
        (HEADER + "0,delft,,,,partition\n1,delft,,,,partition\n", 3, "state", "needs it up"),
    ],
)
def test_a_bad_row_names_its_line_and_field(
    body: str, line: int, field: str | None, words: str
) -> None:
    with pytest.raises(FaultScriptError) as raised:
        parse(body, SITES, "s.csv")
    assert raised.value.line == line
    assert raised.value.field == field
    prefix = f"s.csv:{line}: field {field}: " if field else f"s.csv:{line}: "
    assert str(raised.value).startswith(prefix)
    assert words in str(raised.value)


def test_down_after_partition_and_restore_after_either_are_allowed() -> None:
    rows = parse(
        HEADER + "0,delft,,,,partition\n1,delft,,,,down\n2,delft,,,,restore\n3,delft,9,0,0,up\n",
        SITES,
    )
    assert [row.state for row in rows] == ["partition", "down", "restore", "up"]


class Recorder:
    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.calls: list[tuple[float, str, str]] = []

    def shape(
        self, site: str, rtt_ms: float, jitter_ms: float = 0.0, loss_pct: float = 0.0
    ) -> None:
        shaping = f"{site} {rtt_ms:g} {jitter_ms:g} {loss_pct:g}"
        self.calls.append((self.clock[0], "shape", shaping))

    def partition(self, site: str) -> None:
        self.calls.append((self.clock[0], "partition", site))

    def down(self, site: str) -> None:
        self.calls.append((self.clock[0], "down", site))

    def restore(self, site: str) -> None:
        self.calls.append((self.clock[0], "restore", site))


def test_the_player_applies_each_row_at_its_time_and_ends_after_the_hold() -> None:
    now = [100.0]

    def sleep(seconds: float) -> None:
        assert 0 < seconds <= 0.1
        now[0] += seconds

    target = Recorder(now)
    rows = parse(
        HEADER + "0,delft,20,2,1,up\n1.5,delft,40,0,0,up\n1.5,ghent,,,,down\n3,ghent,,,,restore\n",
        SITES,
    )
    lines = list(play(rows, target, hold_s=2.0, clock=lambda: now[0], sleep=sleep))
    assert [(round(at - 100.0, 6), what, args) for at, what, args in target.calls] == [
        (0.0, "shape", "delft 20 2 1"),
        (1.5, "shape", "delft 40 0 0"),
        (1.5, "down", "ghent"),
        (3.0, "restore", "ghent"),
    ]
    assert len(lines) == 4
    assert "line 3: at 1.5 s delft up rtt_ms=40" in lines[1]
    assert round(now[0] - 100.0, 6) == 5.0
