"""What ctransformers needs to know about a model file, read *before* the native library sees it.

ctransformers 0.2.27 bundles a llama.cpp from September 2023 (GGUF) and the older ggml model
loaders (GGML-era files). Its native code aborts the process, or corrupts memory, on files it
does not understand, so every check that can be made in Python is made here, and a file that
would fail is refused with :class:`~dmr_core.errors.ModelLoadFailed` naming the reason:

- GGUF: only the ``llama`` architecture (LLaMA, Llama 2, Mistral, ...) with a SentencePiece
  tokenizer (``tokenizer.ggml.model == "llama"``). Its llama.cpp cannot load BPE vocabularies
  (``gpt2``: SmolLM2, Llama 3, Qwen, ...), and knows no tensor type newer than the k-quants.
- GGML (``ggml``/``ggmf``/``ggjt`` magic): the file carries no architecture, so the model type
  comes from the bundle's ``config.json`` (``architecture`` or ``model_type``) beside ``model/``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from dmr_core.errors import ModelLoadFailed

#: ctransformers' model types for GGML-era files (its README's table), by the names people use.
GGML_MODEL_TYPES = {
    "gpt2": "gpt2", "gptj": "gptj", "gpt-j": "gptj", "gpt4all-j": "gptj", "gpt_neox": "gpt_neox",
    "gptneox": "gpt_neox", "gpt-neox": "gpt_neox", "dolly-v2": "dolly-v2", "falcon": "falcon",
    "llama": "llama", "mpt": "mpt", "replit": "replit", "starcoder": "starcoder",
    "gpt_bigcode": "starcoder", "bigcode": "starcoder",
}  # fmt: skip
#: GGUF architectures whose loader ctransformers' llama.cpp has *and* that use SentencePiece.
GGUF_ARCHITECTURES = {"llama": "llama"}
#: GGUF v2 and v3 have the same little-endian layout (v3 only added big-endian files). The bundled
#: reader does not check the version: a v4 header would be read as v3, so it is refused here.
GGUF_VERSIONS = {2, 3}
#: GGML tensor types up to Q8_K (the k-quants): all that llama.cpp knew in September 2023.
MAX_TENSOR_TYPE = 15
_GGUF_MAGIC = b"GGUF"
_GGML_MAGICS = {b"lmgg", b"fmgg", b"tjgg", b"algg"}  # 'ggml', 'ggmf', 'ggjt', 'ggla' as little-endian uint32


@dataclass(frozen=True)
class ModelFile:
    """:ivar model_type: what to pass to ctransformers; ``context_length``: the trained window (0 if
    unknown); ``chat_template``: jinja2 source or None; ``bos``/``eos``: those tokens' text."""

    format: str
    model_type: str
    context_length: int = 0
    chat_template: str | None = None
    bos: str = ""
    eos: str = ""


def inspect(path: str | Path) -> ModelFile:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ModelLoadFailed(f"cannot read {path}: {exc}") from exc
    if magic == _GGUF_MAGIC:
        return _inspect_gguf(path)
    if magic in _GGML_MAGICS:
        return _inspect_ggml(path)
    raise ModelLoadFailed(f"{path} is neither a GGUF nor a GGML model file")


def _inspect_gguf(path: Path) -> ModelFile:
    from gguf import GGUFReader

    version = gguf_version(path)
    if version not in GGUF_VERSIONS:
        raise ModelLoadFailed(f"ctransformers 0.2.27 reads GGUF versions 2 and 3; {path} is version {version}")
    try:
        reader = GGUFReader(path)
    except Exception as exc:  # the gguf package raises ValueError, struct.error, ... on bad files
        raise ModelLoadFailed(f"cannot read the GGUF header of {path}: {exc}") from exc

    def value(key: str, default=None):
        field = reader.fields.get(key)
        return default if field is None else field.contents()

    architecture = value("general.architecture", "")
    tokenizer = value("tokenizer.ggml.model", "")
    if tokenizer != "llama":
        raise ModelLoadFailed(
            f"ctransformers 0.2.27 cannot load this model: its tokenizer is {tokenizer or 'missing'!r} "
            f"(BPE), and ctransformers' bundled llama.cpp reads only SentencePiece ('llama') GGUF "
            f"vocabularies; serve it with the llama.cpp engine"
        )
    if architecture not in GGUF_ARCHITECTURES:
        raise ModelLoadFailed(
            f"ctransformers 0.2.27 cannot load GGUF architecture {architecture!r} "
            f"(supported: {', '.join(sorted(GGUF_ARCHITECTURES))}); serve it with the llama.cpp engine"
        )
    newer = sorted({t.tensor_type.name for t in reader.tensors if int(t.tensor_type) > MAX_TENSOR_TYPE})
    if newer:
        raise ModelLoadFailed(f"ctransformers 0.2.27 cannot load tensor types {', '.join(newer)}")
    tokens = reader.fields.get("tokenizer.ggml.tokens")

    def token_text(key: str) -> str:
        index = value(key)
        if tokens is None or index is None or not 0 <= index < len(tokens.data):
            return ""
        return bytes(tokens.parts[tokens.data[index]]).decode(errors="replace")

    return ModelFile(
        format="gguf",
        model_type=GGUF_ARCHITECTURES[architecture],
        context_length=int(value(f"{architecture}.context_length", 0) or 0),
        chat_template=value("tokenizer.chat_template"),
        bos=token_text("tokenizer.ggml.bos_token_id"),
        eos=token_text("tokenizer.ggml.eos_token_id"),
    )


def _inspect_ggml(path: Path) -> ModelFile:
    named = None
    for config in (path.parent.parent / "config.json", path.parent / "config.json"):
        if config.is_file():
            try:
                data = json.loads(config.read_text())
            except (OSError, ValueError):
                continue
            named = data.get("architecture") or data.get("model_type")
            if named:
                break
    model_type = GGML_MODEL_TYPES.get(str(named or "").lower())
    if model_type is None:
        known = ", ".join(sorted(set(GGML_MODEL_TYPES.values())))
        raise ModelLoadFailed(
            f"GGML model {path} has no known architecture ({named!r}); the bundle's config.json must "
            f"name one of: {known}"
        )
    return ModelFile(format="ggml", model_type=model_type)


def gguf_version(path: str | Path) -> int:
    with open(path, "rb") as f:
        magic, version = struct.unpack("<4sI", f.read(8))
    return version if magic == _GGUF_MAGIC else 0
