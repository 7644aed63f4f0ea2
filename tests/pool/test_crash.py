"""A crashed inference worker fails only its own jobs and is respawned; so is the supervisor."""

import concurrent.futures
import json
import os
import signal

import openai
import pytest
import requests

from dmr_core.testing import openai_client_for, pid_alive, wait_until
from tests.support.long_stories import LONG_STORY, NEVER_ENDS

LONG = dict(model="ai/smollm2", max_tokens=2000, temperature=1.0, stream=True, messages=LONG_STORY,
            logit_bias=NEVER_ENDS)


def test_worker_killed_mid_stream_fails_that_stream_and_recovers(private_server):
    client = openai_client_for(private_server)
    worker_pid = private_server.pool_status()["workers"][0]["pid"]
    stream = client.chat.completions.create(**LONG)
    received = 0
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received += 1
            if received == 5:
                os.kill(worker_pid, signal.SIGKILL)
    assert "inference worker" in caught.value.message
    assert wait_until(lambda: not pid_alive(worker_pid))
    reply = client.chat.completions.create(model="ai/smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert reply.choices[0].message.content
    status = private_server.pool_status()["workers"][0]
    assert status["restarts"] == 1 and status["pid"] != worker_pid


def test_supervisor_killed_is_restarted_and_adopts_its_worker(private_server):
    client = openai_client_for(private_server)
    client.chat.completions.create(model="ai/smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=1)
    old = private_server.pool_status()
    os.kill(old["pid"], signal.SIGKILL)
    reply = client.chat.completions.create(model="ai/smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert reply.choices[0].message.content
    new = private_server.pool_status()
    assert new["pid"] != old["pid"]
    # The old supervisor's worker waited for the new one, which adopted it with its model loaded.
    assert new["workers"][0]["pid"] == old["workers"][0]["pid"] and new["workers"][0]["alive"]
    assert [r["model_path"] for r in new["runners"]] == [r["model_path"] for r in old["runners"]]
    assert private_server.log().count("[worker cpu] INFO loaded ") == 1


def test_a_worker_left_without_a_server_exits(private_server):
    """Killing the master and the supervisor at once: nobody adopts the worker, which leaves."""
    old = private_server.pool_status()
    os.kill(old["pid"], signal.SIGKILL)
    private_server.process.kill()
    private_server.process.wait()
    assert wait_until(lambda: not pid_alive(old["workers"][0]["pid"]), timeout=15)


def test_stopping_the_server_leaves_no_pool_process(private_server):
    client = openai_client_for(private_server)
    client.chat.completions.create(model="ai/smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    pids = private_server.pool_pids()
    assert len(pids) == 2 and all(pid_alive(p) for p in pids)
    private_server.stop()
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=15)


def test_server_killed_hard_leaves_no_pool_process(private_server):
    pids = private_server.pool_pids()
    private_server.process.kill()  # SIGKILL: no on_exit hook runs; the kernel tells the pool
    private_server.process.wait()
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=15)


def _generation_running(server) -> bool:
    path = server.pool_dir / "worker-0.activity"
    state = json.loads(path.read_text()) if path.exists() else {}
    return any(entry["op"] == "generate" for entry in state.get("running", []))


#: A long non-streamed request in each dialect, and how its error must look.
NON_STREAMED = {
    "openai": ("/engines/v1/chat/completions", {**LONG, "stream": False}, lambda body: body["error"]["message"]),
    "anthropic": ("/v1/messages", {"model": "ai/smollm2", "max_tokens": 2000, "messages": LONG["messages"]},
                  lambda body: body["type"] == "error" and body["error"]["message"]),
    "ollama": ("/api/chat", {"model": "ai/smollm2", "stream": False, "messages": LONG["messages"],
                             "options": {"num_predict": 2000}}, lambda body: body["error"]),
}  # fmt: skip


@pytest.mark.parametrize("dialect", sorted(NON_STREAMED))
def test_a_native_crash_fails_the_request_in_its_dialect_and_the_log_names_it(private_server, dialect):
    """A segfault in the engine (as ggml's AMX path does on some CPUs) answers the waiting
    client with a clear error in its own shape, and the pool's log says what was running."""
    path, body, message_of = NON_STREAMED[dialect]
    worker_pid = private_server.pool_status()["workers"][0]["pid"]
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        reply = executor.submit(requests.post, private_server.url + path, json=body, timeout=120)
        assert wait_until(lambda: _generation_running(private_server), timeout=60)
        os.kill(worker_pid, signal.SIGSEGV)
        response = reply.result(timeout=60)
    assert response.status_code in (500, 503), response.text
    assert "inference worker" in message_of(response.json())
    assert wait_until(lambda: "was killed by SIGSEGV (-11) while running generate on ai/smollm2" in private_server.log(),
                      timeout=15), private_server.log()[-3000:]
