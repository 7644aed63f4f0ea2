"""``kill -9`` of each dmr process mid-stream: what it ends, what goes on, how soon service is back.

Each test runs two streams at once, an OpenAI one (SSE) and an Ollama one (NDJSON), on two inference
workers (``devices = "cpu,cpu"``: the Ollama stream asks for a context size of its own, so its runner
goes to the other worker) and, for the web worker, on two web workers. After the kill the stream of
the killed process ends as its dialect ends a failed stream (a killed web worker cuts its
connection), the other one runs to its end, and a fresh request succeeds. A killed supervisor ends
neither stream: tokens never pass through it, and its workers are adopted by the next one. The
seconds from the kill to that success are recorded (``record_property``; printed with ``-s``) and
held to a bound that a busy shared machine keeps; docs/operations.md has the figures
``bench/recovery.py`` measures. One decoding thread per worker: two spinning threads on two busy
cores make any request slow (docs/operations.md), which these tests do not measure.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time

import pytest
import requests

from dmr_core.testing import pid_alive, start_server, stop_server, wait_until
from tests.operations.streams import Stream, connections_on_distinct_workers, first_success_after, serving_pid

#: The issue's target is 3 s on this 2-core machine; other suites share its cores, so the assertion
#: allows more (the figure itself is recorded).
RECOVERY_BOUND = 10.0
#: The OpenAI stream's context: SmolLM2's own (8192) capped by ``max_context``.
MODEL_CONTEXT = 4096
#: The Ollama stream's context size: another runner than the OpenAI stream's.
OTHER_CONTEXT = 2048
#: Long enough to outlive the kill, short enough to end soon after it.
UNAFFECTED_TOKENS = 120
HI = {"model": "ai/smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}


@pytest.fixture
def two_workers(model_store):
    """Two inference workers (a core each) with a runner each: the model's own context, and another."""
    server = start_server(model_store, DMR_DEVICES="cpu,cpu")
    try:
        requests.post(server.url + "/engines/v1/chat/completions", json=HI, timeout=120).raise_for_status()
        ollama = {"model": "ai/smollm2", "prompt": "Hi", "stream": False,
                  "options": {"num_ctx": OTHER_CONTEXT, "num_predict": 1}}  # fmt: skip
        requests.post(server.url + "/api/generate", json=ollama, timeout=120).raise_for_status()
        assert sorted(slot_of(server, c) for c in (MODEL_CONTEXT, OTHER_CONTEXT)) == [0, 1], server.pool_status()["runners"]
        yield server
    finally:
        stop_server(server)


def slot_of(server, context: int) -> int:
    return next(r["slot"] for r in server.pool_status()["runners"] if r["context_size"] == context)


def start_streams(server, openai_tokens: int = 2000, connections=(None, None)) -> tuple[Stream, Stream]:
    """The OpenAI stream (on the model's own context) and the Ollama one (on the other worker)."""
    openai = Stream("openai", server.port, tokens=openai_tokens, connection=connections[0]).start()
    ollama = Stream("ollama", server.port, tokens=UNAFFECTED_TOKENS, context=OTHER_CONTEXT,
                    connection=connections[1]).start()  # fmt: skip
    assert openai.started.wait(60) and ollama.started.wait(60), (openai.events, ollama.events)
    return openai, ollama


def recovered(server, killed: float, record_property, what: str) -> float:
    seconds = first_success_after(server.url, killed)
    record_property(f"recovery_after_{what.replace(' ', '_')}_kill_s", round(seconds, 2))
    print(f"\nkill -9 of the {what}: a fresh request succeeded {seconds:.2f}s after the kill")
    assert seconds < RECOVERY_BOUND
    return seconds


def test_kill_9_of_an_inference_worker_fails_its_stream_only(two_workers, record_property):
    server = two_workers
    workers = server.pool_status()["workers"]
    victim, other = workers[slot_of(server, MODEL_CONTEXT)], workers[slot_of(server, OTHER_CONTEXT)]
    openai, ollama = start_streams(server)

    os.kill(victim["pid"], signal.SIGKILL)
    killed = time.monotonic()
    assert openai.wait(30) == "error", openai.events[-2:]
    assert "inference worker" in openai.error_message()
    recovered(server, killed, record_property, "inference worker")
    assert ollama.wait(120) == "done", ollama.events[-2:]
    assert ollama.events[-1]["done_reason"] == "length"

    after = {w["index"]: w for w in server.pool_status()["workers"]}
    assert after[victim["index"]]["restarts"] == 1 and after[victim["index"]]["pid"] != victim["pid"]
    assert after[other["index"]]["restarts"] == 0 and after[other["index"]]["pid"] == other["pid"]
    # The model it held came back on its own (reloaded at once, not at the next request's cost).
    assert f"reloading ai/smollm2: it was loaded in worker {victim['index']}" in server.log()


def test_kill_9_of_the_pool_supervisor_ends_no_stream_and_keeps_the_models(two_workers, record_property):
    server = two_workers
    before = server.pool_status()
    openai, ollama = start_streams(server, openai_tokens=UNAFFECTED_TOKENS)

    os.kill(before["pid"], signal.SIGKILL)
    killed = time.monotonic()
    recovered(server, killed, record_property, "pool supervisor")
    # Tokens never pass through the supervisor: its workers went on, and its successor adopted them.
    assert openai.wait(120) == "done", openai.events[-2:]
    assert openai.events[-1]["choices"][0]["finish_reason"] == "length"
    assert ollama.wait(120) == "done" and ollama.events[-1]["done_reason"] == "length"
    after = server.pool_status()
    assert after["pid"] != before["pid"]
    assert [w["pid"] for w in after["workers"]] == [w["pid"] for w in before["workers"]]
    assert sorted(r["context_size"] for r in after["runners"]) == [OTHER_CONTEXT, MODEL_CONTEXT]
    assert server.log().count("INFO loaded ") == 2, "a model was loaded again"


def test_kill_9_of_a_web_worker_cuts_its_connection_only(two_workers, record_property):
    server = two_workers
    openai, ollama = start_streams(server, connections=connections_on_distinct_workers(server))
    victim = serving_pid(server.port, openai.local_port, server.web_worker_pids())
    job_worker = slot_of(server, MODEL_CONTEXT)

    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    assert openai.wait(30) == "dropped", openai.events[-2:]
    recovered(server, killed, record_property, "web worker")
    assert ollama.wait(120) == "done" and ollama.events[-1]["done_reason"] == "length"
    # Its job stopped in the inference worker (the pool socket closed with the process), within a token.
    assert wait_until(lambda: server.worker_stats(job_worker)["jobs"]["cancelled"] == 1, timeout=10)
    assert not pid_alive(victim)
    assert wait_until(lambda: len(server.web_worker_pids()) == 2, timeout=30)  # gunicorn forked another


def test_a_job_sent_as_its_worker_dies_is_sent_again(private_server):
    """A worker killed before it read a job (here: stopped, then killed, with the job in its
    socket's backlog) never ran it, and its kernel resets the connection: the job goes to the
    respawned worker instead of failing (a job the worker had read ends in worker_crashed)."""
    server = private_server
    requests.post(server.url + "/engines/v1/chat/completions", json=HI, timeout=120).raise_for_status()
    worker = server.pool_status()["workers"][0]["pid"]
    os.kill(worker, signal.SIGSTOP)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            reply = pool.submit(requests.post, server.url + "/engines/v1/chat/completions", json=HI, timeout=120)
            assert wait_until(lambda: server.pool_status()["runners"][0]["refs"] == 1, timeout=30)
            time.sleep(0.3)  # the lease is held: the job is on its way into the stopped worker's socket
            os.kill(worker, signal.SIGKILL)
            response = reply.result(timeout=60)
    finally:
        if pid_alive(worker):  # never leave a stopped process behind a failed step
            os.kill(worker, signal.SIGKILL)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] is not None
    assert server.pool_status()["workers"][0]["restarts"] == 1
