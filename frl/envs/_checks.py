"""Checks of environment settings and constants that name the field and what it must be."""

from __future__ import annotations

import math
from typing import Any


def check_number(owner: str, name: str, value: Any, *, low: float = -math.inf, strict: bool = False) -> None:
    """``value`` is a finite int or float ``>= low`` (``> low`` when ``strict``), else a ValueError
    naming ``owner`` and the field ``name``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (strict and value == low):
        bound = f"> {low:g}" if strict else f">= {low:g}"
        what = "a finite number" if low == -math.inf else f"a finite number {bound}"
        raise ValueError(f"{owner}: `{name}` must be {what}, got {value!r}")


def check_count(owner: str, name: str, value: Any, low: int) -> None:
    """``value`` is an int (not a bool) ``>= low``, else a ValueError naming the field."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{owner}: `{name}` must be an int >= {low}, got {value!r}")
