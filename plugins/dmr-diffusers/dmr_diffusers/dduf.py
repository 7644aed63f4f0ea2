"""DDUF files (one uncompressed zip holding a whole diffusers pipeline) unpacked for loading.

diffusers dropped ``from_pretrained(..., dduf_file=…)`` (0.42 refuses it), so the engine unpacks
the entries, which huggingface_hub's reader locates and checks, into a temporary directory laid
out as the original folder, loads from there, and removes it: the weights are in memory by then.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

_COPY_BLOCK = 8 << 20


def is_dduf(path: str | Path) -> bool:
    return Path(path).is_file() and str(path).lower().endswith(".dduf")


@contextlib.contextmanager
def unpacked(dduf_path: str | Path) -> Iterator[Path]:
    """A directory holding the pipeline of ``dduf_path``, removed on exit (``TMPDIR`` decides where)."""
    from huggingface_hub import read_dduf_file

    entries = read_dduf_file(dduf_path)  # checks the layout: model_index.json, no compression
    folder = Path(tempfile.mkdtemp(prefix="dmr-dduf-"))
    try:
        with open(dduf_path, "rb") as source:
            for entry in entries.values():
                _copy_entry(source, entry, folder)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _copy_entry(source, entry, folder: Path) -> None:
    target = (folder / entry.filename).resolve()
    if folder.resolve() not in target.parents:  # a hostile name such as ../x
        raise ValueError(f"DDUF entry {entry.filename!r} points outside the pipeline")
    target.parent.mkdir(parents=True, exist_ok=True)
    source.seek(entry.offset)
    left = entry.length
    with open(target, "wb") as out:
        while left:
            block = source.read(min(left, _COPY_BLOCK))
            if not block:
                raise ValueError(f"DDUF entry {entry.filename!r} is cut short")
            out.write(block)
            left -= len(block)
