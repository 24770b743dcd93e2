"""One config value checked against its key: kind, range, finiteness, 64-bit integers.

Every problem is a ConfigError of one line naming the key, the value and the valid range.
The keys themselves (the workload's schema) are in opts/.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class ConfigError(Exception):
    """A preset or an override names an unknown key or holds an invalid value."""


@dataclass(frozen=True)
class Key:
    kind: str  # str | int | float | bool | int_pair | float3
    default: Any = None  # None: required (or, for resource knobs, decided at run time)
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    above: bool = False  # the minimum itself is excluded (value > minimum)
    file_name: bool = False  # a str that names a folder: a plain file name


# Integers are stored in 64 bits downstream (torch, numpy, the results files).
INT64_MAX = 2**63 - 1


def _bound(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _range(key: Key, kind: str) -> str:
    """The valid range of a numeric key, as words: "an integer >= 1", "a number in [0, 1]"."""
    lo, hi = key.minimum, key.maximum
    if lo is not None and hi is not None:
        return f"{kind} in {'(' if key.above else '['}{_bound(lo)}, {_bound(hi)}]"
    if lo is not None:
        return f"{kind} {'>' if key.above else '>='} {_bound(lo)}"
    return f"{kind} <= {_bound(hi)}" if hi is not None else kind


def _shown(value: Any) -> str:
    """``repr(value)``, shortened: a 400-digit number must not fill the terminal."""
    try:
        text = repr(value)
    except ValueError:  # an integer beyond Python's conversion limit (4300 digits)
        return "<an integer of thousands of digits>"
    return text if len(text) <= 60 else f"{text[:24]}...({len(text)} characters)"


def _in_range(key: Key, value: float) -> bool:
    if key.minimum is not None and (value <= key.minimum if key.above else value < key.minimum):
        return False
    return key.maximum is None or value <= key.maximum


def _number(value: Any, kind: str) -> float | int | None:
    """``value`` as a finite number of the kind (int: fitting in 64 bits), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if kind == "int":
        return value if isinstance(value, int) and -INT64_MAX - 1 <= value <= INT64_MAX else None
    try:
        value = float(value)  # an integer too large for a float overflows
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def _is_file_name(value: str) -> bool:
    try:
        size = len(value.encode("utf-8"))  # a lone surrogate cannot name a folder
    except UnicodeEncodeError:
        return False
    return (0 < size <= 255 and "/" not in value and "\\" not in value
            and not value.startswith(".") and all(c.isprintable() for c in value))


def check_value(name: str, key: Key, value: Any, where: str, may_be_unset: bool = False) -> Any:
    """Return ``value`` converted to the key's kind, or raise ConfigError in one line.
    ``may_be_unset``: None is accepted for a key without a default (decided at run time)."""
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{where}: {name}={_shown(value)} is invalid; expected {expected}")

    if value is None and key.default is None and may_be_unset:
        return None
    if key.kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if key.kind == "str":
        if not isinstance(value, str) or not value:
            raise bad("a non-empty string")
        if key.choices and value not in key.choices:
            raise bad("one of " + ", ".join(key.choices))
        if key.file_name and not _is_file_name(value):
            raise bad("a plain file name (no '/' or '\\', not starting with '.', no control "
                      "characters, at most 255 bytes)")
        return value
    if key.kind == "float" and isinstance(value, str):
        try:  # YAML 1.1 reads 5e-4 (no dot) as a string
            value = float(value)
        except ValueError:
            raise bad("a number") from None
    if key.kind in ("int", "float"):
        kind = "an integer" if key.kind == "int" else "a finite number"
        number = _number(value, key.kind)
        if number is None or not _in_range(key, number):
            big = key.kind == "int" and key.maximum is None
            raise bad(_range(key, kind) + (" that fits in 64 bits" if big else ""))
        return number
    if key.kind == "int_pair":
        pair = [_number(v, "int") for v in value] if isinstance(value, list) else []
        if len(pair) != 2 or None in pair or not key.minimum <= pair[0] <= pair[1]:
            raise bad("[low, high], two 64-bit integers with 1 <= low <= high")
        return pair
    if key.kind == "float3":
        three = [_number(v, "float") for v in value] if isinstance(value, list) else []
        if len(three) != 3 or None in three or not all(_in_range(key, v) for v in three):
            raise bad(f"a list of three finite numbers{_range(key, '')} (one per RGB channel)")
        return three
    raise AssertionError(key.kind)
