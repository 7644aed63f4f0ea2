"""An import that dies half-way must leave no visible model, and must not block the next one."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dmr_core.errors import ModelNotFound
from dmr_core.store import ModelStore
from dmr_core.store.atomicfile import claimed_temp_file, exclusive_lock

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BIG_TENSOR_BYTES = 384 * 2**20


def _growing_blob_temp(blobs: Path, process: subprocess.Popen, total: int) -> int:
    """Wait until the layer is being copied into a blob temp file; return the size seen."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        for temp in blobs.glob("*.tmp") if blobs.is_dir() else ():
            try:
                size = temp.stat().st_size
            except FileNotFoundError:
                continue
            if 4 * 2**20 <= size < total:
                return size
        time.sleep(0.0005)
    pytest.fail(f"never saw the copy in progress (exit code {process.poll()})")


def _store_temps(root: Path) -> list[Path]:
    return sorted(root.rglob("*.tmp"))


def test_import_killed_mid_copy_leaves_no_model(store, store_root, make_gguf) -> None:
    kept = store.import_gguf(make_gguf(), "kept")
    index_before = (store_root / "models.json").read_bytes()
    big = make_gguf("big.gguf", pad_bytes=BIG_TENSOR_BYTES)
    total = big.stat().st_size
    command = [sys.executable, "-m", "dmr_core.cli", "package", "--store", str(store_root), "--gguf", str(big), "big"]
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        seen = _growing_blob_temp(store_root / "blobs" / "sha256", process, total)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert seen < total

    # Nothing of the killed import is visible; its partial blob is only a *.tmp leftover.
    assert (store_root / "models.json").read_bytes() == index_before
    assert ModelStore(store_root).list_models() == [kept]
    with pytest.raises(ModelNotFound):
        ModelStore(store_root).resolve("big")
    leftovers = _store_temps(store_root)
    assert leftovers and all(p.stat().st_size < total for p in leftovers)

    # The next import of the same file succeeds and sweeps the leftover away.
    model = ModelStore(store_root).import_gguf(big, "big")
    assert model.gguf_path.stat().st_size == total
    assert {m.display_name for m in ModelStore(store_root).list_models()} == {"ai/kept:latest", "ai/big:latest"}
    assert _store_temps(store_root) == []


def test_failure_before_the_index_update_is_invisible(store, store_root, make_gguf, monkeypatch) -> None:
    source = make_gguf()

    def crash_while_building_bundle(self, model_id, layer_digest, config):
        (self.bundle_path(model_id).with_name(model_id[7:] + ".tmp") / "model").mkdir(parents=True)
        raise RuntimeError("simulated crash")

    with monkeypatch.context() as patch:
        patch.setattr(ModelStore, "_ensure_bundle", crash_while_building_bundle)
        with pytest.raises(RuntimeError):
            store.import_gguf(source, "m")

    # Blobs and the manifest are on disk, but no index lists them: there is no model.
    assert len(list((store_root / "manifests" / "sha256").iterdir())) == 1
    assert not (store_root / "models.json").exists()
    assert store.list_models() == []
    assert _store_temps(store_root) != []

    model = store.import_gguf(source, "m")
    assert store.list_models() == [model]
    assert model.gguf_path.is_file()
    assert json.loads((model.bundle / "config.json").read_bytes()) == model.config
    assert _store_temps(store_root) == []


def test_leftovers_are_swept_but_live_copies_are_kept(store, store_root, make_gguf) -> None:
    store.import_gguf(make_gguf(), "a")
    blobs = store_root / "blobs" / "sha256"
    dead_blob = blobs / ".dead-import.tmp"
    dead_blob.write_bytes(b"GGUF partial")
    dead_index = store_root / ".models.json.dead.tmp"
    dead_index.write_bytes(b'{"models": [{"id": "broken"')
    dead_bundle = store_root / "bundles" / "sha256" / ("0" * 64 + ".tmp")
    (dead_bundle / "model").mkdir(parents=True)
    assert [m.display_name for m in store.list_models()] == ["ai/a:latest"]  # readers ignore *.tmp

    with claimed_temp_file(blobs) as (handle, live):
        handle.write(b"still copying")
        store.import_gguf(make_gguf("b.gguf", seed=1), "b")
        assert live.exists(), "a temp file still held by its writer must survive the sweep"
        assert not dead_blob.exists() and not dead_index.exists() and not dead_bundle.exists()
    assert not live.exists()
    assert {m.display_name for m in store.list_models()} == {"ai/a:latest", "ai/b:latest"}


def _hold_lock_forever(lock: str, held) -> None:
    with exclusive_lock(Path(lock)):
        held.set()
        time.sleep(600)


def test_lock_of_a_killed_writer_is_released(store, store_root, make_gguf) -> None:
    store.import_gguf(make_gguf(), "a")
    context = multiprocessing.get_context("fork")
    held = context.Event()
    holder = context.Process(target=_hold_lock_forever, args=(str(store_root / ".lock"), held))
    holder.start()
    try:
        assert held.wait(30)
        os.kill(holder.pid, signal.SIGKILL)
    finally:
        holder.join(30)
    assert holder.exitcode == -signal.SIGKILL
    started = time.monotonic()
    store.import_gguf(make_gguf("b.gguf", seed=1), "b")
    assert time.monotonic() - started < 10
    assert store.resolve("b").display_name == "ai/b:latest"
