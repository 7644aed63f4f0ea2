"""Parallel slots: with ``parallel = 2`` two requests to one model decode together, a third waits
for a slot, and past ``max_queue`` waiting ones the next gets a 503. Grammar, log probabilities
and a client leaving work inside a batch.

Overlap is observed through the worker's job counts and streams that both advance, never timing.
"""

import json

import jsonschema
import pytest

from dmr_core.testing import wait_until
from tests.engines.conftest import MODEL, HeldStream, InThread, chat

#: Batched rows take another matrix-multiply path in ggml than a lone one: logits move by up to
#: ~0.1 nats (see plugins/dmr-llamacpp/tests/test_batch.py), so a near-tie can flip a greedy
#: choice ("What is the capital of France?" has two tokens 0.02 apart at its 8th). The questions
#: below have no such tie in their first 10 tokens (measured), so any difference is a real bug.
GREEDY = {"temperature": 0, "seed": 11, "max_tokens": 10}
QUESTIONS = ["Count from 1 to 10.", "Name three colours."]


@pytest.fixture(scope="module")
def parallel_server(server_with):
    return server_with(DMR_PARALLEL="2", DMR_MAX_QUEUE="1")


@pytest.fixture
def server(parallel_server):
    """The server, once the jobs of earlier tests (closed streams) have all ended."""
    assert wait_until(lambda: running(parallel_server) == 0, timeout=30)
    return parallel_server


def running(server) -> int:
    return server.worker_stats()["jobs"]["running"]


def content_lines(stream: HeldStream, count: int) -> list[bytes]:
    lines = []
    for line in stream.lines:
        if line.startswith(b"data: {") and b'"content"' in line:
            lines.append(line)
            if len(lines) == count:
                break
    return lines


def answer(server, content, **extra):
    response = chat(server, content, **{**GREEDY, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def test_two_streams_decode_at_the_same_time(server):
    first = HeldStream(server)
    try:
        second = HeldStream(server)  # with one slot this would wait for the first's 4000 tokens
        try:
            assert wait_until(lambda: running(server) == 2, timeout=30)
            for _ in range(3):  # both keep streaming, in turn
                assert len(content_lines(first, 2)) == 2
                assert len(content_lines(second, 2)) == 2
        finally:
            second.close()
    finally:
        first.close()


def test_concurrent_greedy_answers_equal_lone_ones_with_their_usage(server):
    lone = [answer(server, q) for q in QUESTIONS]
    together = [InThread(lambda q=q: answer(server, q)) for q in QUESTIONS]
    for expected, call in zip(lone, together):
        got = call.result()
        assert got["choices"][0]["message"]["content"] == expected["choices"][0]["message"]["content"]
        # Counts match; how much of the prompt a slot's KV cache still held (cached_tokens)
        # depends on which slot the job landed in, so it only has to be a part of the prompt.
        for count in ("prompt_tokens", "completion_tokens", "total_tokens"):
            assert got["usage"][count] == expected["usage"][count]
        assert 0 <= got["usage"]["prompt_tokens_details"]["cached_tokens"] < got["usage"]["prompt_tokens"]
        assert got["usage"]["completion_tokens"] == 10


def test_a_third_request_queues_and_the_next_is_refused(server):
    held = [HeldStream(server), HeldStream(server)]
    try:
        assert wait_until(lambda: running(server) == 2, timeout=30)
        waiting = InThread(lambda: chat(server, max_tokens=4))
        assert wait_until(lambda: running(server) == 3, timeout=30)
        refused = chat(server)
        assert refused.status_code == 503
        assert "too many requests queued" in refused.json()["error"]["message"]
        held.pop().close()  # a slot frees: the waiting request runs
        done = waiting.result()
        assert done.status_code == 200 and done.json()["usage"]["completion_tokens"] == 4
    finally:
        for stream in held:
            stream.close()


def test_a_client_leaving_does_not_disturb_the_other_stream(server):
    cancelled_before = server.worker_stats()["jobs"]["cancelled"]
    leaving, staying = HeldStream(server), HeldStream(server)
    try:
        assert wait_until(lambda: running(server) == 2, timeout=30)
        leaving.close()
        assert wait_until(lambda: server.worker_stats()["jobs"]["cancelled"] == cancelled_before + 1, timeout=30)
        assert running(server) == 1
        lines = content_lines(staying, 20)
        assert len(lines) == 20 and all(json.loads(line[6:])["choices"][0]["finish_reason"] is None for line in lines)
    finally:
        staying.close()


def test_structured_output_and_logprobs_inside_a_batch(server):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}  # fmt: skip
    held = HeldStream(server)  # the other slot is busy decoding throughout
    try:
        structured = answer(server, "Describe a cat.", max_tokens=80,
                            response_format={"type": "json_schema", "json_schema": {"name": "cat", "schema": schema}})
        jsonschema.validate(json.loads(structured["choices"][0]["message"]["content"]), schema)
        with_logprobs = answer(server, "Say hi.", logprobs=True, top_logprobs=2)
        content = with_logprobs["choices"][0]["logprobs"]["content"]
        assert len(content) == with_logprobs["usage"]["completion_tokens"]
        assert all(len(entry["top_logprobs"]) == 2 and entry["logprob"] <= 0 for entry in content)
        assert len(content_lines(held, 2)) == 2  # and the held stream still streams
    finally:
        held.close()
