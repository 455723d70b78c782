"""Quantities get the value Kubernetes gives them; the CRD pattern accepts the same texts."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from continuum.operator.api.quantity import PATTERN, Quantity, QuantityError

pytestmark = pytest.mark.unit

NANO = 10**9

# (text, value in nanos), values as k8s.io/apimachinery's ParseQuantity computes them.
PARSED = [
    ("0", 0),
    ("0n", 0),
    ("000", 0),
    ("0.0", 0),
    ("1n", 1),
    ("1u", 1_000),
    ("1m", 1_000_000),
    ("500m", 500_000_000),
    ("1", NANO),
    ("+1", NANO),
    ("1.5", 1_500_000_000),
    (".5", 500_000_000),
    ("1.", NANO),
    ("1k", 1_000 * NANO),
    ("1M", 10**6 * NANO),
    ("1G", 10**9 * NANO),
    ("1T", 10**12 * NANO),
    ("1P", 10**15 * NANO),
    ("1E", 10**18 * NANO),  # a bare E is exa, not an exponent
    ("1Ki", 1024 * NANO),
    ("4Gi", 4 * 2**30 * NANO),
    ("1.5Gi", 3 * 2**29 * NANO),
    ("0.5Ki", 512 * NANO),
    ("0.0001Ki", 102_400_000),
    ("7Ei", 7 * 2**60 * NANO),
    ("2e3", 2_000 * NANO),
    ("1E3", 1_000 * NANO),  # E followed by digits is an exponent
    ("1e+3", 1_000 * NANO),
    ("1e-3", 1_000_000),
    ("1.5e3", 1_500 * NANO),
    ("0e99", 0),
    # Finer than a nano rounds up, away from zero, as Kubernetes does.
    ("0.1n", 1),
    ("1e-10", 1),
    ("1e-1000", 1),
    ("1.0000000001", NANO + 1),
    ("12345678901234567890n", 12345678901234567890),
    ("9223372036854775807", (2**63 - 1) * NANO),
]


@pytest.mark.parametrize(("text", "nanos"), PARSED)
def test_api_quantity_has_the_kubernetes_value(text: str, nanos: int) -> None:
    assert Quantity.parse(text).nanos == nanos
    assert re.fullmatch(PATTERN, text), "the CRD pattern must accept what the model accepts"


REFUSED = [
    "",
    " 1",
    "1 ",
    "1i",
    "1K",  # kilo is lower-case k
    "1ki",
    "1KiB",
    "1Gb",
    "1.5.5",
    "1e",
    "1e+",
    "1ee3",
    "1Ee3",
    "1e3.5",  # Kubernetes' exponents are integers
    "e3",
    ".",  # the following four ParseQuantity reads as 0; the grammar and the CRD pattern do not
    "+",
    "m",
    "Ki",
    "0x10",
    "1,5",
    "one",
    "-1",
    "-0",
    "-500m",
    "8Ei",  # 2^63 is past the largest value Kubernetes keeps
    "1e19",
    "1e2147483648",  # Kubernetes would wrap this exponent to int32
    "1" * 65,
]


@pytest.mark.parametrize("text", REFUSED)
def test_api_quantity_refuses(text: str) -> None:
    with pytest.raises(QuantityError):
        Quantity.parse(text)


@pytest.mark.parametrize("value", [True, 1.5, None, [1]])
def test_api_quantity_refuses_other_types(value: object) -> None:
    with pytest.raises(QuantityError):
        Quantity.parse(value)  # type: ignore[arg-type]


def test_api_quantity_integers_are_whole_units() -> None:
    assert Quantity.parse(2).nanos == 2 * NANO
    assert Quantity.parse(2).written == 2


def test_api_quantity_units() -> None:
    assert Quantity.parse("500m").cores == 0.5
    assert Quantity.parse("4Gi").gib == 4.0
    assert Quantity.parse("4Gi").bytes == 4 * 2**30
    assert Quantity.parse("1.5").bytes == 2, "Value() rounds up"
    assert Quantity.parse("1.0005").millis == 1001, "MilliValue() rounds up"
    assert Quantity.parse("1.5Gi").value == Fraction(3 * 2**29)
    assert float(Quantity.parse("250m")) == 0.25


def test_api_quantity_compares_values_and_keeps_spelling() -> None:
    assert Quantity.parse("1Gi") == Quantity.parse(1073741824)
    assert Quantity.parse("1k") == Quantity.parse("1e3")
    assert Quantity.parse("999m") < Quantity.parse("1")
    assert len({Quantity.parse("1Gi"), Quantity.parse("1073741824")}) == 1
    assert str(Quantity.parse("1Gi")) == "1Gi"


class _Holder(BaseModel):
    cpu: Quantity


def test_api_quantity_round_trips_in_a_model() -> None:
    assert _Holder.model_validate({"cpu": "1.50"}).model_dump(mode="json") == {"cpu": "1.50"}
    assert _Holder.model_validate({"cpu": 3}).model_dump(mode="json") == {"cpu": 3}


def test_api_quantity_error_names_the_field() -> None:
    with pytest.raises(ValidationError) as raised:
        _Holder.model_validate({"cpu": "-1"})
    (error,) = raised.value.errors()
    assert error["loc"] == ("cpu",)
    assert "negative" in error["msg"]


_ALPHABET = "0123456789.+-eEinumkKMGTP"


@given(st.text(alphabet=_ALPHABET, max_size=8))
def test_api_quantity_pattern_and_parser_agree(text: str) -> None:
    """kube-apiserver (the pattern) and the webhook (the parser) accept the same texts, except
    values too large, which only the parser can see."""
    try:
        Quantity.parse(text)
        accepted = True
    except QuantityError as error:
        accepted = False
        if "largest" in str(error) or "out of range" in str(error):
            return
    assert accepted == bool(re.fullmatch(PATTERN, text))


_SUFFIXES: dict[str, int | Fraction] = {
    "": 1,
    "m": Fraction(1, 1000),
    "k": 1000,
    "Ki": 1024,
    "Mi": 2**20,
    "G": 10**9,
}


@given(
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=0, max_value=999),
    st.sampled_from(sorted(_SUFFIXES)),
)
def test_api_quantity_decimal_values_are_exact(whole: int, thousandths: int, suffix: str) -> None:
    text = f"{whole}.{thousandths:03d}{suffix}"
    expected = (whole + Fraction(thousandths, 1000)) * _SUFFIXES[suffix]
    assert Quantity.parse(text).value == expected
