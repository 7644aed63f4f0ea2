"""A registry killed mid-pull leaves no model, and the next pull fetches only the missing bytes."""

from __future__ import annotations

import os
import time

import pytest

from dmr_core.distribution.download import STALE_INCOMPLETE_SECONDS, remove_stale_partials
from dmr_core.distribution.pull import pull_model
from dmr_core.errors import DigestMismatch, RegistryUnreachable
from dmr_core.store import ModelStore
from tests.support.registry import kill_registry_mid_transfer

CUT_AFTER = 20 * 2**20


def test_killed_registry_then_resumed_pull(pushed, fresh_store) -> None:
    seen, error = kill_registry_mid_transfer(pushed.registry, pull_model(fresh_store, pushed.name), CUT_AFTER)

    assert isinstance(error, RegistryUnreachable), error
    assert error.status == 502 and "broke off" in error.message
    assert all(event.type == "progress" for event in seen)
    assert ModelStore(fresh_store.root).list_models() == []
    assert not fresh_store.blob_path(pushed.layer).exists()
    partial = fresh_store.incomplete_path(pushed.layer)
    kept = partial.stat().st_size
    assert CUT_AFTER <= kept < pushed.size

    pushed.registry.start()
    events = list(pull_model(fresh_store, pushed.name))

    assert events[-1].message == "Model pulled successfully"
    assert events[0].layer.current > kept, "progress starts where the partial file ended"
    model = fresh_store.resolve(pushed.name)
    assert model.id == pushed.model.id
    assert model.gguf_path.read_bytes() == pushed.model.gguf_path.read_bytes()
    assert not partial.exists()
    status, written = pushed.registry.blob_transfers(pushed.layer)[-1]
    assert status == 206, "the second pull asked for a range"
    assert written == pushed.size - kept < pushed.size


def test_a_corrupt_partial_file_is_refetched_whole(pushed, fresh_store) -> None:
    seen, error = kill_registry_mid_transfer(pushed.registry, pull_model(fresh_store, pushed.name), CUT_AFTER)
    assert isinstance(error, RegistryUnreachable)
    partial = fresh_store.incomplete_path(pushed.layer)
    with partial.open("r+b") as handle:
        handle.write(b"garbage!")
    pushed.registry.start()

    with pytest.raises(DigestMismatch, match="do not match its digest"):
        list(pull_model(fresh_store, pushed.name))
    assert not partial.exists() and fresh_store.list_models() == []

    assert list(pull_model(fresh_store, pushed.name))[-1].message == "Model pulled successfully"
    assert fresh_store.resolve(pushed.name).gguf_path.read_bytes() == pushed.model.gguf_path.read_bytes()


def test_abandoned_pull_keeps_its_partial_file(pushed, fresh_store) -> None:
    events = pull_model(fresh_store, pushed.name)
    for event in events:
        if event.layer.current >= CUT_AFTER:
            break
    events.close()  # the client went away

    partial = fresh_store.incomplete_path(pushed.layer)
    assert CUT_AFTER <= partial.stat().st_size < pushed.size
    assert fresh_store.list_models() == []
    assert list(pull_model(fresh_store, pushed.name))[-1].message == "Model pulled successfully"


def test_week_old_partial_files_are_removed(fresh_store) -> None:
    fresh_store.ensure_layout()
    old, recent = fresh_store.incomplete_path("sha256:" + "a" * 64), fresh_store.incomplete_path("sha256:" + "b" * 64)
    old.write_bytes(b"old")
    recent.write_bytes(b"recent")
    week_ago = time.time() - STALE_INCOMPLETE_SECONDS - 60
    os.utime(old, (week_ago, week_ago))

    remove_stale_partials(fresh_store)

    assert not old.exists() and recent.exists()
