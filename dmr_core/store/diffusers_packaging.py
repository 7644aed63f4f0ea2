"""Packaging a diffusers pipeline as a model, in either of DMR's two forms.

- A **folder** (``model_index.json`` at its root, components in subfolders): one layer per file,
  each with its path in the ``org.cncf.model.filepath`` annotation, under a v0.2 config; the
  bundle lays the files out again as the folder (:mod:`dmr_core.store.bundle`).
- A **DDUF file**: one ``application/vnd.docker.ai.dduf`` layer, checked by huggingface_hub's
  DDUF reader before anything is written.

Both get ``format: "diffusers"``, the pipeline class as ``architecture``, and a ``diffusers`` map
(``layout``: ``folder`` or ``dduf``, as DMR's ``Config.Diffusers`` map of strings).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dmr_core.errors import InvalidRequest
from dmr_core.store import mediatypes
from dmr_core.store.dduf import MODEL_INDEX, model_index, read_dduf
from dmr_core.store.layout import tag_reference
from dmr_core.store.packaging import list_packaged, store_file

if TYPE_CHECKING:
    from dmr_core.store.layout import Model, ModelStore


def import_diffusers_folder(store: ModelStore, folder: Path | str, tag: str) -> Model:
    """Package the diffusers folder ``folder``, one layer per file, as a model tagged ``tag``."""
    folder, reference = Path(folder), tag_reference(tag)
    paths = folder_files(folder)
    config = diffusers_config(_read_model_index(folder), "folder", sum((folder / p).stat().st_size for p in paths))
    store.ensure_layout()
    layers = [dataclasses.replace(store_file(store, folder / path, _media_type(path)), filepath=path)
              for path in paths]  # fmt: skip
    return list_packaged(store, reference.name, config, layers, mediatypes.MODEL_CONFIG_V02)


def import_dduf(store: ModelStore, path: Path | str, tag: str) -> Model:
    """Package the DDUF file ``path`` as a model tagged ``tag``; :class:`InvalidRequest` if not a DDUF."""
    path, reference = Path(path), tag_reference(tag)
    if not path.is_file():
        raise InvalidRequest(f"{path} is not a file", param="dduf")
    index = model_index(read_dduf(path))  # before any write: a non-DDUF file leaves no trace
    config = diffusers_config(index, "dduf", path.stat().st_size, dduf_file=path.name)
    store.ensure_layout()
    layer = dataclasses.replace(store_file(store, path, mediatypes.DDUF_LAYER), filepath=path.name)
    return list_packaged(store, reference.name, config, [layer], mediatypes.MODEL_CONFIG_V02)


def folder_files(folder: Path) -> list[str]:
    """The folder's files as sorted ``/`` paths; hidden files and folders (``.git``, ``.cache``) left out."""
    if not folder.is_dir():
        raise InvalidRequest(f"{folder} is not a directory", param="diffusers")
    if not (folder / MODEL_INDEX).is_file():
        raise InvalidRequest(f"{folder} has no {MODEL_INDEX}: it is not a diffusers folder", param="diffusers")
    paths = (path.relative_to(folder) for path in folder.rglob("*") if path.is_file())
    return sorted(path.as_posix() for path in paths if not any(part.startswith(".") for part in path.parts))


def diffusers_config(index: dict[str, Any], layout: str, size: int, **extra: str) -> dict[str, Any]:
    """The model config DMR shows for a diffusers pipeline described by ``model_index.json``."""
    from dmr_core.store.ggufinfo import format_bytes  # a writer's import (numpy): see import_gguf

    pipeline = str(index.get("_class_name") or "")
    details = {"layout": layout, "pipeline": pipeline, "diffusers_version": str(index.get("_diffusers_version") or ""),
               **extra}  # fmt: skip
    config = {"format": "diffusers", "architecture": pipeline, "size": format_bytes(size),
              "diffusers": {key: value for key, value in details.items() if value}}  # fmt: skip
    return {key: value for key, value in config.items() if value}


def _read_model_index(folder: Path) -> dict[str, Any]:
    try:
        index = json.loads((folder / MODEL_INDEX).read_bytes())
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"cannot read {folder / MODEL_INDEX}: {exc}", param="diffusers") from None
    if not isinstance(index, dict):
        raise InvalidRequest(f"{folder / MODEL_INDEX} is not a JSON object", param="diffusers")
    return index


def _media_type(path: str) -> str:
    return mediatypes.SAFETENSORS_LAYER if path.endswith(".safetensors") else mediatypes.MODEL_FILE_LAYER
