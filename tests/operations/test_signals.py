"""SIGTERM drains and stops everything; SIGHUP replaces the web workers and keeps the models loaded."""

import http.client
import json
import os
import signal
import time

import pytest
import requests

from dmr_core import draining
from dmr_core.app import create_app
from dmr_core.settings import load_settings
from dmr_core.testing import openai_client_for, pid_alive, start_server, stop_server, wait_until
from tests.operations.streams import Stream

HI = dict(model="ai/smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
#: One decoding thread: on a small shared machine two threads spinning at ggml's barriers collapse
#: when preempted, and these tests time streams, not decoding.
QUIET = dict(DMR_THREADS="1")


def _loads(server) -> int:
    """How many times the inference workers loaded a model (their log says it each time)."""
    return server.log().count("[worker cpu] INFO loaded ")


def _all_pids(server) -> list[int]:
    return [server.process.pid, *server.web_worker_pids(), *server.pool_pids()]


@pytest.fixture
def draining_server(model_store):
    server = start_server(model_store, DMR_GRACEFUL_TIMEOUT="90", **QUIET)
    try:
        yield server
    finally:
        stop_server(server)


@pytest.mark.slow
def test_sigterm_finishes_streams_refuses_new_requests_then_stops_the_pool(draining_server):
    server = draining_server
    openai_client_for(server).chat.completions.create(**HI)
    pids = _all_pids(server)
    stream = Stream("openai", server.port, tokens=24).start()
    assert stream.started.wait(60)
    idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)  # kept alive across the signal
    idle.request("GET", "/engines/v1/models")  # (gunicorn's keepalive: 5 s)
    assert idle.getresponse().read()

    server.process.send_signal(signal.SIGTERM)
    assert wait_until(lambda: "Handling signal: term" in server.log(), timeout=10)
    time.sleep(0.3)  # the master has told its workers to stop
    # A request on a connection accepted before: 503 in the dialect's shape, then the connection closes.
    idle.request("POST", "/engines/v1/chat/completions", json.dumps(HI), {"Content-Type": "application/json"})
    refused = idle.getresponse()
    assert refused.status == 503 and refused.getheader("Retry-After") == "1"
    assert refused.getheader("Connection") == "close"
    assert json.loads(refused.read())["error"]["code"] == "shutting_down"
    # A new connection: refused once the listeners are closed (within a second in each worker).
    assert wait_until(lambda: _refused(server), timeout=5)

    assert stream.wait(90) == "done", stream.events[-2:]
    assert stream.events[-1]["choices"][0]["finish_reason"] == "length"
    assert server.process.wait(60) == 0
    assert wait_until(lambda: not any(pid_alive(pid) for pid in pids), timeout=15), [p for p in pids if pid_alive(p)]
    assert not list(server.pool_dir.glob("*.sock")), list(server.pool_dir.iterdir())


def _refused(server) -> bool:
    try:
        requests.get(server.url + "/engines/v1/models", timeout=2)
    except requests.ConnectionError:
        return True
    return False


def test_a_stream_past_the_grace_period_is_cut_and_everything_stops(model_store):
    server = start_server(model_store, DMR_GRACEFUL_TIMEOUT="2", **QUIET)
    try:
        pids = _all_pids(server)
        stream = Stream("openai", server.port, tokens=4000).start()
        assert stream.started.wait(60)
        stopped = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0
        assert time.monotonic() - stopped < 2 + 10  # the grace period, then the pool's own stop
        assert stream.wait(10) in ("dropped", "error")
        assert wait_until(lambda: not any(pid_alive(pid) for pid in pids), timeout=15)
    finally:
        stop_server(server)


@pytest.mark.slow
def test_sighup_replaces_web_workers_and_keeps_the_model_loaded(draining_server):
    server = draining_server
    client = openai_client_for(server)
    client.chat.completions.create(**HI)
    web_before, pool_before = server.web_worker_pids(), server.pool_status()
    assert _loads(server) == 1
    stream = Stream("openai", server.port, tokens=24).start()  # on an old worker: it finishes there
    assert stream.started.wait(60)

    os.kill(server.process.pid, signal.SIGHUP)
    assert wait_until(lambda: not set(server.web_worker_pids()) & set(web_before), timeout=90)
    assert len(server.web_worker_pids()) == len(web_before)
    assert stream.wait(30) == "done"
    reply = client.chat.completions.create(**HI)
    assert reply.choices[0].message.content

    pool_after = server.pool_status()
    assert pool_after["pid"] == pool_before["pid"]
    assert pool_after["workers"][0]["pid"] == pool_before["workers"][0]["pid"]
    assert [r["model_path"] for r in pool_after["runners"]] == [r["model_path"] for r in pool_before["runners"]]
    assert _loads(server) == 1, "the model was loaded again"
    assert "Hang up" in server.log()


def test_the_refusal_is_in_each_dialects_shape(tmp_path):
    """ShuttingDown renders as every other error: 503, Retry-After, the dialect's body."""

    class StoppingWorker:
        alive = False

    app = create_app(load_settings({}, store=str(tmp_path / "store"), disable_metrics=True, access_log="off"))
    draining.post_worker_init(StoppingWorker())
    try:
        web = app.test_client()
        openai_reply = web.post("/engines/v1/chat/completions", json=HI)
        anthropic_reply = web.post("/v1/messages", json=HI)
        ollama_reply = web.post("/api/chat", json={"model": "ai/smollm2", "messages": HI["messages"]})
        models = web.get("/engines/v1/models")  # a fast path: it steps aside while stopping
    finally:
        draining.post_worker_init(None)
    for reply in (openai_reply, anthropic_reply, ollama_reply, models):
        assert reply.status_code == 503 and reply.headers["Retry-After"] == "1"
    assert openai_reply.json["error"]["code"] == "shutting_down"
    assert anthropic_reply.json["type"] == "error" and anthropic_reply.json["error"]["type"] == "overloaded_error"
    assert "stopping" in ollama_reply.json["error"]
