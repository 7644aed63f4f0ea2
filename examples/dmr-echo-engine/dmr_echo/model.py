"""The echo engine's "model": a tiny GGUF file (architecture ``echo``) holding two numbers.

dmr's store imports GGUF files, so a toy engine's model is one too: ``echo.context_length`` (the
context window, in words) and ``echo.embedding_length`` (the size of its embedding vectors).
``python -m dmr_echo.model PATH`` writes one.
"""

from __future__ import annotations

import sys
from pathlib import Path

ARCHITECTURE = "echo"


def write_echo_model(path: Path | str, context_length: int = 2048, embedding_length: int = 16) -> Path:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), ARCHITECTURE)
    writer.add_name("echo")
    writer.add_context_length(context_length)
    writer.add_embedding_length(embedding_length)
    # One small tensor, so the file looks like any model to tools that read GGUF headers.
    writer.add_tensor("token_embd.weight", np.zeros((1, embedding_length), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)


def read_echo_model(path: Path | str) -> tuple[int, int]:
    """``(context_length, embedding_length)`` of an echo model; ValueError for any other file."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except (OSError, ValueError) as exc:
        raise ValueError(f"not a GGUF file: {exc}") from exc

    def value(key: str):
        field = reader.fields.get(key)
        return None if field is None else field.contents()

    if value("general.architecture") != ARCHITECTURE:
        raise ValueError(f"not an echo model (architecture {value('general.architecture')!r})")
    return int(value(f"{ARCHITECTURE}.context_length")), int(value(f"{ARCHITECTURE}.embedding_length"))


if __name__ == "__main__":
    print(write_echo_model(sys.argv[1] if len(sys.argv) > 1 else "echo.gguf"))
