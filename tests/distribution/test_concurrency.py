"""Pulls running at once: the same blob is fetched once and shared; at most two pulls per store."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

from dmr_core.distribution.pull import pull_model
from dmr_core.distribution.slots import MAX_CONCURRENT_PULLS, pull_slot
from dmr_core.store import ModelStore


def _pull_in_child(root: str, name: str, barrier, results) -> None:
    barrier.wait()
    events = list(pull_model(ModelStore(Path(root)), name))
    results.put(events[-1].message)


def test_two_processes_pulling_one_model_both_succeed(pushed, fresh_store) -> None:
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    children = [context.Process(target=_pull_in_child, args=(str(fresh_store.root), pushed.name, barrier, results))
                for _ in range(2)]  # fmt: skip
    for child in children:
        child.start()
    for child in children:
        child.join(120)
    assert [child.exitcode for child in children] == [0, 0]
    messages = sorted(results.get(timeout=5) for _ in children)
    assert messages[-1] == "Model pulled successfully"
    assert messages[0] in {"Model pulled successfully", "Using cached model: 93.81MiB"}

    model = fresh_store.resolve(pushed.name)
    assert model.id == pushed.model.id and model.tags == (pushed.name,)
    blobs = sorted(p.name for p in (fresh_store.root / "blobs" / "sha256").iterdir())
    assert blobs == sorted(digest[7:] for digest in model.files), "each blob once, no partial file left"
    assert len(fresh_store.list_models()) == 1
    assert model.gguf_path.read_bytes() == pushed.model.gguf_path.read_bytes()
    transfers = pushed.registry.blob_transfers(pushed.layer)
    assert sum(written for _, written in transfers) == pushed.size, "the layer crossed the network once"


def test_threads_pulling_one_model_share_the_blob(pushed, fresh_store) -> None:
    outcomes: list[str] = []
    threads = [threading.Thread(target=lambda: outcomes.append(list(pull_model(ModelStore(fresh_store.root),
                                                                               pushed.name))[-1].type))
               for _ in range(2)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert outcomes == ["success", "success"]
    assert sum(written for _, written in pushed.registry.blob_transfers(pushed.layer)) == pushed.size


def test_a_third_pull_waits_for_a_free_slot(pushed, fresh_store) -> None:
    assert MAX_CONCURRENT_PULLS == 2
    holders = [pull_slot(fresh_store.root) for _ in range(MAX_CONCURRENT_PULLS)]
    taken = sorted(holder.__enter__() for holder in holders)
    assert taken == [0, 1]
    first_event: list = []
    waiting = threading.Thread(target=lambda: first_event.append(next(pull_model(fresh_store, pushed.name))))
    try:
        waiting.start()
        time.sleep(1.0)
        assert first_event == [] and waiting.is_alive(), "both slots are taken: the pull must wait"
        holders.pop().__exit__(None, None, None)
        waiting.join(60)
        assert first_event and first_event[0].type == "progress"
    finally:
        for holder in holders:
            holder.__exit__(None, None, None)
        waiting.join(60)


def test_a_slot_is_freed_when_its_pull_ends(pushed, fresh_store) -> None:
    for _ in range(MAX_CONCURRENT_PULLS + 1):
        list(pull_model(fresh_store, pushed.name))
    with pull_slot(fresh_store.root) as first, pull_slot(fresh_store.root) as second:
        assert {first, second} == {0, 1}


def test_a_blob_deleted_before_listing_is_fetched_again(pushed, fresh_store, monkeypatch) -> None:
    real_add_artifact = ModelStore.add_artifact
    listings: list[str | None] = []

    def lose_the_layer_first(self, manifest_bytes, tag=None):
        if not listings:  # what deleting another model that shared the layer does, mid-pull
            self.blob_path(pushed.layer).unlink()
        listings.append(tag)
        return real_add_artifact(self, manifest_bytes, tag)

    monkeypatch.setattr(ModelStore, "add_artifact", lose_the_layer_first)
    events = list(pull_model(fresh_store, pushed.name))

    assert events[-1].message == "Model pulled successfully"
    assert listings == [pushed.name, pushed.name]
    assert fresh_store.resolve(pushed.name).gguf_path.read_bytes() == pushed.model.gguf_path.read_bytes()
    assert [written for _, written in pushed.registry.blob_transfers(pushed.layer)] == [pushed.size, pushed.size]
