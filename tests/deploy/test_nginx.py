"""Through a real nginx running ``conf/nginx.conf`` (TLS, dmr on a Unix socket behind it): streams
arrive token by token, a client that leaves at nginx stops the generation, bodies as large as
dmr's own limit reach dmr, plain HTTP is sent to HTTPS."""

import json
import re
import socket
import ssl
import time

import httpx
import openai
import pytest
import requests

from dmr_core.testing import UnixHTTPConnection, wait_until

MODEL = "ai/smollm2"
#: Greedy SmolLM2 counts for thousands of tokens when asked to (tests/pool/test_disconnect.py).
ASK_TO_COUNT = [{"role": "user", "content": "Count from 1 to 1000, separated by commas."}]
#: How soon a job must end once its client left nginx (a token takes ~20-50 ms; the machine is shared).
PROMPTLY = 10.0


@pytest.fixture(scope="module")
def client(nginx):
    with httpx.Client(verify=ssl.create_default_context(cafile=str(nginx.certificate)), timeout=120) as http_client:
        yield openai.OpenAI(base_url=nginx.url + "/engines/v1", api_key="unused", max_retries=0,
                            http_client=http_client, _strict_response_validation=True)  # fmt: skip


def idle_jobs(server) -> dict:
    assert wait_until(lambda: server.worker_stats()["jobs"]["running"] == 0, timeout=60)
    return server.worker_stats()["jobs"]


def bursts(times: list[float], gap: float = 0.01) -> int:
    """How many groups the arrival ``times`` form, a group ending where ``gap`` seconds pass."""
    return 1 + sum(1 for earlier, later in zip(times, times[1:]) if later - earlier > gap)


def test_a_streamed_chat_arrives_token_by_token(client):
    client.chat.completions.create(model=MODEL, max_tokens=1, messages=ASK_TO_COUNT)  # loaded before timing
    # 100 tokens: a fast machine decodes 40 in 0.3 s, which coalescing (50 ms) sends in 7 frames.
    stream = client.chat.completions.create(model=MODEL, max_tokens=100, temperature=0, stream=True,
                                            messages=ASK_TO_COUNT)  # fmt: skip
    arrivals = [time.monotonic() for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
    duration = arrivals[-1] - arrivals[0]
    print(f"{len(arrivals)} text chunks in {bursts(arrivals)} bursts over {duration:.2f}s")
    # Buffered by a proxy, the text comes at the end in one burst (checked: nginx with buffering on).
    # Unbuffered, it comes in frames (dmr coalesces tokens for at most stream_flush_interval, 50 ms),
    # spread over the whole generation.
    assert len(arrivals) >= 8 and duration > 0.3, (len(arrivals), duration)
    assert bursts(arrivals) >= 8, f"{bursts(arrivals)} bursts over {duration:.2f}s: buffered somewhere"
    assert sum(1 for t in arrivals if t < arrivals[0] + duration / 2) >= len(arrivals) // 4


def test_dmr_sends_x_accel_buffering_no_on_every_kind_of_stream(unix_server):
    """nginx honours (and hides) it, so it is checked at dmr's socket, one stream per dialect."""
    streams = {"/v1/chat/completions": {"model": MODEL, "stream": True, "max_tokens": 2, "messages": ASK_TO_COUNT},
               "/anthropic/v1/messages": {"model": MODEL, "stream": True, "max_tokens": 2, "messages": ASK_TO_COUNT},
               "/api/chat": {"model": MODEL, "messages": ASK_TO_COUNT, "options": {"num_predict": 2}}}  # fmt: skip
    for path, body in streams.items():
        connection = UnixHTTPConnection(unix_server.unix_socket, timeout=120)
        connection.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        connection.close()
        assert response.status == 200 and response.getheader("X-Accel-Buffering") == "no", path


def open_stream_through_nginx(nginx, max_tokens: int) -> ssl.SSLSocket:
    body = json.dumps({"model": MODEL, "stream": True, "max_tokens": max_tokens, "temperature": 0,
                       "messages": ASK_TO_COUNT}).encode()  # fmt: skip
    context = ssl.create_default_context(cafile=str(nginx.certificate))
    sock = context.wrap_socket(socket.create_connection(("127.0.0.1", nginx.https_port), timeout=60),
                               server_hostname="localhost")  # fmt: skip
    sock.sendall(b"POST /engines/v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
    return sock


def read_events(sock: ssl.SSLSocket, count: int) -> bytes:
    received = b""
    while received.count(b"data: ") < count:
        data = sock.recv(65536)
        assert data, f"the stream ended early: {received[-300:]!r}"
        received += data
    return received


def test_a_client_that_leaves_at_nginx_stops_the_generation(nginx, unix_server):
    before = idle_jobs(unix_server)
    sock = open_stream_through_nginx(nginx, max_tokens=3000)
    assert b"200 OK" in read_events(sock, 5).split(b"\r\n")[0]
    assert unix_server.worker_stats()["jobs"]["running"] == 1
    sock.close()
    left = time.monotonic()
    assert wait_until(lambda: unix_server.worker_stats()["jobs"]["cancelled"] > before["cancelled"], timeout=60)
    stopped_after = time.monotonic() - left
    after = unix_server.worker_stats()["jobs"]
    assert after["running"] == 0 and after["completed"] == before["completed"]
    assert stopped_after < PROMPTLY, f"the generation went on {stopped_after:.1f}s after the client left"
    print(f"generation stopped {stopped_after * 1000:.0f} ms after the client left nginx")


def test_a_body_up_to_dmrs_limit_passes_nginx_and_a_larger_one_gets_dmrs_413(client, nginx):
    """nginx's client_max_body_size (64m) is above dmr's max_body (10 MiB): dmr answers, in its shape."""
    big = "x" * (11 * 1024 * 1024)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=MODEL, max_tokens=1, messages=[{"role": "user", "content": big}])
    assert caught.value.status_code == 413
    assert caught.value.response.json()["error"]["code"] == "request_too_large"


def test_plain_http_is_redirected_to_https(nginx):
    reply = requests.get(f"http://127.0.0.1:{nginx.http_port}/engines/v1/models", allow_redirects=False, timeout=30)
    assert reply.status_code == 301
    assert reply.headers["Location"] == "https://127.0.0.1/engines/v1/models"


def nginx_ids(nginx) -> list[str]:
    """The ``id=`` of each line of nginx's access log (the site's ``dmr`` log format)."""
    return re.findall(r" id=(\S+) rt=", nginx.access_log())


@pytest.mark.parametrize(("sent", "kept"), [(None, False), ("client-7", True), ("two words", False)])
def test_one_request_id_for_nginx_and_dmr(nginx, unix_server, sent, kept):
    """nginx hands dmr the client's X-Request-Id when dmr would take it, else its own $request_id;
    nginx's access line, dmr's and the response all carry the same id."""
    headers = {"X-Request-Id": sent} if sent else {}
    reply = requests.get(nginx.url + "/engines/v1/models", headers=headers, verify=str(nginx.certificate), timeout=30)
    request_id = reply.headers["X-Request-Id"]
    assert reply.status_code == 200
    assert request_id == sent if kept else re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert wait_until(lambda: request_id in nginx_ids(nginx), timeout=10), nginx.access_log()[-500:]
    assert wait_until(lambda: f"id={request_id} " in unix_server.log(), timeout=10)
