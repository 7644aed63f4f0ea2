"""A stored model as the API and the engines see it: id, tags, config and where its files are."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dmr_core.store.bundle import CHAT_TEMPLATE, MMPROJ, MODEL_DIR, SINGLE_GGUF
from dmr_core.store.references import familiar_name


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
    #: Names inside ``bundle/model/``: GGUF file(s) first, then ``model.mmproj``, ``template.jinja``.
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
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]

    @property
    def display_name(self) -> str:
        return familiar_name(self.tags[0]) if self.tags else self.id
