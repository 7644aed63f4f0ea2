"""DMR's Docker-socket prefix ``/exp/vDD4.40`` in front of every route, over the Unix socket as
Docker Desktop's clients send it: each dialect's official client with the prefix in its base URL,
the fast-path GETs, DMR's native routes, and errors still in each dialect's shape."""

import json

import anthropic
import httpx
import httpx2
import ollama
import openai
import pytest

from dmr_core import docker_prefix
from dmr_core.testing import UnixHTTPConnection

MODEL = "ai/smollm2"
PREFIX = "/exp/vDD4.40"


def request(server, method: str, path: str, body: dict | None = None) -> tuple[int, str, bytes]:
    """(status, content type, body) of one request over the server's Unix socket."""
    connection = UnixHTTPConnection(server.unix_socket, timeout=120)
    try:
        data = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def http_client(unix_server):
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(unix_server.unix_socket)), timeout=120) as client:
        yield client


@pytest.mark.parametrize(("path", "expected"), [
    ("/exp/vDD4.40/engines/v1/models", ("/exp/vDD4.40", "/engines/v1/models")),
    ("/exp/vDD4.40", ("/exp/vDD4.40", "/")),
    ("/exp/vDD4.40/", ("/exp/vDD4.40", "/")),
    ("/exp/vDD4.41/api/tags", ("/exp/vDD4.41", "/api/tags")),
    ("/exp/vDD4.40x/models", ("", "/exp/vDD4.40x/models")),
    ("/models/exp/vDD4.40", ("", "/models/exp/vDD4.40")),
    ("/exp/v1/models", ("", "/exp/v1/models")),
])  # fmt: skip
def test_split(path, expected):
    assert docker_prefix.split(path) == expected


# Read-only GETs of every dialect, fast paths among them: the same answer with and without the prefix.
SAME_ANSWER = ["/", "/engines/v1/models", "/engines/llama.cpp/v1/models", "/v1/models", "/models", "/api/tags",
               "/api/version", "/engines/status", "/engines/ps"]  # fmt: skip


@pytest.mark.parametrize("path", SAME_ANSWER)
def test_a_get_under_the_prefix_answers_as_without_it(unix_server, path):
    plain = request(unix_server, "GET", path)
    prefixed = request(unix_server, "GET", PREFIX + path)
    assert plain[0] == 200
    if path == "/engines/ps":  # last_used moves; the shape is what counts
        assert prefixed[0] == 200 and isinstance(json.loads(prefixed[2]), list)
    else:
        assert prefixed == plain


def test_openai_client_with_the_prefix(http_client):
    client = openai.OpenAI(base_url=f"http://localhost{PREFIX}/engines/v1", api_key="unused", max_retries=0,
                           http_client=http_client, _strict_response_validation=True)  # fmt: skip
    assert [m.id for m in client.models.list()] == ["ai/smollm2:latest"]
    reply = client.chat.completions.create(model=MODEL, max_tokens=4, messages=[{"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="ai/absent", max_tokens=4, messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.status_code == 404 and caught.value.response.json()["error"]["message"]


def test_anthropic_client_with_the_prefix(unix_server):
    # The anthropic SDK runs on httpx2, which has the same uds transport.
    http_client = httpx2.Client(transport=httpx2.HTTPTransport(uds=str(unix_server.unix_socket)), timeout=120)
    client = anthropic.Anthropic(base_url=f"http://localhost{PREFIX}/anthropic", api_key="unused", max_retries=0,
                                 http_client=http_client, _strict_response_validation=True)  # fmt: skip
    reply = client.messages.create(model=MODEL, max_tokens=4, messages=[{"role": "user", "content": "Hi"}])
    assert reply.content[0].text
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="ai/absent", max_tokens=4, messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.response.json()["type"] == "error"
    http_client.close()


def test_ollama_client_with_the_prefix(unix_server):
    client = ollama.Client(host=f"http://localhost{PREFIX}", transport=httpx.HTTPTransport(uds=str(unix_server.unix_socket)))
    assert [m.model for m in client.list().models] == ["ai/smollm2:latest"]
    reply = client.chat(model=MODEL, messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 4})
    assert reply.message.content
    assert client.show(MODEL).details.format == "gguf"


def test_native_routes_and_their_plain_text_errors_under_the_prefix(unix_server):
    status, _, body = request(unix_server, "GET", PREFIX + "/models/ai/smollm2")
    assert status == 200 and json.loads(body)["tags"]
    status, content_type, body = request(unix_server, "GET", PREFIX + "/models/ai/absent")
    assert status == 404 and content_type.startswith("text/plain")


def test_an_unknown_route_under_the_prefix_is_a_404_in_the_dialects_shape(unix_server):
    status, _, body = request(unix_server, "GET", PREFIX + "/v1/nothing-here")
    assert status == 404 and json.loads(body)["error"]["type"] == "invalid_request_error"
    status, _, body = request(unix_server, "GET", "/exp/vDD4.40x/models")  # not the prefix: an unknown path
    assert status == 404


def test_a_stream_under_the_prefix(unix_server):
    body = {"model": MODEL, "stream": True, "max_tokens": 6, "messages": [{"role": "user", "content": "Hi"}]}
    status, content_type, data = request(unix_server, "POST", PREFIX + "/v1/chat/completions", body)
    assert status == 200 and content_type.startswith("text/event-stream")
    assert data.rstrip().endswith(b"data: [DONE]")
