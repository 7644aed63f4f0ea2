"""The first token leaves the worker at once: tokens are coalesced into one frame only while the
reader is behind, never by waiting out ``stream_flush_interval``."""

import json
import socket

import pytest
import requests

from dmr_core.generation import FinishReason, GenerationChunk, Usage
from dmr_core.pool.protocol import FrameReader
from dmr_core.pool.worker import ChunkSender
from dmr_core.testing import start_server, stop_server
from tests.pool.test_disconnect import COUNTING, MODEL

#: A coalescing window far longer than the first token takes: waiting it out would show.
WINDOW = 2.0
#: Enough tokens that the generation outlasts the window (~11 ms a token on a CPU).
TOKENS = 300


@pytest.fixture(scope="module")
def long_window_server(model_store):
    server = start_server(model_store, DMR_STREAM_FLUSH_INTERVAL=str(WINDOW))
    try:
        yield server
    finally:
        stop_server(server)


def streamed(server, body: dict) -> tuple[list[str], dict]:
    """The text of each event of a streamed completion, and its usage."""
    texts, usage = [], {}
    with requests.post(server.url + "/v1/completions", json={**body, "stream": True,
                       "stream_options": {"include_usage": True}}, stream=True, timeout=300) as reply:  # fmt: skip
        reply.raise_for_status()
        for line in reply.iter_lines():
            if line.startswith(b"data: {"):
                event = json.loads(line[6:])
                if event["choices"] and event["choices"][0]["text"]:
                    texts.append(event["choices"][0]["text"])
                usage = event.get("usage") or usage
    return texts, usage


def test_first_token_does_not_wait_for_the_coalescing_window(long_window_server):
    """Had the first token waited for the window, its event would carry every token made meanwhile
    (a check that holds however slow a busy machine makes the tokens)."""
    body = {"model": MODEL, "prompt": COUNTING, "max_tokens": TOKENS, "temperature": 0}
    whole = requests.post(long_window_server.url + "/v1/completions", json={**body, "logprobs": 0},
                          timeout=300).json()["choices"][0]  # fmt: skip
    texts, usage = streamed(long_window_server, body)
    assert texts[0] == whole["logprobs"]["tokens"][0], f"the first event carried {texts[0]!r}: it waited"
    assert len(texts) < TOKENS / 4  # the tokens after it were coalesced
    assert usage["completion_tokens"] == TOKENS
    assert "".join(texts) == whole["text"]


def frames(reader: FrameReader, count: int) -> list[dict]:
    return [reader.read() for _ in range(count)]


def test_first_text_and_end_leave_at_once_and_text_between_is_coalesced():
    worker_end, client_end = socket.socketpair()
    with worker_end, client_end:
        sender, reader = ChunkSender(worker_end, interval=60.0), FrameReader(client_end)
        sender.add(GenerationChunk(usage=Usage(2, 0)))  # the prompt size, before evaluation
        sender.add(GenerationChunk("a"))  # the first text: at once, though the usage frame is unread
        assert frames(reader, 2) == [{"k": "c", "t": "", "u": [2, 0, 0]}, {"k": "c", "t": "a"}]
        sender.add(GenerationChunk("b"))  # within the interval: held
        sender.add(GenerationChunk("c"))
        sender.add(GenerationChunk("", FinishReason.LENGTH, Usage(2, 3)))  # the end takes what is held, at once
        assert frames(reader, 1) == [{"k": "c", "t": "bc", "f": "length", "u": [2, 3, 0]}]


def test_every_token_is_its_own_frame_while_the_reader_keeps_up():
    worker_end, client_end = socket.socketpair()
    with worker_end, client_end:
        sender, reader = ChunkSender(worker_end, interval=0.0), FrameReader(client_end)
        for piece in "xyz":
            sender.add(GenerationChunk(piece))
            assert reader.read() == {"k": "c", "t": piece}


def test_tokens_are_held_while_the_reader_is_behind():
    worker_end, client_end = socket.socketpair()
    with worker_end, client_end:
        sender, reader = ChunkSender(worker_end, interval=0.0), FrameReader(client_end)
        sender.add(GenerationChunk("x"))
        sender.add(GenerationChunk("y"))  # "x" is still unread: held
        assert frames(reader, 1) == [{"k": "c", "t": "x"}]
        sender.add(GenerationChunk("z"))  # caught up: "y" and "z" leave together
        assert frames(reader, 1) == [{"k": "c", "t": "yz"}]
