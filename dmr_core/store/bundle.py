"""The runtime bundle: a model's files under the names engines expect (DMR's ``bundle/unpack.go``).

``bundles/sha256/<id hex>/config.json`` holds the runtime config; ``model/`` holds hard links to the
blobs: ``model.gguf`` (or ``model-00001-of-00003.gguf`` … for shards, in layer order),
``model.mmproj`` and ``template.jinja``. A DDUF layer is ``model/<its file name>.dduf``, and its
entries are also unpacked into ``dduf/`` (a diffusers folder: recent diffusers cannot read DDUF).
Other layers with an ``org.cncf.model.filepath`` annotation (v0.2: a diffusers folder, one layer
per file) are placed at that path under ``model/``, nested directories kept. Licenses and layers
with neither a known type nor a path stay blobs only.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dmr_core.store import artifact, mediatypes
from dmr_core.store.artifact import Descriptor
from dmr_core.store.atomicfile import TEMP_SUFFIX, fsync_dir, write_atomic
from dmr_core.store.dduf import unpack_dduf
from dmr_core.store.filepaths import safe_filepath

MODEL_DIR = "model"
SINGLE_GGUF = "model.gguf"
MMPROJ = "model.mmproj"
CHAT_TEMPLATE = "template.jinja"
SINGLE_DDUF = "model.dduf"
#: Beside ``model/``: a DDUF model's entries, unpacked.
DDUF_DIR = "dduf"
#: Layers that get a bundle name; the first layer of each of these types wins.
_SINGLE_FILES = {mediatypes.MMPROJ_LAYER: MMPROJ, mediatypes.CHAT_TEMPLATE_LAYER: CHAT_TEMPLATE}

#: Layer types whose bundle name comes from their type, whatever their annotation says.
_NAMED_BY_TYPE = {*mediatypes.GGUF_LAYERS, *_SINGLE_FILES, mediatypes.DDUF_LAYER, mediatypes.LICENSE_LAYER}

#: (name inside ``model/``, blob digest)
BundleFile = tuple[str, str]


def bundle_files(layers: Sequence[Descriptor]) -> list[BundleFile]:
    """The files an engine reads, named as DMR names them; GGUF shards first, in order."""
    ggufs = [layer.digest for layer in layers if layer.media_type in mediatypes.GGUF_LAYERS]
    files = list(zip(gguf_names(len(ggufs)), ggufs))
    for media_type, name in _SINGLE_FILES.items():
        digest = next((layer.digest for layer in layers if layer.media_type == media_type), None)
        if digest is not None:
            files.append((name, digest))
    dduf = next((layer for layer in layers if layer.media_type == mediatypes.DDUF_LAYER), None)
    if dduf is not None:
        files.append((dduf_name(dduf), dduf.digest))
    return files + _placed_files(layers, {name for name, _ in files})


def dduf_name(layer: Descriptor) -> str:
    """The DDUF's own file name (DMR keeps it, adding ``.dduf`` if missing), else ``model.dduf``."""
    path = safe_filepath(layer.filepath)
    if path is None:
        return SINGLE_DDUF
    name = path.rsplit("/", 1)[-1]
    return name if name.lower().endswith(".dduf") else name + ".dduf"


def placed_filepaths(layers: Sequence[Descriptor]) -> list[str]:
    """The annotated paths of the layers placed by path (others keep their DMR names): what
    :func:`~dmr_core.store.filepaths.check_filepaths` must accept before a bundle is built."""
    return [layer.filepath for layer in layers if layer.filepath is not None and layer.media_type not in _NAMED_BY_TYPE]


def _placed_files(layers: Sequence[Descriptor], taken: set[str]) -> list[BundleFile]:
    """Layers placed by their file path annotation, the first of each path (unsafe paths skipped:
    :func:`~dmr_core.store.filepaths.check_filepaths` refuses them before a bundle is built)."""
    files = []
    for layer in layers:
        path = safe_filepath(layer.filepath)
        if layer.media_type in _NAMED_BY_TYPE or path is None or path in taken:
            continue
        taken.add(path)
        files.append((path, layer.digest))
    return files


def gguf_names(count: int) -> list[str]:
    if count == 1:
        return [SINGLE_GGUF]
    return [f"model-{index:05d}-of-{count:05d}.gguf" for index in range(1, count + 1)]


def build_bundle(final: Path, files: list[BundleFile], blob_path: Callable[[str], Path], config: dict[str, Any]) -> None:
    """Build the bundle in a temp dir and rename it into place; call with the store lock held."""
    if final.is_dir():
        return
    temp = final.with_name(final.name + TEMP_SUFFIX)
    _link_files(temp / MODEL_DIR, files, blob_path)
    dduf = next((name for name, _ in files if name.endswith(".dduf")), None)
    if dduf is not None:
        unpack_dduf(temp / MODEL_DIR / dduf, temp / DDUF_DIR)
    write_atomic(temp / "config.json", artifact.encode_json(config))
    for directory in _directories(temp):
        fsync_dir(directory)
    os.rename(temp, final)
    fsync_dir(final.parent)


def _link_files(model_dir: Path, files: list[BundleFile], blob_path: Callable[[str], Path]) -> None:
    model_dir.mkdir(parents=True)
    for name, digest in files:
        target = model_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(blob_path(digest), target)


def _directories(root: Path) -> list[Path]:
    """Every directory under ``root``, deepest first: each is fsynced before its parent is."""
    return sorted((path for path in root.rglob("*") if path.is_dir()), key=lambda p: -len(p.parts))


def _link_or_copy(blob: Path, target: Path) -> None:
    """Hard-link the blob into the bundle; copy where the filesystem cannot link."""
    try:
        os.link(blob, target)
    except OSError:
        shutil.copyfile(blob, target)
        with target.open("rb") as handle:
            os.fsync(handle.fileno())
