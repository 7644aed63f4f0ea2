"""DDUF files: a whole diffusers pipeline in one uncompressed zip, ``model_index.json`` at its root.

Reading and checking is huggingface_hub's (:func:`huggingface_hub.read_dduf_file`: stored entries
only, one directory level, known file types, each folder listed in ``model_index.json``).
Recent diffusers (0.42) no longer loads a pipeline from a DDUF file, so the bundle also holds the file's
entries unpacked as a plain diffusers folder (:func:`unpack_dduf`); being stored, not compressed,
each entry is copied straight from its byte range.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

from dmr_core.errors import InvalidRequest
from dmr_core.store.filepaths import safe_filepath

MODEL_INDEX = "model_index.json"
COPY_CHUNK = 8 << 20


def read_dduf(path: Path) -> dict[str, Any]:
    """The DDUF's entries by name (``DDUFEntry``: offset, length); :class:`InvalidRequest` if not a DDUF."""
    from huggingface_hub import read_dduf_file
    from huggingface_hub.errors import DDUFCorruptedFileError

    try:
        entries = read_dduf_file(path)
    except zipfile.BadZipFile:
        raise InvalidRequest(f"{path.name} is not a DDUF file: not a zip archive", param="dduf") from None
    except (DDUFCorruptedFileError, ValueError) as exc:  # ValueError: model_index.json is not JSON
        raise InvalidRequest(f"{path.name} is not a DDUF file: {exc}", param="dduf") from None
    except OSError as exc:
        raise InvalidRequest(f"cannot read {path}: {exc.strerror or exc}", param="dduf") from None
    unsafe = sorted(name for name in entries if safe_filepath(name) is None)
    if unsafe:
        raise InvalidRequest(f"{path.name} is not a DDUF file: unsafe entry name {unsafe[0]!r}", param="dduf")
    return entries


def model_index(entries: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's ``model_index.json`` (read_dduf_file has checked it is a JSON object)."""
    return json.loads(entries[MODEL_INDEX].read_text())


def unpack_dduf(path: Path, target: Path) -> None:
    """Write every entry of the DDUF ``path`` under ``target`` (a new directory), fsynced."""
    entries = read_dduf(path)
    target.mkdir()
    with path.open("rb") as source:
        for name, entry in entries.items():
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            _copy_range(source.fileno(), destination, entry.offset, entry.length)


def _copy_range(source: int, destination: Path, offset: int, length: int) -> None:
    with destination.open("wb") as out:
        end = offset + length
        while offset < end:
            chunk = os.pread(source, min(COPY_CHUNK, end - offset), offset)
            if not chunk:
                raise InvalidRequest(f"DDUF entry {destination.name} runs past the end of the file")
            out.write(chunk)
            offset += len(chunk)
        out.flush()
        os.fsync(out.fileno())
