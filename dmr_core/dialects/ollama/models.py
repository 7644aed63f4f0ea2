"""Store entries as Ollama sees them: names, ``details``, sizes, capabilities, ``/api/show``.

What is read from disk (blob sizes, the manifest's layer types, the GGUF header) never changes
for a model id, since the store is content-addressed, so it is cached per id.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dmr_core.dialects.ollama.modelinfo import read_model_info
from dmr_core.dialects.ollama.translate import dumps, timestamp
from dmr_core.errors import DmrError, ModelNotFound, ModelOnPeer
from dmr_core.reasoning import template_supports_thinking
from dmr_core.store import mediatypes
from dmr_core.store.layout import Model, ModelStore
from dmr_core.store.references import familiar_name

if TYPE_CHECKING:
    from dmr_core.runtime import Runtime

log = logging.getLogger(__name__)

_HF_REGISTRY, _HF_ALIAS = "huggingface.co/", "hf.co/"
#: Order in which Ollama lists capabilities.
_CAPABILITY_ORDER = ("completion", "tools", "vision", "embedding", "insert", "thinking", "image")
_FIM_KEYS = ("tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id")


def ollama_name(tag: str) -> str:
    """``docker.io/ai/smollm2:latest`` → ``ai/smollm2:latest``; Hugging Face as ``hf.co/…``."""
    name = familiar_name(tag)
    return _HF_ALIAS + name[len(_HF_REGISTRY):] if name.startswith(_HF_REGISTRY) else name


def display_name(model: Model) -> str:
    return ollama_name(model.tags[0]) if model.tags else model.id.removeprefix("sha256:")


def find(store: ModelStore, name: str) -> Model:
    """The model ``name`` names, or Ollama's 404 ``model 'x' not found``."""
    try:
        return store.resolve(name)
    except ModelNotFound:
        raise ModelNotFound(f"model '{name}' not found", param="model") from None


def find_to_run(runtime: Runtime, name: str) -> Model:
    """As :func:`find`, for a request that runs the model: a missing one may be pulled on demand, or
    its 404 name the peer that has it (:meth:`Runtime.find_model`)."""
    try:
        return runtime.find_model(name)
    except ModelOnPeer:
        raise
    except ModelNotFound:
        raise ModelNotFound(f"model '{name}' not found", param="model") from None


def _gguf(model: Model) -> dict[str, str]:
    return (model.config or {}).get("gguf") or {}


def template(model: Model) -> str:
    """The chat template engines use: the bundle's ``template.jinja`` if any, else the GGUF's."""
    path = model.chat_template_path
    if path is not None:
        return _read_template(path)
    return _gguf(model).get("tokenizer.chat_template", "")


@functools.lru_cache(maxsize=64)
def _read_template(path: Path) -> str:
    """Bundles are content-addressed: a path's text never changes."""
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        log.warning("cannot read the chat template %s: %s", path, exc)
        return ""


def details(model: Model) -> dict[str, Any]:
    config = model.config or {}
    family = config.get("architecture", "")
    return {
        "parent_model": "", "format": config.get("format", "gguf"), "family": family,
        "families": [family] if family else None, "parameter_size": config.get("parameters", ""),
        "quantization_level": config.get("quantization", ""),
    }  # fmt: skip


class ModelFacts:
    """Per-model-id facts that need the disk: file sizes, projector layers, typed GGUF header."""

    def __init__(self) -> None:
        self._sizes: dict[str, int] = {}
        self._vision: dict[str, bool] = {}
        self._info: dict[tuple[str, bool], dict[str, Any]] = {}

    def size(self, store: ModelStore, model: Model) -> int:
        if model.id not in self._sizes:
            self._sizes[model.id] = sum(_file_size(store, digest) for digest in model.files)
        return self._sizes[model.id]

    def has_projector(self, store: ModelStore, model: Model) -> bool:
        if model.id not in self._vision:
            try:
                layers = json.loads(store.manifest_path(model.id).read_bytes()).get("layers") or []
            except (OSError, ValueError) as exc:
                log.warning("cannot read the manifest of %s: %s", model.id, exc)
                return False
            self._vision[model.id] = any(layer.get("mediaType") == mediatypes.MMPROJ_LAYER for layer in layers)
        return self._vision[model.id]

    def model_info(self, model: Model, verbose: bool) -> dict[str, Any]:
        key = (model.id, verbose)
        if model.format == "diffusers":  # no GGUF header: what its config says
            return {"general.architecture": (model.config or {}).get("architecture", "")}
        if key not in self._info:
            self._info[key] = read_model_info(model.gguf_path, verbose)
        return self._info[key]

    def capabilities(self, store: ModelStore, model: Model) -> frozenset[str]:
        if model.format == "diffusers":  # a diffusers pipeline only makes pictures
            return frozenset({"image"})
        found = {"completion", "embedding"}
        text = template(model)
        if text:
            # Every chat model can call tools in dmr: natively when its template renders tools,
            # else through dmr's generic <tool_call> format (see dmr_core.toolcalls).
            found.add("tools")
        if template_supports_thinking(text):
            found.add("thinking")
        if any(key in _gguf(model) for key in _FIM_KEYS):
            found.add("insert")
        if self.has_projector(store, model):
            found.add("vision")
        return frozenset(found)


def _file_size(store: ModelStore, digest: str) -> int:
    try:
        return os.path.getsize(store.blob_path(digest))
    except (OSError, DmrError):
        return 0


facts = ModelFacts()


def ordered(capabilities: frozenset[str]) -> list[str]:
    return [c for c in _CAPABILITY_ORDER if c in capabilities]


# -- bodies --------------------------------------------------------------------------------------


def tag_rows(store: ModelStore, model: Model) -> list[dict[str, Any]]:
    """One ``/api/tags`` row per tag (an untagged model is listed by its id)."""
    common = {"modified_at": timestamp(model.created), "size": facts.size(store, model),
              "digest": model.id.removeprefix("sha256:"), "details": details(model)}  # fmt: skip
    names = [ollama_name(tag) for tag in model.tags] or [display_name(model)]
    return [{"name": name, "model": name, **common} for name in names]


class TagsCache:
    """The encoded ``/api/tags`` body, rebuilt only when the store's listing changes (UIs poll it)."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._body = b""

    def body(self, store: ModelStore) -> bytes:
        models = store.list_models()
        key = tuple((m.id, m.tags, m.created) for m in models)
        if key != self._key:
            rows = [row for model in models for row in tag_rows(store, model)]
            self._body = dumps({"models": rows}).encode()
            self._key = key
        return self._body


def _parameters_text(num_ctx: int) -> str:
    return f"num_ctx {num_ctx}"


def _modelfile(name: str, model: Model, num_ctx: int) -> str:
    text = template(model)
    lines = [f"# Modelfile generated by dmr for {name}", f"FROM {model.engine_path or model.gguf_path}"]
    if text:
        lines.append(f'TEMPLATE """{text}"""')
    lines.append(f"PARAMETER {_parameters_text(num_ctx)}")
    return "\n".join(lines) + "\n"


def show_body(store: ModelStore, name: str, model: Model, num_ctx: int, verbose: bool) -> dict[str, Any]:
    """``/api/show``; ``model_info`` is required by ollama-python, ``template`` is the Jinja one."""
    body: dict[str, Any] = {
        "modelfile": _modelfile(name, model, num_ctx),
        "parameters": _parameters_text(num_ctx),
        "template": template(model),
        "details": details(model),
        "model_info": facts.model_info(model, verbose),
        "capabilities": ordered(facts.capabilities(store, model)),
        "modified_at": timestamp(model.created),
    }
    license_name = _gguf(model).get("general.license")
    if license_name:
        body["license"] = license_name
    return body


def running_rows(store: ModelStore, pool: dict) -> list[dict]:
    """``/api/ps``: the runners the pool has loaded (or is loading), with their expiry."""
    by_id = {model.id: model for model in store.list_models()}
    devices = {worker["index"]: worker["device"] for worker in pool["workers"]}
    rows = []
    for runner in pool.get("runners", ()):
        model = by_id.get(runner["model_id"])
        if model is not None:
            row = running_row(store, model, runner["context_size"], devices.get(runner["slot"], "cpu") != "cpu")
            row["expires_at"] = _expires_at(runner)
            rows.append(row)
    return rows


def _expires_at(runner: dict) -> str:
    """Ollama's ``expires_at``: last use + keep-alive; far future for forever or while in use."""
    if runner["keep_alive"] < 0 or runner["refs"] > 0:
        return "2318-08-04T00:00:00Z" if runner["keep_alive"] < 0 else timestamp(time.time() + runner["keep_alive"])
    return timestamp(runner["last_used"] + runner["keep_alive"])


def running_row(store: ModelStore, model: Model, context_length: int, on_gpu: bool) -> dict[str, Any]:
    """One ``/api/ps`` row. llama.cpp offloads every layer to a GPU, so there all of it is VRAM."""
    name, size = display_name(model), facts.size(store, model)
    return {"name": name, "model": name, "size": size, "digest": model.id.removeprefix("sha256:"),
            "details": details(model), "size_vram": size if on_gpu else 0,
            "context_length": context_length}  # fmt: skip
