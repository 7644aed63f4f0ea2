"""Every error in Anthropic's envelope with the right status and type; never a traceback."""

import json

import anthropic
import pytest
import requests

MODEL = "ai/smollm2"
HI = [{"role": "user", "content": "Hi"}]


def post(server, path, body, **kwargs):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    headers = {"Content-Type": "application/json"}
    return requests.post(server.url + path, data=data, headers=headers, timeout=120, **kwargs)


def assert_anthropic_error(response, status, kind):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"type", "error", "request_id"} and body["type"] == "error"
    assert body["error"]["type"] == kind
    assert body["error"]["message"] and "Traceback" not in body["error"]["message"]
    assert body["request_id"].startswith("req_") and response.headers["request-id"] == body["request_id"]
    return body["error"]["message"]


def test_missing_max_tokens(client):
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=MODEL, messages=HI, max_tokens=anthropic.omit)
    assert info.value.body["error"] == {"type": "invalid_request_error", "message": "max_tokens is required"}


def test_unknown_model_is_not_found(client):
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="ai/llama3.2", messages=HI, max_tokens=4)
    assert info.value.body["error"]["type"] == "not_found_error"
    assert "ai/llama3.2" in info.value.body["error"]["message"]


def test_unknown_model_when_streaming_is_an_http_error(client):
    with pytest.raises(anthropic.NotFoundError):
        with client.messages.stream(model="ai/llama3.2", messages=HI, max_tokens=4) as stream:
            stream.get_final_message()


def test_unknown_model_in_count_tokens(client):
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="ai/llama3.2", messages=HI)


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]"])
@pytest.mark.parametrize(
    "path", ["/v1/messages", "/anthropic/v1/messages/count_tokens", "/engines/llama.cpp/v1/messages"]
)
def test_malformed_body(dmr_server, body, path):
    assert_anthropic_error(post(dmr_server, path, body), 400, "invalid_request_error")


def test_server_tool_is_rejected(client):
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=MODEL, messages=HI, max_tokens=4,
                               tools=[{"type": "web_search_20250305", "name": "web_search"}])  # fmt: skip
    assert "web_search_20250305" in info.value.body["error"]["message"]


def test_document_block_is_rejected(client):
    document = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hi"}}
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=MODEL, max_tokens=4, messages=[{"role": "user", "content": [document]}])
    assert "document" in info.value.body["error"]["message"]


def test_body_over_10_mib_is_413(dmr_server):
    big = {"model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "x" * (10 * 1024 * 1024 + 10)}]}
    message = assert_anthropic_error(post(dmr_server, "/anthropic/v1/messages", big), 413, "request_too_large")
    assert "too large" in message


def test_unknown_engine_is_anthropic_shaped(dmr_server):
    response = post(dmr_server, "/engines/nope/v1/messages", {"model": MODEL, "messages": HI, "max_tokens": 4})
    assert_anthropic_error(response, 404, "not_found_error")


@pytest.mark.parametrize("path", ["/v1/messages", "/engines/v1/messages", "/anthropic/v1/messages/count_tokens"])
def test_wrong_method_is_anthropic_shaped(dmr_server, path):
    assert_anthropic_error(requests.get(dmr_server.url + path, timeout=30), 405, "invalid_request_error")


def test_unknown_path_under_anthropic_is_not_found(dmr_server):
    assert_anthropic_error(post(dmr_server, "/anthropic/v1/nothing", {}), 404, "not_found_error")


def test_openai_routes_keep_their_error_shape(dmr_server):
    response = post(dmr_server, "/engines/v1/chat/completions", {"messages": HI})
    assert response.status_code == 400 and "error" in response.json() and "type" not in response.json()
