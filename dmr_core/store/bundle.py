"""The runtime bundle: a model's files under the names engines expect (DMR's ``bundle/unpack.go``).

``bundles/sha256/<id hex>/config.json`` holds the runtime config; ``model/`` holds hard links to the
blobs: ``model.gguf`` (or ``model-00001-of-00003.gguf`` … for shards, in layer order),
``model.mmproj`` and ``template.jinja``. Licenses and unknown layers stay blobs only.
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

MODEL_DIR = "model"
SINGLE_GGUF = "model.gguf"
MMPROJ = "model.mmproj"
CHAT_TEMPLATE = "template.jinja"
#: Layers that get a bundle name; the first layer of each of these types wins.
_SINGLE_FILES = {mediatypes.MMPROJ_LAYER: MMPROJ, mediatypes.CHAT_TEMPLATE_LAYER: CHAT_TEMPLATE}

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
    (temp / MODEL_DIR).mkdir(parents=True)
    for name, digest in files:
        _link_or_copy(blob_path(digest), temp / MODEL_DIR / name)
    write_atomic(temp / "config.json", artifact.encode_json(config))
    fsync_dir(temp / MODEL_DIR)
    os.rename(temp, final)
    fsync_dir(final.parent)


def _link_or_copy(blob: Path, target: Path) -> None:
    """Hard-link the blob into the bundle; copy where the filesystem cannot link."""
    try:
        os.link(blob, target)
    except OSError:
        shutil.copyfile(blob, target)
        with target.open("rb") as handle:
            os.fsync(handle.fileno())
