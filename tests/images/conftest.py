"""A server whose store holds the tiny random Stable Diffusion pipeline twice (a diffusers folder
and a DDUF file of the same weights) and the default GGUF model (for the wrong-model errors)."""

import base64
import io

import pytest
import requests

from dmr_core.store.layout import ModelStore
from dmr_core.testing import openai_client_for, short_tempdir, start_server, stop_server
from tests.support.tiny_diffusers import TEST_STEPS, tiny_dduf, tiny_diffusers_dir  # noqa: F401 (fixtures)

FOLDER_MODEL = "ai/tiny-sd"
DDUF_MODEL = "ai/tiny-sd-dduf"
GGUF_MODEL = "ai/smollm2"
DIFFUSERS_PREFIX = "/engines/diffusers/v1"
#: A picture request that runs the whole pipeline in tens of milliseconds.
SMALL = {"size": "64x64", "num_inference_steps": TEST_STEPS}


@pytest.fixture(scope="session")
def images_server(smollm2_gguf, tiny_diffusers_dir, tiny_dduf):
    root = short_tempdir("dmr-images-store-")
    store = ModelStore(root)
    store.import_gguf(smollm2_gguf, GGUF_MODEL)
    store.import_diffusers(tiny_diffusers_dir, FOLDER_MODEL)
    store.import_dduf(tiny_dduf, DDUF_MODEL)
    server = start_server(root, DMR_THREADS="1")  # torch on one thread: steady on a small shared machine
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="session")
def images_client(images_server):
    """The official OpenAI client (strict response validation) on DMR's diffusers URL."""
    return openai_client_for(images_server, DIFFUSERS_PREFIX)


def post(server, path, body, **kwargs):
    return requests.post(server.url + path, json=body, timeout=120, **kwargs)


def generate(server, body, path=DIFFUSERS_PREFIX + "/images/generations"):
    """The PNG files' bytes of one successful request."""
    reply = post(server, path, {"model": FOLDER_MODEL, "prompt": "a red cat", **SMALL, **body})
    assert reply.status_code == 200, reply.text
    return [base64.b64decode(item["b64_json"], validate=True) for item in reply.json()["data"]]


def decoded(png: bytes):
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    image.load()
    return image
