"""A client that goes away frees the inference worker within about a token: mid-stream, before a
stream's first token, and while it waits for a non-streamed reply, in every dialect."""

import json
import select
import socket
import time

import pytest
import requests

from dmr_core.testing import wait_until
from tests.support.long_stories import LONG_STORY, NEVER_ENDS

MODEL = "ai/smollm2"
#: Greedy SmolLM2 counts on for thousands of tokens after these (checked: no end-of-turn in 1,500).
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"
ASK_TO_COUNT = [{"role": "user", "content": "Count from 1 to 1000, separated by commas."}]
WRITE_THE_COUNT = [{"role": "user", "content": "Write the numbers from 1 to 1000, separated by commas."}]
#: The text must be long, so the forced call below cannot end within the test's first second: greedy SmolLM2
#: closes a free string after "123", which a slow machine takes longer than a second to reach and a fast one not.
WRITE = {"type": "function", "function": {"name": "write", "description": "Writes a text down",
         "parameters": {"type": "object", "properties": {"text": {"type": "string", "minLength": 3000}},
                        "required": ["text"]}}}
LONG = 3500
#: How soon a job must end once its client left (it stops within a token; the machine may be busy).
PROMPTLY = 10.0

#: A long non-streamed generation in each dialect: path and body.
NON_STREAMED = {
    "openai-chat": ("/engines/v1/chat/completions",
                    {"model": MODEL, "messages": ASK_TO_COUNT, "max_tokens": LONG, "temperature": 0}),
    # What a public compatibility probe sends: a forced call with no max_tokens (its string must be long).
    "openai-forced-tool-call": ("/v1/chat/completions",
                                {"model": MODEL, "messages": WRITE_THE_COUNT, "tools": [WRITE], "temperature": 0,
                                 "tool_choice": {"type": "function", "function": {"name": "write"}}}),
    "openai-completions": ("/v1/completions",
                           {"model": MODEL, "prompt": COUNTING, "max_tokens": LONG, "temperature": 0}),
    "openai-responses": ("/v1/responses", {"model": MODEL, "input": ASK_TO_COUNT, "max_output_tokens": LONG,
                                           "temperature": 0}),
    "anthropic-messages": ("/anthropic/v1/messages",
                           {"model": MODEL, "messages": ASK_TO_COUNT, "max_tokens": LONG, "temperature": 0}),
    "ollama-chat": ("/api/chat", {"model": MODEL, "messages": ASK_TO_COUNT, "stream": False,
                                  "options": {"num_predict": LONG, "temperature": 0}}),
    "ollama-generate": ("/api/generate", {"model": MODEL, "prompt": COUNTING, "raw": True, "stream": False,
                                          "options": {"num_predict": LONG, "temperature": 0}}),
}  # fmt: skip


def idle_jobs(server) -> dict:
    """The worker's job counts, once no job runs (a previous test's may still be winding down)."""
    assert wait_until(lambda: server.worker_stats()["jobs"]["running"] == 0, timeout=60)
    return server.worker_stats()["jobs"]


def send(server, path: str, body: dict, then: bytes = b"") -> socket.socket:
    """A raw HTTP/1.1 POST of ``body`` (``then``: bytes sent right behind it, a pipelined request)."""
    data = json.dumps(body).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(head.encode() + data + then)
    return sock


def answered(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def wait_running(server, sock: socket.socket) -> None:
    assert wait_until(lambda: server.worker_stats()["jobs"]["running"] == 1, timeout=60), "the job never started"
    time.sleep(1.0)  # well into its generation
    assert not answered(sock), "the generation ended before the client left: it should run for minutes"


def cancelled_after_leaving(server, sock: socket.socket, before: dict) -> float:
    """Close ``sock``; the seconds until the worker counted the job as cancelled."""
    sock.close()
    left = time.monotonic()
    assert wait_until(lambda: server.worker_stats()["jobs"]["cancelled"] > before["cancelled"], timeout=60)
    return time.monotonic() - left


def served_at_once(server) -> None:
    reply = requests.post(server.url + "/v1/completions", timeout=30,
                          json={"model": MODEL, "prompt": "Hello", "max_tokens": 3})  # fmt: skip
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] >= 1


def test_disconnect_cancels_the_job(dmr_server, openai_client):
    before = dmr_server.worker_stats()["jobs"]
    body = {"model": "ai/smollm2", "stream": True, "max_tokens": 3000, "temperature": 1.0,
            "messages": LONG_STORY, "logit_bias": NEVER_ENDS}  # fmt: skip
    with requests.post(dmr_server.url + "/engines/v1/chat/completions", json=body, stream=True) as response:
        lines = response.iter_lines()
        seen = [json.loads(line[6:]) for line, _ in zip((l for l in lines if l.startswith(b"data: ")), range(5))]
        assert len(seen) == 5
    # The socket is closed now; the worker must notice and end the job as cancelled.
    assert wait_until(lambda: dmr_server.worker_stats()["jobs"]["cancelled"] > before["cancelled"], timeout=20)
    assert dmr_server.worker_stats()["jobs"]["running"] == 0
    reply = openai_client.chat.completions.create(model="ai/smollm2", messages=[{"role": "user", "content": "Hi"}],
                                                  max_tokens=3)  # fmt: skip
    assert reply.choices[0].message.content


@pytest.mark.parametrize(("path", "body"), NON_STREAMED.values(), ids=NON_STREAMED.keys())
def test_a_client_that_leaves_a_non_streamed_generation_cancels_it(dmr_server, path, body):
    before = idle_jobs(dmr_server)
    client = send(dmr_server, path, body)
    wait_running(dmr_server, client)
    assert cancelled_after_leaving(dmr_server, client, before) < PROMPTLY
    after = dmr_server.worker_stats()["jobs"]
    assert after["running"] == 0 and after["completed"] == before["completed"]
    served_at_once(dmr_server)


def test_a_pipelined_next_request_is_not_a_departure(dmr_server):
    path, body = NON_STREAMED["openai-completions"]
    before = idle_jobs(dmr_server)
    client = send(dmr_server, path, body, then=b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_running(dmr_server, client)
    time.sleep(1.5)  # three polls of the watch behind the pipelined bytes
    jobs = dmr_server.worker_stats()["jobs"]
    assert jobs["running"] == 1 and jobs["cancelled"] == before["cancelled"]
    assert cancelled_after_leaving(dmr_server, client, before) < PROMPTLY


def long_prompt(tag: str) -> str:
    """About 2,500 tokens (five evaluation steps of 512) that share no prefix with another tag's."""
    return f"{tag}: " + "apple " * 2500


def test_a_stream_left_during_its_prompt_evaluation_stops_before_its_first_token(dmr_server):
    """Before its first token a stream writes nothing, so only the watch on the client can tell."""
    served_at_once(dmr_server)  # loaded: the timing below is the prompt's evaluation only
    started = time.monotonic()
    reply = requests.post(dmr_server.url + "/v1/completions", timeout=300,
                          json={"model": MODEL, "prompt": long_prompt("first"), "max_tokens": 1})  # fmt: skip
    evaluation = time.monotonic() - started
    assert reply.status_code == 200, reply.text
    before = idle_jobs(dmr_server)
    body = {"model": MODEL, "prompt": long_prompt("second"), "max_tokens": 50, "stream": True}
    client = send(dmr_server, "/v1/completions", body)
    assert wait_until(lambda: dmr_server.worker_stats()["jobs"]["running"] == 1, timeout=60)
    assert not answered(client)  # still evaluating the prompt: the response has not started
    waited = cancelled_after_leaving(dmr_server, client, before)
    # Noticed within a step of the evaluation (512 tokens of 2,500), not once the first token came.
    assert waited < evaluation / 2, (waited, evaluation)
    assert dmr_server.worker_stats()["jobs"]["running"] == 0
