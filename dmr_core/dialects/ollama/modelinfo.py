"""``model_info`` for ``/api/show``: a GGUF header's key/values with their JSON types.

The store's model config keeps every GGUF value as text (DMR's format), but Ollama clients read
``model_info`` as typed JSON (``llama.context_length`` is a number, ``general.languages`` a list).
So the header is read again here, with only ``struct`` over a memory map: the ``gguf`` package
would bring numpy into the web worker and parse every vocabulary entry. Large arrays (the
vocabulary, merges) are skipped unless ``verbose``, as Ollama does, and reported as ``null``.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path
from typing import Any

from dmr_core.errors import InvalidRequest

#: Arrays longer than this are ``null`` unless the client asked for ``verbose``.
MAX_ARRAY_ITEMS = 64
_MAGIC = b"GGUF"
# GGUF value types: (struct code, size) for the fixed-size ones.
_SCALARS = {
    0: ("B", 1), 1: ("b", 1), 2: ("H", 2), 3: ("h", 2), 4: ("I", 4), 5: ("i", 4),
    6: ("f", 4), 7: ("?", 1), 10: ("Q", 8), 11: ("q", 8), 12: ("d", 8),
}  # fmt: skip
_FLOAT32, _STRING, _ARRAY = 6, 8, 9


class _Cursor:
    """Reads GGUF values from ``data`` starting at ``offset``, in the file's byte order."""

    def __init__(self, data: Any, order: str) -> None:
        self.data = data
        self.order = order
        self.offset = 0

    def scalar(self, code: str, size: int) -> Any:
        (value,) = struct.unpack_from(self.order + code, self.data, self.offset)
        self.offset += size
        return value

    def u32(self) -> int:
        return self.scalar("I", 4)

    def u64(self) -> int:
        return self.scalar("Q", 8)

    def string(self) -> str:
        length = self.u64()
        start = self.offset
        self.offset += length
        return bytes(self.data[start:self.offset]).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        length = self.u64()  # read first: ``offset += u64()`` would add to the old offset
        self.offset += length

    def value(self, kind: int, max_items: int | None) -> Any:
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            return self.array(max_items)
        code, size = _SCALARS[kind]
        value = self.scalar(code, size)
        return _short_float32(value) if kind == _FLOAT32 else value

    def array(self, max_items: int | None) -> list[Any] | None:
        kind, count = self.u32(), self.u64()
        if max_items is None or count <= max_items:
            return [self.value(kind, max_items) for _ in range(count)]
        self.skip_array(kind, count)
        return None

    def skip_array(self, kind: int, count: int) -> None:
        if kind in _SCALARS:
            self.offset += _SCALARS[kind][1] * count
            return
        for _ in range(count):
            if kind == _STRING:
                self.skip_string()
            else:
                self.array(0)


def _short_float32(value: float) -> float:
    """The shortest decimal that is the same float32 (``1e-05``, not ``9.99999974e-06``)."""
    for digits in range(6, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.unpack("<f", struct.pack("<f", candidate))[0] == value:
            return candidate
    return value


def read_model_info(path: Path | str, verbose: bool = False) -> dict[str, Any]:
    """Every header key/value of the GGUF file ``path`` plus ``general.parameter_count``."""
    try:
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _parse(data, None if verbose else MAX_ARRAY_ITEMS)
    except (OSError, ValueError, struct.error, KeyError) as exc:
        raise InvalidRequest(f"cannot read the model's GGUF header: {exc}") from exc


def _parse(data: Any, max_items: int | None) -> dict[str, Any]:
    if data[:4] != _MAGIC:
        raise ValueError("not a GGUF file")
    # A big-endian file has its (small) version number in the high bytes when read little-endian.
    order = "<" if struct.unpack_from("<I", data, 4)[0] < 0x10000 else ">"
    cursor = _Cursor(data, order)
    cursor.offset = 8
    tensor_count, kv_count = cursor.u64(), cursor.u64()
    info: dict[str, Any] = {}
    for _ in range(kv_count):
        key = cursor.string()
        info[key] = cursor.value(cursor.u32(), max_items)
    info["general.parameter_count"] = _parameter_count(cursor, tensor_count)
    return info


def _parameter_count(cursor: _Cursor, tensor_count: int) -> int:
    """The sum of the tensors' element counts, from the tensor infos after the key/values."""
    total = 0
    for _ in range(tensor_count):
        cursor.skip_string()
        elements = 1
        for _ in range(cursor.u32()):
            elements *= cursor.u64()
        cursor.offset += 4 + 8  # tensor type, data offset
        total += elements
    return total
