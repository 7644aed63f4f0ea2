"""A missing model pulled on first use (``pull_on_demand``), against a real registry used as the
Docker Hub mirror; and the 404 when the setting is off, or when the registry lacks the model too."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from dmr_core.distribution.on_demand import can_pull
from dmr_core.errors import ModelNotFound
from dmr_core.missing_models import find_model
from dmr_core.settings import load_settings
from dmr_core.store.layout import ModelStore

#: Four requests at once for the same missing model, as a burst reaching one host would be.
CONCURRENT = 4
LIMIT_S = 60


def _settings(registry, **changes):
    return load_settings(registry_mirrors=registry.url, pull_on_demand=True, **changes)


def test_concurrent_requests_for_a_missing_model_wait_on_one_pull(registry, tiny_models, tmp_path: Path) -> None:
    tiny, _ = tiny_models
    tiny.publish(registry, "ai/scale-a")
    store, settings = ModelStore(tmp_path / "host"), _settings(registry)
    found, failures = [], []

    def request() -> None:
        try:
            found.append(find_model(ModelStore(store.root), "ai/scale-a", settings).id)
        except Exception as exc:  # the assertion below shows it
            failures.append(exc)

    threads = [threading.Thread(target=request) for _ in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LIMIT_S)
    assert not failures and found == [tiny.model.id] * CONCURRENT
    for blob in tiny.blobs():
        assert [status for status, _ in registry.blob_transfers(blob)] == [200], f"{blob} served more than once"
    manifests = [line for line in registry.log_path.read_text().splitlines() if "/manifests/latest" in line
                 and '"GET"' in line]  # fmt: skip
    assert len(manifests) == 1, "the requests that waited found the model stored, without asking the registry"
    assert store.resolve("docker.io/ai/scale-a:latest").id == tiny.model.id, "stored under its Docker Hub name"


def test_off_by_default_a_missing_model_is_a_404(registry, tiny_models, tmp_path: Path) -> None:
    tiny, _ = tiny_models
    tiny.publish(registry, "ai/scale-a")
    assert load_settings().pull_on_demand is False
    with pytest.raises(ModelNotFound, match="model ai/scale-a not found"):
        find_model(ModelStore(tmp_path / "host"), "ai/scale-a", load_settings(registry_mirrors=registry.url))
    assert not any(registry.blob_transfers(blob) for blob in tiny.blobs())


def test_a_model_the_registry_lacks_is_still_a_404(registry, tmp_path: Path) -> None:
    name = f"{registry.host}/ai/nowhere"  # the registry's own name: Docker Hub itself cannot be reached here
    with pytest.raises(ModelNotFound, match=f"model {name} not found") as caught:
        find_model(ModelStore(tmp_path / "host"), name, _settings(registry))
    assert type(caught.value) is ModelNotFound, "no peer is configured, so none is named"


@pytest.mark.parametrize(("name", "pullable"), [
    ("ai/x", True), ("x:1", True), ("127.0.0.1:5000/a/b@sha256:" + "a" * 64, True),  # references
    ("sha256:" + "a" * 64, False), ("a" * 64, False), ("Bad Name", False),  # model ids, and no name at all
])  # fmt: skip
def test_only_references_are_pulled(name: str, pullable: bool) -> None:
    assert can_pull(name) is pullable
