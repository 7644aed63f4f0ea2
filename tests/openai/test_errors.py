"""Every error in OpenAI's shape with DMR's statuses; never a 500, never a traceback."""

import json

import openai
import pytest
import requests

CHAT = "/engines/v1/chat/completions"
HI = [{"role": "user", "content": "Hi"}]


def post(server, path, body, **kwargs):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(server.url + path, data=data, headers={"Content-Type": "application/json"}, **kwargs)


def assert_openai_error(response, status, param=None, code=None):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and "Traceback" not in error["message"]
    if param is not None:
        assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    return error


def test_missing_model_is_400(dmr_server):
    error = assert_openai_error(post(dmr_server, CHAT, {"messages": HI}), 400, param="model")
    assert error["message"] == "model is required"


def test_model_not_in_store_is_404_without_pull(dmr_server, openai_client):
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.chat.completions.create(model="ai/llama3.2", messages=HI)
    assert caught.value.code == "model_not_found"
    assert "ai/llama3.2" in caught.value.message


def test_unknown_engine_is_404(dmr_server):
    assert_openai_error(post(dmr_server, "/engines/nope/v1/chat/completions", {"model": "ai/smollm2", "messages": HI}),
                        404, code="engine_not_found")  # fmt: skip


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]", b"\xff\xfe"])
def test_malformed_body_is_400(dmr_server, body):
    assert_openai_error(post(dmr_server, CHAT, body), 400)


def test_body_over_10_mib_is_rejected(dmr_server):
    big = {"model": "ai/smollm2", "messages": [{"role": "user", "content": "x" * (10 * 1024 * 1024 + 10)}]}
    error = assert_openai_error(post(dmr_server, CHAT, big), 413, code="request_too_large")
    assert "too large" in error["message"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("temperature", 3), ("temperature", "hot"), ("top_p", 1.5), ("max_tokens", 0), ("max_tokens", -5),
     ("presence_penalty", 9), ("frequency_penalty", -3), ("stop", ["a", "b", "c", "d", "e"]), ("seed", "x"),
     ("messages", []), ("stream", "maybe")],
)  # fmt: skip
def test_bad_parameter_values_are_400_naming_the_parameter(dmr_server, field, value):
    body = {"model": "ai/smollm2", "messages": HI, field: value}
    error = assert_openai_error(post(dmr_server, CHAT, body), 400, param=field)
    assert field in error["message"]


def test_bad_message_role_names_the_message(dmr_server):
    body = {"model": "ai/smollm2", "messages": [{"role": "wizard", "content": "hi"}]}
    assert_openai_error(post(dmr_server, CHAT, body), 400, param="messages[0].role")


@pytest.mark.parametrize(
    ("field", "value"),
    [("modalities", ["text", "audio"]),
     ("response_format", {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integer", "minimum": 1}}})],
)  # fmt: skip
def test_unsupported_features_are_400_saying_so(openai_client, field, value):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model="ai/smollm2", messages=HI, **{field: value})
    assert caught.value.param == field
    assert "not supported" in caught.value.message


def test_image_content_on_text_model_is_400(openai_client):
    content = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model="ai/smollm2", messages=[{"role": "user", "content": content}])
    assert "this model does not support images" in caught.value.message
    assert caught.value.param == "messages[0].content"


def test_stream_options_without_stream_is_400(dmr_server):
    body = {"model": "ai/smollm2", "messages": HI, "stream_options": {"include_usage": True}}
    assert_openai_error(post(dmr_server, CHAT, body), 400, param="stream_options")


def test_streamed_request_errors_before_the_stream_starts(dmr_server):
    body = {"model": "ai/missing", "messages": HI, "stream": True}
    response = post(dmr_server, CHAT, body)
    assert_openai_error(response, 404, code="model_not_found")


def test_completion_prompt_outside_the_vocabulary_is_400(dmr_server):
    body = {"model": "ai/smollm2", "prompt": [1, 2, 999999]}
    error = assert_openai_error(post(dmr_server, "/v1/completions", body), 400, param="prompt")
    assert "999999" in error["message"]


def test_completion_prompt_mixing_ids_and_text_in_one_list_is_400(dmr_server):
    # llama.cpp concatenates such a list into one prompt; OpenAI's schema has no such form.
    body = {"model": "ai/smollm2", "prompt": [1, "two", 3]}
    assert_openai_error(post(dmr_server, "/v1/completions", body), 400)


def test_wrong_method_and_unknown_path(dmr_server):
    assert_openai_error(requests.delete(dmr_server.url + CHAT), 405)
    assert_openai_error(requests.get(dmr_server.url + "/v1/nothing-here"), 404)


def test_context_overflow_is_400_context_length_exceeded(dmr_server):
    long_prompt = "word " * 6000  # over the 4096-token default context window
    body = {"model": "ai/smollm2", "messages": [{"role": "user", "content": long_prompt}], "max_tokens": 4}
    assert_openai_error(post(dmr_server, CHAT, body), 400, code="context_length_exceeded")
