"""The images dialect's translation, on the bodies the official OpenAI client sends."""

import pytest

from dmr_core.dialects.images import schema, translate
from dmr_core.errors import InvalidRequest
from dmr_core.generation import (
    ImageRequest,
    ImageResult,
    image_request_from_wire,
    image_result_from_wire,
    image_result_to_wire,
    to_wire,
)

# What openai-python's images.generate(model=..., prompt=..., size="64x64", n=2, extra_body={...}) posts.
CLIENT_BODY = {"model": "ai/tiny-sd", "prompt": "a red cat", "n": 2, "size": "64x64", "seed": 3,
               "num_inference_steps": 2, "negative_prompt": "blurry", "guidance_scale": 5.5}  # fmt: skip


def test_a_client_body_becomes_an_image_request():
    job = translate.to_image_request(schema.ImageGenerationRequest.model_validate(CLIENT_BODY))
    assert job == ImageRequest(model_path="", prompt="a red cat", width=64, height=64, n=2, negative_prompt="blurry",
                               num_inference_steps=2, guidance_scale=5.5, seed=3)  # fmt: skip


def test_defaults_are_dmrs():
    job = translate.to_image_request(schema.ImageGenerationRequest.model_validate({"model": "m", "prompt": "p"}))
    assert (job.width, job.height, job.n, job.seed, job.num_inference_steps) == (512, 512, 1, None, None)


@pytest.mark.parametrize(("size", "expected"),
                         [("64x64", (64, 64)), ("1024x768", (1024, 768)), (" 8x4096 ", (8, 4096))])
def test_sizes(size, expected):
    assert translate.parse_size(size) == expected


@pytest.mark.parametrize("size", ["", "64", "64*64", "64X64", "x64", "64x", "0x64", "63x64", "64x4104", "auto"])
def test_bad_sizes(size):
    with pytest.raises(InvalidRequest) as info:
        translate.parse_size(size)
    assert info.value.param == "size"


def test_url_response_format_is_refused():
    req = schema.ImageGenerationRequest.model_validate({**CLIENT_BODY, "response_format": "url"})
    with pytest.raises(InvalidRequest, match="only 'b64_json'"):
        translate.to_image_request(req)


def test_the_response_is_openais_shape():
    body = translate.image_response(ImageResult((b"\x89PNG one", b"\x89PNG two")), created=7)
    assert body == {"created": 7, "data": [{"b64_json": "iVBORyBvbmU="}, {"b64_json": "iVBORyB0d28="}]}


def test_image_jobs_cross_the_pool_socket_intact():
    job = ImageRequest("/m", "p", 64, 72, n=3, negative_prompt="n", num_inference_steps=2, guidance_scale=1.5, seed=9)
    assert image_request_from_wire(to_wire(job)) == job
    result = ImageResult((b"\x00\xff", b""))
    assert image_result_from_wire(image_result_to_wire(result)) == result
