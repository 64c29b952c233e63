"""Metadata values exactly as the writing version's get() returns them.

Stored rows carry one typed column each (string, int, float, bool; docs/FORMAT.md's precedence).
Values that only exist in the write log are JSON text: 0.x parses it with Python's `json`,
1.x with Rust's serde_json, whose default float parser is not correctly rounded (it scales
the decimal significand by one power of ten, so about one 17-digit float in twenty lands
one ulp away). `serde_number` reproduces that parser bit for bit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from chroma_migrate.exchange import canonical_metadata

DOCUMENT_KEY = "chroma:document"
URI_KEY = "chroma:uri"
U64_MAX = 2**64 - 1
I32_MAX = 2**31 - 1
# serde_json's table: the f64 nearest to each power of ten, as Rust's float literals give them.
POW10 = tuple(float(f"1e{exponent}") for exponent in range(309))


def typed_value(string_value: Any, int_value: Any, float_value: Any, bool_value: Any) -> Any:
    """One stored metadata row's value: string, then int, then float, then bool (0/1 becomes a bool)."""
    if string_value is not None:
        return string_value
    if int_value is not None:
        return int_value
    if float_value is not None:
        return float_value
    if bool_value is not None:
        return bool(bool_value)
    return None


def _f64_from_parts(positive: bool, significand: int, exponent: int, text: str) -> float:
    value = float(significand)  # u64 -> f64 rounds to nearest, ties to even, like Rust's `as`
    while True:
        if abs(exponent) < len(POW10):
            if exponent >= 0:
                value *= POW10[exponent]
                if math.isinf(value):
                    raise ValueError(f"number out of range: {text}")
            else:
                value /= POW10[-exponent]
            break
        if value == 0.0:
            break
        if exponent >= 0:
            raise ValueError(f"number out of range: {text}")
        value /= 1e308
        exponent += 308
    return value if positive else -value


def serde_number(text: str) -> int | float:
    """A JSON number as serde_json (default features) parses it: ints stay ints, floats keep its rounding."""
    position, positive = (1, False) if text.startswith("-") else (0, True)
    significand, exponent, overflowed, is_float = 0, 0, False, False
    length = len(text)
    while position < length and text[position].isdigit():
        digit = ord(text[position]) - 48
        if overflowed or significand * 10 + digit > U64_MAX:
            overflowed = is_float = True  # the rest of the integer only scales it
            exponent += 1
        else:
            significand = significand * 10 + digit
        position += 1
    if position < length and text[position] == ".":
        is_float = True
        position += 1
        while position < length and text[position].isdigit():
            digit = ord(text[position]) - 48
            if overflowed or significand * 10 + digit > U64_MAX:
                overflowed = True  # further fraction digits are dropped
            else:
                significand = significand * 10 + digit
                exponent -= 1
            position += 1
    if position < length and text[position] in "eE":
        is_float = True
        position += 1
        sign = 1
        if text[position] in "+-":
            sign = -1 if text[position] == "-" else 1
            position += 1
        value = int(text[position:])
        if value > I32_MAX:
            if sign > 0 and significand:
                raise ValueError(f"number out of range: {text}")
            return 0.0 if positive else -0.0
        exponent = max(-(2**31), min(I32_MAX, exponent + sign * value))
    if not is_float:
        if positive:
            return significand
        if significand == 0:
            return -0.0  # serde_json reads "-0" as a float
        return -significand if significand <= 2**63 else -float(significand)
    return _f64_from_parts(positive, significand, exponent, text)


def log_metadata_parser(rust_core: bool) -> Callable[[str], dict[str, Any] | None]:
    """How the writing version decodes the JSON metadata of a write-log row."""
    if rust_core:
        return lambda text: json.loads(text, parse_float=serde_number, parse_int=serde_number) if text else None
    return lambda text: json.loads(text) if text else None


def split_record(values: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(document, uri, canonical metadata JSON or None): a record with no other keys has no metadata."""
    document = values.pop(DOCUMENT_KEY, None)
    uri = values.pop(URI_KEY, None)
    return document, uri, canonical_metadata(values) if values else None
