"""An image model goes through a registry like any model: ``dmr package`` → ``dmr push`` → a server
with an empty store of its own pulls it (every blob from the registry) → it generates the same
pictures as the original."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dmr_core.testing import short_tempdir, start_server, stop_server
from tests.images.conftest import FOLDER_MODEL, generate, post

DMR = str(Path(sys.executable).parent / "dmr")


def dmr(*args: str) -> None:
    done = subprocess.run([DMR, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("form", ["diffusers", "dduf"])
def test_package_push_pull_then_generate(images_server, registry, tiny_diffusers_dir, tiny_dduf, form):
    name = f"{registry.host}/ai/tiny-sd-{form}:pushed"
    source = tiny_diffusers_dir if form == "diffusers" else tiny_dduf
    store = short_tempdir("dmr-package-")
    dmr("package", f"--{form}", str(source), name, "--store", str(store))
    dmr("push", name, "--store", str(store))
    server = start_server(short_tempdir("dmr-empty-store-"), DMR_THREADS="1")  # as images_server: same bytes
    try:
        pulled = post(server, "/models/create", {"from": name}, headers={"Accept": "application/json"})
        events = [json.loads(line) for line in pulled.text.splitlines() if line]
        assert events[-1]["type"] == "success", pulled.text
        assert any(e["type"] == "progress" for e in events), "every blob should come from the registry"
        pictures = generate(server, {"model": name, "seed": 8})
    finally:
        stop_server(server)
    assert pictures == generate(images_server, {"model": FOLDER_MODEL, "seed": 8})
