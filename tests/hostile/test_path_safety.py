"""Model names that try to leave the store (``..``, absolute paths, NUL, encoded slashes,
backslashes, overlong names), in every route that takes one: each is refused with a 400 or 404 in
its dialect's shape, and nothing outside the store is read, written or removed."""

from __future__ import annotations

import http.client
import json
from urllib.parse import quote

import pytest

from tests.hostile.conftest import TINY
from tests.hostile.fuzzing import SHAPES

#: Names that must never reach a path, as a JSON body carries them.
HOSTILE_NAMES = (
    "../sentinel.txt", "../../sentinel.txt", "../../../../../../etc/passwd", "ai/../../sentinel.txt",
    "ai/tiny/../../../sentinel.txt", "/etc/passwd", "/tmp", "ai/tiny\x00.txt", "ai\x00/tiny",
    "..%2F..%2Fsentinel.txt", "%2e%2e/%2e%2e/sentinel.txt", "ai%2Ftiny", "..\\..\\sentinel.txt",
    "ai\\tiny", "C:\\Windows", "ai/tiny:../../x", "ai/tiny@sha256:../../x", "sha256:../../sentinel.txt",
    "a" * 300, "ai/" + "b/" * 200 + "c", "localhost:1/../x", "ai/./tiny", "ai//tiny", ".", "..", "~/x",
)  # fmt: skip
#: The same kind of names as a URL path carries them (sent as is, never normalised by the client).
HOSTILE_URL_NAMES = (
    "..%2F..%2Fsentinel.txt", "%2e%2e/%2e%2e/sentinel.txt", "%2e%2e%2f%2e%2e%2fsentinel.txt", "ai%2F..%2F..%2Fx",
    "..%5C..%5Csentinel.txt", "ai/tiny%00", "%00", "/etc/passwd", "ai/..%2f..%2fsentinel.txt", "a" * 300,
    "ai/tiny/..%2F..%2F..%2Fsentinel.txt", "%252e%252e%252fsentinel.txt",
)  # fmt: skip


def _json_cases():
    """(dialect, method, path, body) for each route that takes a model name in its JSON body."""
    for name in HOSTILE_NAMES:
        chat = [{"role": "user", "content": "hi"}]
        yield "openai", "POST", "/engines/v1/chat/completions", {"model": name, "messages": chat, "max_tokens": 1}
        yield "openai", "POST", "/v1/completions", {"model": name, "prompt": "hi", "max_tokens": 1}
        yield "openai", "POST", "/v1/embeddings", {"model": name, "input": "hi"}
        yield "anthropic", "POST", "/v1/messages", {"model": name, "messages": chat, "max_tokens": 1}
        yield "anthropic", "POST", "/v1/messages/count_tokens", {"model": name, "messages": chat}
        yield "ollama", "POST", "/api/chat", {"model": name, "messages": chat, "stream": False}
        yield "ollama", "POST", "/api/generate", {"model": name, "prompt": "hi", "stream": False}
        yield "ollama", "POST", "/api/embed", {"model": name, "input": "hi"}
        yield "ollama", "POST", "/api/show", {"model": name}
        yield "ollama", "DELETE", "/api/delete", {"model": name}
        yield "ollama", "POST", "/api/pull", {"model": name, "stream": False}
        yield "ollama", "POST", "/api/push", {"model": name, "stream": False}
        yield "ollama", "POST", "/api/copy", {"source": name, "destination": "ai/copy"}
        yield "ollama", "POST", "/api/copy", {"source": TINY, "destination": name}
        yield "native", "POST", "/models/create", {"from": name}
        yield "native", "POST", "/engines/_configure", {"model": name}
        yield "native", "POST", "/engines/unload", {"models": [name]}


def _url_cases():
    """(dialect, method, raw path) for each route that takes a model name in its URL."""
    for name in HOSTILE_URL_NAMES:
        yield "openai", "GET", f"/engines/v1/models/{name}"
        yield "native", "GET", f"/models/{name}"
        yield "native", "GET", f"/models/{name}/export"
        yield "native", "DELETE", f"/models/{name}"
        yield "native", "DELETE", f"/models/{name}?force=true"
        yield "native", "POST", f"/models/{name}/push"
        yield "native", "POST", f"/models/{TINY}/tag?repo={quote(name, safe='')}&tag=x"
        yield "native", "POST", f"/models/{name}/tag?repo=ai/x&tag=x"
        yield "native", "GET", f"/engines/_configure?model={name}"


def _raw_request(server, method: str, path: str, body: bytes | None = None) -> tuple[int, str, str]:
    """One request with ``path`` sent byte for byte (no client-side normalisation of ``..``/``%2F``).

    A 308 is followed once, within this server: ``//etc/passwd`` is redirected to the path with
    merged slashes (werkzeug does so, as Go's ServeMux does for DMR), whose answer is what counts."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        status, text = response.status, response.read().decode(errors="replace")
        location = response.getheader("Location") or ""
    finally:
        connection.close()
    if status == 308 and location.startswith(server.url + "/") and "//" not in location[len(server.url):]:
        return _raw_request(server, method, location[len(server.url):], body)
    return status, response.getheader("Content-Type") or "", text


def _refusal_problem(dialect: str, status: int, content_type: str, text: str) -> str | None:
    if status not in (400, 404):
        return f"status {status}: {text[:200]!r}"
    if dialect == "native":
        return None if content_type.startswith("text/plain") and text.strip() else f"not plain text: {text[:200]!r}"
    try:
        body = json.loads(text)
    except ValueError:
        return f"not JSON: {text[:200]!r}"
    return None if SHAPES[dialect](body) else f"not in {dialect}'s shape: {text[:200]!r}"


@pytest.fixture
def untouched(hostile):
    """Fails the test if a file outside the store appeared, vanished or changed."""
    before = {p: p.read_bytes() for p in hostile.files_outside_store() if p.is_file()}
    yield
    after = {p: p.read_bytes() for p in hostile.files_outside_store() if p.is_file()}
    assert after == before
    assert hostile.sentinel.read_text() == "must survive\n"


def test_hostile_names_in_bodies_are_refused(hostile, untouched):
    problems = []
    for dialect, method, path, body in _json_cases():
        status, content_type, text = _raw_request(hostile.server, method, path, json.dumps(body).encode())
        problem = _refusal_problem(dialect, status, content_type, text)
        if problem:
            problems.append(f"{method} {path} {json.dumps(body)[:120]}: {problem}")
    assert not problems, "\n".join(problems)


def test_hostile_names_in_urls_are_refused(hostile, untouched):
    problems = []
    for dialect, method, path in _url_cases():
        status, content_type, text = _raw_request(hostile.server, method, path, b"" if method == "POST" else None)
        problem = _refusal_problem(dialect, status, content_type, text)
        if problem:
            problems.append(f"{method} {path[:120]}: {problem}")
    assert not problems, "\n".join(problems)


def test_the_served_model_is_still_there(hostile):
    # The refusals above removed nothing from the store either.
    status, _, text = _raw_request(hostile.server, "POST", "/api/show", json.dumps({"model": TINY}).encode())
    assert status == 200, text
