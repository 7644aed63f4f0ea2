"""Writing a GGUF file with the ``gguf`` package: the common step of every tiny test model here."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_gguf(path: Path | str, arch: str, describe, tensors: dict[str, np.ndarray]) -> Path:
    """Write a GGUF file: ``describe(writer)`` adds the metadata, then the tensors follow."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    describe(writer)
    for name, tensor in tensors.items():
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)
