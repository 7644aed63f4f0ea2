"""Every refusal of the images API is a 400 (404 for an unknown model) in OpenAI's error shape,
naming the problem, through the raw API and the official client."""

import openai
import pytest

from tests.images.conftest import DIFFUSERS_PREFIX, FOLDER_MODEL, GGUF_MODEL, SMALL, post

URL = DIFFUSERS_PREFIX + "/images/generations"


def refused(server, body, path=URL, status=400):
    reply = post(server, path, body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    return error


@pytest.mark.parametrize(("size", "words"), [
    ("big", "expected WIDTHxHEIGHT"), ("64", "expected WIDTHxHEIGHT"), ("64x64x3", "expected WIDTHxHEIGHT"),
    ("-64x64", "expected WIDTHxHEIGHT"), ("65x64", "multiples of 8"), ("64x0", "multiples of 8"),
    ("8192x64", "at most 4096"), ("264x64", "too large for this model"), ("512x512", "at most 256x256"),
])  # fmt: skip
def test_bad_sizes(images_server, size, words):
    error = refused(images_server, {"model": FOLDER_MODEL, "prompt": "x", **SMALL, "size": size})
    assert words in error["message"] and error["param"] == "size"


@pytest.mark.parametrize("n", [0, 11, -1])
def test_n_out_of_range(images_server, n):
    error = refused(images_server, {"model": FOLDER_MODEL, "prompt": "x", **SMALL, "n": n})
    assert error["param"] == "n"


def test_url_response_format_is_refused(images_server):
    error = refused(images_server, {"model": FOLDER_MODEL, "prompt": "x", **SMALL, "response_format": "url"})
    assert "only 'b64_json' is served" in error["message"] and error["param"] == "response_format"


@pytest.mark.parametrize(("field", "value"), [("prompt", ""), ("prompt", 3), ("num_inference_steps", 0),
                                              ("guidance_scale", -1), ("seed", -5), ("size", 512)])  # fmt: skip
def test_bad_fields(images_server, field, value):
    error = refused(images_server, {"model": FOLDER_MODEL, "prompt": "x", **SMALL, field: value})
    assert error["param"] == field


def test_missing_prompt(images_server):
    assert refused(images_server, {"model": FOLDER_MODEL})["message"] == "prompt is required"


def test_a_gguf_model_sent_to_diffusers(images_server):
    error = refused(images_server, {"model": GGUF_MODEL, "prompt": "x", **SMALL})
    assert "gguf model, which engine diffusers cannot load" in error["message"] and error["param"] == "model"


def test_a_gguf_model_sent_to_the_images_api_without_an_engine(images_server):
    error = refused(images_server, {"model": GGUF_MODEL, "prompt": "x", **SMALL}, path="/v1/images/generations")
    assert "engine llama.cpp does not support image generation" in error["message"]


@pytest.mark.parametrize(("path", "body"), [
    ("/engines/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/completions", {"prompt": "hi"}),
    ("/engines/v1/embeddings", {"input": "hi"}),
    ("/engines/diffusers/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
])  # fmt: skip
def test_a_diffusers_model_sent_to_text_apis(images_server, path, body):
    error = refused(images_server, {"model": FOLDER_MODEL, **body}, path=path)
    assert "does not support" in error["message"] and "generates images" in error["message"]


def test_a_diffusers_model_sent_to_llamacpp(images_server):
    error = refused(images_server, {"model": FOLDER_MODEL, "messages": [{"role": "user", "content": "hi"}]},
                    path="/engines/llama.cpp/v1/chat/completions")  # fmt: skip
    assert "diffusers model, which engine llama.cpp cannot load" in error["message"]


def test_unknown_model_is_a_404(images_server):
    reply = post(images_server, URL, {"model": "ai/nothing-here", "prompt": "x", **SMALL})
    assert reply.status_code == 404 and reply.json()["error"]["message"]


def test_the_official_client_raises_bad_request(images_client):
    with pytest.raises(openai.BadRequestError) as info:
        images_client.images.generate(model=FOLDER_MODEL, prompt="x", size="65x64")
    assert info.value.body["param"] == "size" and "multiples of 8" in info.value.body["message"]
