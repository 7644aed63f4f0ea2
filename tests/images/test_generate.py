"""Pictures through the real server: the official OpenAI client, every URL, n, size, seeds, both model forms."""

import base64
import json
import time
from pathlib import Path

import pytest
import requests

from dmr_core.testing import wait_until
from tests.images.conftest import DDUF_MODEL, FOLDER_MODEL, decoded, generate, post


def test_openai_client_images_generate(images_client):
    response = images_client.images.generate(model=FOLDER_MODEL, prompt="a red cat", size="64x64",
                                             extra_body={"num_inference_steps": 2, "seed": 3})  # fmt: skip
    assert isinstance(response.created, int) and len(response.data) == 1
    image = decoded(base64.b64decode(response.data[0].b64_json))
    assert image.format == "PNG" and image.size == (64, 64) and image.mode == "RGB"


@pytest.mark.parametrize("path", ["/engines/diffusers/v1", "/engines/v1", "/v1"])
def test_every_url_serves_pictures(images_server, path):
    (png,) = generate(images_server, {"seed": 5}, path=path + "/images/generations")
    assert decoded(png).size == (64, 64)


def test_n_pictures_of_the_requested_size(images_server):
    pngs = generate(images_server, {"n": 3, "size": "80x64", "seed": 9})
    assert [decoded(png).size for png in pngs] == [(80, 64)] * 3
    assert len(set(pngs)) == 3


def test_the_same_seed_gives_identical_bytes_and_another_seed_other_pictures(images_server):
    first, again, other = (generate(images_server, {"seed": seed}) for seed in (11, 11, 12))
    assert first == again and first != other


def test_no_seed_draws_a_new_one_each_time(images_server):
    assert generate(images_server, {}) != generate(images_server, {})


def test_a_dduf_model_makes_the_folder_models_pictures(images_server):
    """Both forms hold the same weights: the same seed gives the same bytes from either."""
    assert generate(images_server, {"model": DDUF_MODEL, "seed": 21}) == generate(images_server, {"seed": 21})


def test_prompt_options_change_the_picture(images_server):
    plain = generate(images_server, {"seed": 4})
    assert generate(images_server, {"seed": 4, "negative_prompt": "blurry"}) != plain
    assert generate(images_server, {"seed": 4, "guidance_scale": 1.0}) != plain


def test_ps_shows_an_image_runner_which_unloads_like_any(images_server):
    generate(images_server, {"seed": 1})
    rows = requests.get(images_server.url + "/engines/ps", timeout=30).json()
    assert {"backend_name": "diffusers", "model_name": FOLDER_MODEL, "mode": "image-generation"}.items() <= next(
        r for r in rows if r["model_name"] == FOLDER_MODEL).items()  # fmt: skip
    unloaded = post(images_server, "/engines/unload", {"models": [FOLDER_MODEL]})
    assert unloaded.status_code == 200 and unloaded.json()["unloaded_runners"] >= 1
    rows = requests.get(images_server.url + "/engines/ps", timeout=30).json()
    assert FOLDER_MODEL not in [r["model_name"] for r in rows]


def test_the_memory_estimate_is_the_size_of_the_models_files(images_server):
    from dmr_core.pool.client import PoolClient
    from dmr_core.store.layout import ModelStore

    generate(images_server, {"seed": 2})
    runners = PoolClient(images_server.pool_dir, connect_timeout=10).call_supervisor({"op": "runners"})
    (runner,) = [r for r in runners if r["model_name"] == FOLDER_MODEL]
    folder = ModelStore(images_server.store).resolve(FOLDER_MODEL).engine_path
    assert runner["memory"] == sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) > 0


def test_keep_alive_zero_unloads_after_the_job(images_server):
    configured = post(images_server, "/engines/_configure", {"model": DDUF_MODEL, "mode": "image-generation",
                                                             "keep_alive": "0"})  # fmt: skip
    assert configured.status_code == 202, configured.text
    generate(images_server, {"model": DDUF_MODEL, "seed": 1})

    def unloaded():
        return DDUF_MODEL not in [r["model_name"] for r in requests.get(images_server.url + "/engines/ps").json()]

    assert wait_until(unloaded, timeout=10)


def test_status_lists_the_diffusers_engine(images_server):
    status = requests.get(images_server.url + "/engines/status", timeout=30)
    assert status.status_code == 200 and "diffusers" in status.text


def test_small_request_body_defaults(images_server):
    """Only model and prompt: DMR's 512x512 default, refused for this 64x64 model (too large)."""
    reply = post(images_server, "/v1/images/generations", {"model": FOLDER_MODEL, "prompt": "x"})
    assert reply.status_code == 400 and "512x512" in reply.json()["error"]["message"]


def maps_torch(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def test_only_the_inference_worker_maps_torch(images_server):
    generate(images_server, {"seed": 1})
    web = images_server.web_worker_pids()
    assert web and not any(maps_torch(pid) for pid in web + [images_server.process.pid])
    worker = images_server.pool_status()["workers"][0]
    assert maps_torch(worker["pid"])  # the check sees torch where it is loaded


def test_the_worker_reports_how_torch_runs(images_server):
    generate(images_server, {"seed": 1})
    models = images_server.worker_stats()["models"]
    settings = [m["settings"] for m in models if m["mode"] == "image-generation"]
    assert settings and settings[0] == {"device": "cpu", "dtype": "float32", "threads": 1, "native_size": "64x64",
                        "pipeline": "StableDiffusionPipeline"}  # fmt: skip


def test_preload_only_loads_the_image_runner(images_server):
    post(images_server, "/engines/unload", {"all": True})
    reply = post(images_server, "/v1/images/generations", {"model": FOLDER_MODEL, "prompt": "x"},
                 headers={"X-Preload-Only": "true"})  # fmt: skip
    assert reply.status_code == 200 and reply.content == b""
    rows = requests.get(images_server.url + "/engines/ps", timeout=30).json()
    assert [(r["model_name"], r["mode"]) for r in rows] == [(FOLDER_MODEL, "image-generation")]
    refused = post(images_server, "/engines/diffusers/v1/images/generations", {"model": "ai/smollm2", "prompt": "x"},
                   headers={"X-Preload-Only": "true"})  # fmt: skip
    assert refused.status_code == 400 and "cannot load" in refused.json()["error"]["message"]


def test_a_client_that_leaves_cancels_its_pictures(images_server):
    """500 steps at 256x256 would take a minute here; the worker stops within a step of the client leaving."""
    import socket

    generate(images_server, {"seed": 1})  # loaded: the job starts at once
    before = images_server.worker_stats()["jobs"]["cancelled"]
    body = json.dumps({"model": FOLDER_MODEL, "prompt": "x", "size": "256x256", "num_inference_steps": 500}).encode()
    with socket.create_connection(("127.0.0.1", images_server.port)) as client:
        client.sendall(b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
        assert wait_until(lambda: images_server.worker_stats()["jobs"]["running"] == 1, timeout=10)
    left = time.monotonic()
    assert wait_until(lambda: images_server.worker_stats()["jobs"]["cancelled"] == before + 1, timeout=20)
    assert time.monotonic() - left < 10 and images_server.worker_stats()["jobs"]["running"] == 0
