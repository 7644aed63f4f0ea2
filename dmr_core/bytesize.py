"""Sizes in bytes as people write them: ``1.5GiB``, ``800MB``, ``512M``, or a plain number."""

from __future__ import annotations

import re
from typing import Any

from dmr_core.errors import InvalidRequest

#: Unit → bytes. ``K``/``M``/``G``/``T`` alone are binary, as in ``docker --memory`` and Ollama.
UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
         "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}  # fmt: skip
SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


def parse_size(value: Any, name: str) -> int:
    """Bytes from an integer or a size string; ``name`` names the field in the 400 for anything else.

    :raises InvalidRequest: for booleans, negative or fractional byte counts, unknown units, zero.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = SIZE.fullmatch(value) if isinstance(value, str) else None
    unit = match.group(2).lower() if match else None
    if unit not in UNITS:
        raise InvalidRequest(f"invalid {name} {value!r}: give bytes or a size such as \"1.5GiB\"", param=name)
    size = int(float(match.group(1)) * UNITS[unit])
    if size <= 0:
        raise InvalidRequest(f"invalid {name} {value!r}: must be more than 0 bytes", param=name)
    return size
