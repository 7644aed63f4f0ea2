"""API keys through a real server, with each dialect's official client: the right key works in
every header a client sends, a missing or wrong one is a 401 in the dialect's own shape with
``WWW-Authenticate: Bearer``, open paths stay open, and no key ever reaches the log."""

import anthropic
import ollama
import openai
import pytest
import requests

from tests.admission.conftest import FILE_KEY, KEY_A, KEY_B, MODEL, bearer, chat_body, post_json

HI = [{"role": "user", "content": "Hi"}]


def openai_client(server, key):
    return openai.OpenAI(base_url=server.url + "/engines/v1", api_key=key, max_retries=0,
                         _strict_response_validation=True, timeout=120)  # fmt: skip


def assert_401(response):
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    return response


def test_openai_client_with_a_key_chats(guarded_server):
    reply = openai_client(guarded_server, KEY_A).chat.completions.create(model=MODEL, messages=HI, max_tokens=2)
    assert reply.choices[0].message.content is not None


def test_a_key_from_the_key_file_is_accepted(guarded_server):
    assert openai_client(guarded_server, FILE_KEY).models.list().data[0].id.startswith(MODEL)


def test_openai_wrong_key_is_401_in_openai_shape(guarded_server):
    with pytest.raises(openai.AuthenticationError) as caught:
        openai_client(guarded_server, "sk-wrong").chat.completions.create(model=MODEL, messages=HI, max_tokens=2)
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert caught.value.type == "invalid_request_error"
    assert caught.value.response.headers["WWW-Authenticate"] == "Bearer"


def test_missing_key_is_401_in_openai_shape(guarded_server):
    response = assert_401(post_json(guarded_server, "/engines/v1/chat/completions", chat_body()))
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "invalid_api_key"


def test_fast_path_model_lists_need_a_key_too(guarded_server):
    for path in ("/engines/v1/models", "/v1/models", "/api/tags", "/models"):
        assert_401(requests.get(guarded_server.url + path, timeout=30))
        assert requests.get(guarded_server.url + path, headers=bearer(KEY_B), timeout=30).status_code == 200


def test_anthropic_client_with_x_api_key_and_with_bearer(guarded_server):
    for client in (anthropic.Anthropic(base_url=guarded_server.url, api_key=KEY_A, max_retries=0, timeout=120),
                   anthropic.Anthropic(base_url=guarded_server.url, auth_token=KEY_B, max_retries=0, timeout=120)):
        reply = client.messages.create(model=MODEL, max_tokens=2, messages=HI)
        assert reply.type == "message"


def test_anthropic_wrong_key_is_401_in_anthropic_shape(guarded_server):
    client = anthropic.Anthropic(base_url=guarded_server.url, api_key="wrong", max_retries=0, timeout=120)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client.messages.create(model=MODEL, max_tokens=2, messages=HI)
    body = caught.value.body
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert caught.value.response.headers["WWW-Authenticate"] == "Bearer"


def test_ollama_client_with_headers_and_with_ollama_api_key(guarded_server, monkeypatch):
    with_headers = ollama.Client(host=guarded_server.url, headers=bearer(KEY_A), timeout=120)
    assert with_headers.generate(model=MODEL, prompt="Hi", options={"num_predict": 2}).done
    monkeypatch.setenv("OLLAMA_API_KEY", KEY_B)  # ollama-python sends it as a Bearer token
    assert ollama.Client(host=guarded_server.url, timeout=120).list().models


def test_ollama_wrong_key_is_401_in_ollama_shape(guarded_server):
    client = ollama.Client(host=guarded_server.url, headers=bearer("wrong"), timeout=120)
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model=MODEL, messages=HI)
    assert caught.value.status_code == 401
    response = assert_401(post_json(guarded_server, "/api/chat", {"model": MODEL, "messages": HI}))
    assert list(response.json()) == ["error"]


def test_dmr_native_routes_answer_401_as_text(guarded_server):
    response = assert_401(requests.get(guarded_server.url + "/engines/status", timeout=30))
    assert response.headers["Content-Type"].startswith("text/plain")


def test_open_paths_need_no_key(guarded_server):
    assert requests.get(guarded_server.url + "/", timeout=30).status_code == 200
    assert requests.get(guarded_server.url + "/metrics", timeout=30).status_code != 401


def test_keys_never_reach_the_log(guarded_server):
    wrong = "sk-never-log-this-0xdeadbeef"
    assert_401(requests.get(guarded_server.url + "/engines/v1/models", headers=bearer(wrong), timeout=30))
    assert_401(requests.get(guarded_server.url + "/api/tags", headers={"x-api-key": wrong}, timeout=30))
    assert requests.get(guarded_server.url + "/api/tags", headers=bearer(KEY_A), timeout=30).status_code == 200
    log = guarded_server.log()
    assert wrong not in log and KEY_A not in log and KEY_B not in log and FILE_KEY not in log
