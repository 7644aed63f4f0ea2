"""CORS with real preflights (raw ``OPTIONS`` over ``http.client``, as a browser sends them)
through a real server: an allowed Origin gets a 204 naming it, its methods and headers; any
other Origin is a 403, preflight or not; a request without Origin is left alone."""

import http.client
import json
import time
from urllib.parse import urlsplit

from tests.admission.conftest import ALLOWED_ORIGIN, KEY_A, MODEL, bearer

CHAT = "/engines/v1/chat/completions"


def send(server, method, path, headers, body=None):
    address = urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=120)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def preflight(server, origin, path=CHAT, asked="authorization, content-type, x-stainless-os"):
    return send(server, "OPTIONS", path, {"Origin": origin, "Access-Control-Request-Method": "POST",
                                          "Access-Control-Request-Headers": asked})  # fmt: skip


def test_preflight_from_an_allowed_origin_is_204_without_a_key(guarded_server):
    status, headers, body = preflight(guarded_server, ALLOWED_ORIGIN)
    assert status == 204 and body == b""
    assert headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert {"GET", "POST", "DELETE"} <= {m.strip() for m in headers["Access-Control-Allow-Methods"].split(",")}
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "x-api-key", "anthropic-version", "x-stainless-os"} <= allowed
    assert int(headers["Access-Control-Max-Age"]) > 0
    assert "Origin" in headers["Vary"]


def test_preflight_for_each_dialect(guarded_server):
    for path in ("/v1/messages", "/api/chat", "/engines/v1/models", "/models"):
        status, headers, _ = preflight(guarded_server, ALLOWED_ORIGIN, path, "x-api-key, anthropic-version")
        assert status == 204 and headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN


def test_preflight_from_another_origin_is_403(guarded_server):
    for origin in ("http://evil.example", "http://app.example:3001", "https://app.example:3000", "null"):
        status, headers, _ = preflight(guarded_server, origin)
        assert status == 403, origin
        assert "Access-Control-Allow-Origin" not in headers


def test_dmr_default_origins_are_exact(guarded_server):
    assert preflight(guarded_server, "http://localhost")[0] == 204
    assert preflight(guarded_server, "http://localhost:5173")[0] == 403  # DMR lists no ports


def test_request_from_an_allowed_origin_names_it(guarded_server):
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
    headers = {"Origin": ALLOWED_ORIGIN, "Content-Type": "application/json", **bearer(KEY_A)}
    status, headers, reply = send(guarded_server, "POST", CHAT, headers, body)
    assert status == 200, reply
    assert headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert headers["Access-Control-Allow-Credentials"] == "true"


def test_errors_to_an_allowed_origin_name_it_too(guarded_server):
    """A browser can read the 401 (no key) only if it carries the CORS headers."""
    status, headers, reply = send(guarded_server, "GET", "/engines/v1/models", {"Origin": ALLOWED_ORIGIN})
    assert status == 401
    assert headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert json.loads(reply)["error"]["code"] == "invalid_api_key"


def test_request_from_another_origin_is_403_in_the_dialect_shape(guarded_server):
    headers = {"Origin": "http://evil.example", **bearer(KEY_A)}
    status, _, reply = send(guarded_server, "GET", "/engines/v1/models", headers)
    assert status == 403 and json.loads(reply)["error"]["message"] == "Origin not allowed"
    status, _, reply = send(guarded_server, "GET", "/api/tags", headers)
    assert status == 403 and json.loads(reply) == {"error": "Origin not allowed"}
    status, _, reply = send(guarded_server, "GET", "/v1/models", {**headers, "anthropic-version": "2023-06-01"})
    assert status == 403


def test_no_origin_no_cors_headers(guarded_server):
    status, headers, _ = send(guarded_server, "GET", "/engines/v1/models", bearer(KEY_A))
    assert status == 200
    assert "Access-Control-Allow-Origin" not in headers


def test_the_servers_own_page_may_post_to_it(guarded_server):
    """The page at http://127.0.0.1:<port>/ sends its own origin on every POST; it is the Host the
    request went to, and 127.0.0.1 is a default origin, so it passes without configuration."""
    own = guarded_server.url.rstrip("/")
    assert preflight(guarded_server, own)[0] == 204
    rebinding = own.replace("127.0.0.1", "evil.example")
    status, _, _ = send(guarded_server, "OPTIONS", CHAT, {"Origin": rebinding, "Host": rebinding.split("://")[1],
                                                          "Access-Control-Request-Method": "POST"})  # fmt: skip
    assert status == 403
    other_port = own.rsplit(":", 1)[0] + ":1"
    assert preflight(guarded_server, other_port)[0] == 403


def test_answers_on_a_kept_alive_connection_are_never_held_back(guarded_server):
    """A head with a body behind it leaves with ``MSG_MORE`` (dmr_core/web_worker.py); one sent so
    without a body to follow would wait 200 ms in the kernel. Bodiless answers (a 204 preflight, a
    HEAD) and answers with bodies, one after another on one connection, each arrive at once."""
    address = urlsplit(guarded_server.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=120)
    asks = [("OPTIONS", {"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST"}, 204),
            ("HEAD", bearer(KEY_A), 200), ("GET", bearer(KEY_A), 200), ("GET", {}, 401)] * 5  # fmt: skip
    slowest = 0.0
    try:
        for method, headers, status in asks:
            started = time.perf_counter()
            connection.request(method, "/engines/v1/models", headers=headers)
            response = connection.getresponse()
            body = response.read()
            slowest = max(slowest, time.perf_counter() - started)
            assert response.status == status, (method, response.status, body)
            assert (body == b"") == (method in ("OPTIONS", "HEAD"))
    finally:
        connection.close()
    assert slowest < 0.15, f"an answer took {slowest * 1000:.0f} ms: held back"
