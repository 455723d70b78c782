"""Kubernetes quantities ("500m", "4Gi", "1.5", "2e3"), parsed to the value Kubernetes gives them.

For every string accepted here, the value equals what k8s.io/apimachinery's ParseQuantity computes:
the exact number, rounded up to a multiple of 10^-9 (Kubernetes keeps nano precision, and rounds
away from zero so that a tiny request never becomes zero). Some inputs are refused although
ParseQuantity takes them:
- degenerate spellings it reads as zero (".", "+", "m", "Ki"): the documented quantity grammar,
  and the pattern that kube-apiserver applies to quantities in CRDs, require a digit;
- negative values, which no field of this API means;
- values above 2^63-1 and exponents outside int32, which Kubernetes silently caps or wraps.
"""

from __future__ import annotations

import functools
import math
import re
from fractions import Fraction
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

NANOS_PER_UNIT = 10**9
LARGEST_VALUE = 2**63 - 1
MAX_LENGTH = 64
_INT32 = range(-(2**31), 2**31)

_DECIMAL_SUFFIXES = {
    "n": -9,
    "u": -6,
    "m": -3,
    "": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}

_GRAMMAR = re.compile(
    r"(?P<sign>[+-]?)"
    r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?P<suffix>[KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?"
)

# The same language as _GRAMMAR without the minus sign, for kube-apiserver to check at apply time.
# RE2 and ECMAScript agree on it.
PATTERN = r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$"

EXAMPLES = "'500m', '2', '4Gi' or '1.5e3'"


class QuantityError(ValueError):
    """The text is not a non-negative Kubernetes quantity."""


def _scale(suffix: str) -> Fraction:
    if suffix in _BINARY_SUFFIXES:
        return Fraction(2 ** _BINARY_SUFFIXES[suffix])
    if suffix in _DECIMAL_SUFFIXES:
        return Fraction(10) ** _DECIMAL_SUFFIXES[suffix]
    exponent = int(suffix[1:])
    if exponent not in _INT32:
        raise QuantityError(f"exponent {exponent} is out of range")
    if exponent > 40:  # anything non-zero is past LARGEST_VALUE; skip computing 10**huge
        return Fraction(10) ** 40
    if exponent < -40:  # anything non-zero rounds up to one nano
        return Fraction(10) ** -40
    return Fraction(10) ** exponent


def parse_nanos(text: str) -> int:
    """The value of a quantity in units of 10^-9, as Kubernetes rounds it."""
    match = _GRAMMAR.fullmatch(text)
    if match is None:
        raise QuantityError(f"{text!r} is not a quantity; use a form such as {EXAMPLES}")
    whole, _, fraction = match["number"].partition(".")
    number = Fraction(int(whole or "0")) + (
        Fraction(int(fraction), 10 ** len(fraction)) if fraction else 0
    )
    value = number * _scale(match["suffix"] or "")
    if match["sign"] == "-":
        raise QuantityError(f"{text!r} is negative; quantities here must be zero or more")
    if value > LARGEST_VALUE:
        raise QuantityError(f"{text!r} exceeds the largest quantity Kubernetes represents (2^63-1)")
    return math.ceil(value * NANOS_PER_UNIT)


@functools.total_ordering
class Quantity:
    """A non-negative Kubernetes quantity: the text as written, and its exact value.

    Equality and ordering compare values, as Kubernetes' Quantity.Cmp does: "1Gi" == "1073741824".
    Serialising gives back exactly what was written, an integer staying an integer.
    """

    # Not a dataclass: pydantic would then serialise its fields instead of `written`.
    __slots__ = ("_nanos", "_written")

    def __init__(self, written: str | int) -> None:
        if isinstance(written, bool) or not isinstance(written, str | int):
            raise QuantityError(f"expected a string or an integer such as {EXAMPLES}")
        if isinstance(written, str) and len(written) > MAX_LENGTH:
            raise QuantityError(f"a quantity is at most {MAX_LENGTH} characters")
        self._written = written
        self._nanos = parse_nanos(str(written))

    @classmethod
    def parse(cls, written: str | int) -> Quantity:
        return cls(written)

    @property
    def written(self) -> str | int:
        """Exactly what the manifest said."""
        return self._written

    @property
    def nanos(self) -> int:
        """The value in units of 10^-9, as Kubernetes stores it."""
        return self._nanos

    @property
    def value(self) -> Fraction:
        """The exact value in base units (cores, bytes, devices)."""
        return Fraction(self.nanos, NANOS_PER_UNIT)

    @property
    def cores(self) -> float:
        """For cpu: the number of cores ("500m" is 0.5)."""
        return self.nanos / NANOS_PER_UNIT

    @property
    def millis(self) -> int:
        """The value in thousandths, rounded up as Kubernetes' MilliValue does."""
        return -(-self.nanos // 10**6)

    @property
    def bytes(self) -> int:
        """For memory: whole bytes, rounded up as Kubernetes' Value does."""
        return -(-self.nanos // NANOS_PER_UNIT)

    @property
    def gib(self) -> float:
        """For memory: the value in GiB, the unit of the scheduler's snapshot."""
        return self.nanos / (NANOS_PER_UNIT * 2**30)

    def __float__(self) -> float:
        return self.nanos / NANOS_PER_UNIT

    def __str__(self) -> str:
        return str(self.written)

    def __repr__(self) -> str:
        return f"Quantity({self.written!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self.nanos == other.nanos

    def __lt__(self, other: Quantity) -> bool:
        return self.nanos < other.nanos

    def __hash__(self) -> int:
        return hash(self.nanos)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source_type: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda quantity: quantity.written
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # The form controller-gen gives resource.Quantity. The pattern binds only strings and
        # the minimum only integers, so together they refuse every negative.
        return {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "pattern": PATTERN,
            "maxLength": MAX_LENGTH,
            "minimum": 0,
        }


def _validate(value: object) -> Quantity:
    if isinstance(value, Quantity):
        return value
    try:
        if isinstance(value, str | int) and not isinstance(value, bool):
            return Quantity.parse(value)
        raise QuantityError(f"expected a string or an integer such as {EXAMPLES}")
    except QuantityError as error:
        raise PydanticCustomError("quantity", "{reason}", {"reason": str(error)}) from None
