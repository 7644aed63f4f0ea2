"""A stored model as the API and the engines see it: id, tags, config and where its files are."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dmr_core.store.bundle import CHAT_TEMPLATE, DDUF_DIR, MMPROJ, MODEL_DIR, SINGLE_GGUF
from dmr_core.store.references import familiar_name

#: Formats loaded from a diffusers folder; DMR writes "dduf" for a DDUF model, dmr "diffusers" for both.
DIFFUSERS_FORMATS = frozenset({"diffusers", "dduf"})
MODEL_INDEX = "model_index.json"


@dataclass(frozen=True)
class Model:
    """A model in the store, as the API and the engines see it."""

    id: str
    tags: tuple[str, ...]
    #: Unix seconds, from the config blob's ``descriptor.created``.
    created: int
    #: The inner ``config`` object (format, quantization, parameters, gguf, ...).
    config: dict[str, Any]
    files: tuple[str, ...]
    bundle: Path
    #: Names inside ``bundle/model/``: GGUF file(s) first, then ``model.mmproj``, ``template.jinja``,
    #: a DDUF file, then files placed by their path annotation (``unet/config.json``...).
    model_files: tuple[str, ...] = (SINGLE_GGUF,)

    @property
    def gguf_paths(self) -> list[Path]:
        return [self.bundle / MODEL_DIR / name for name in self.model_files if name.endswith(".gguf")]

    @property
    def gguf_path(self) -> Path:
        """The GGUF file, or the first shard of a split model (llama.cpp finds the rest by name)."""
        paths = self.gguf_paths
        return paths[0] if paths else self.bundle / MODEL_DIR / SINGLE_GGUF

    @property
    def mmproj_path(self) -> Path | None:
        return self.bundle / MODEL_DIR / MMPROJ if MMPROJ in self.model_files else None

    @property
    def chat_template_path(self) -> Path | None:
        return self.bundle / MODEL_DIR / CHAT_TEMPLATE if CHAT_TEMPLATE in self.model_files else None

    @property
    def format(self) -> str:
        """``gguf`` (also when the config names none, as DMR assumes), or ``diffusers`` for both
        diffusers forms (a folder, a DDUF file)."""
        declared = (self.config or {}).get("format") or "gguf"
        return "diffusers" if declared in DIFFUSERS_FORMATS else declared

    @property
    def dduf_path(self) -> Path | None:
        """The DDUF file of a DDUF model."""
        name = next((name for name in self.model_files if name.endswith(".dduf")), None)
        return self.bundle / MODEL_DIR / name if name is not None else None

    @property
    def engine_path(self) -> Path | None:
        """What a diffusers engine loads: a directory laid out as a diffusers folder (for a DDUF
        model, its entries unpacked); ``None`` for any other model (engines load :attr:`gguf_path`)."""
        if self.dduf_path is not None:
            return self.bundle / DDUF_DIR
        return self.bundle / MODEL_DIR if MODEL_INDEX in self.model_files else None

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]

    @property
    def display_name(self) -> str:
        return familiar_name(self.tags[0]) if self.tags else self.id
