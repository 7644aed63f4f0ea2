"""Anthropic Messages wire <-> internal representation, on bodies the official ``anthropic`` SDK sends.

Requests: the SDK, wired to an in-process transport, sends a body, which goes through ``schema``
and ``translate.to_*`` exactly as the routes do. Responses: hand-made :class:`GenerationChunk`
sequences go through ``message_response`` / ``stream_events``; the result is validated with the
SDK's own pydantic types in strict mode, and read back by the SDK itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2 as httpx  # the http client this anthropic release is built on
import jsonschema
import pytest
from anthropic.types import Message as SdkMessage
from anthropic.types import MessageTokensCount, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from pydantic import TypeAdapter, ValidationError

from dmr_core.dialects.anthropic import errors, schema, translate
from dmr_core.dialects.wire import describe
from dmr_core.errors import (
    DmrError,
    EngineError,
    EngineUnavailable,
    InvalidRequest,
    ModelNotFound,
    RequestTooLarge,
    UnsupportedParameter,
)
from dmr_core.generation import FinishReason, GenerationChunk, Message, ToolCall, ToolCallDelta, ToolChoice, Usage
from tests.anthropic.published_schema import check_count, check_events, check_message

MODEL = "ai/smollm2"
USER = [{"role": "user", "content": "Hello"}]
WEATHER = {
    "name": "get_weather",
    "description": "Weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CANNED = {
    "id": "msg_canned", "type": "message", "role": "assistant", "model": "m",
    "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 1, "output_tokens": 1},
}  # fmt: skip


def strict(type_: Any, value: Any) -> Any:
    """Validate ``value`` against one of the SDK's types, with no coercion at all."""
    return TypeAdapter(type_).validate_python(value, strict=True)


@dataclass
class FakeServer:
    """Records what the SDK sends; answers with a canned reply, or with ``reply`` when set."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    reply: tuple[int, str, str] | None = None

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        self.bodies.append(body)
        self.requests.append(request)
        if self.reply is not None:
            status, content_type, text = self.reply
        elif request.url.path.endswith("/count_tokens"):
            status, content_type, text = 200, "application/json", '{"input_tokens": 1}'
        elif body.get("stream"):
            frames = stream_of([GenerationChunk("ok", FinishReason.STOP, Usage(1, 1))])
            status, content_type, text = 200, "text/event-stream", "".join(frames)
        else:
            status, content_type, text = 200, "application/json", json.dumps(CANNED)
        return httpx.Response(status, headers={"content-type": content_type}, content=text.encode())

    @property
    def last(self) -> dict[str, Any]:
        return self.bodies[-1]

    def client(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            base_url="http://test", api_key="x", max_retries=0, _strict_response_validation=True,
            http_client=httpx.Client(transport=httpx.MockTransport(self.handle)),
        )  # fmt: skip


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def sdk(server: FakeServer) -> anthropic.Anthropic:
    return server.client()


def sent(server: FakeServer, sdk: anthropic.Anthropic, **kwargs) -> dict:
    kwargs.setdefault("messages", USER)
    kwargs.setdefault("max_tokens", 16)
    sdk.messages.create(model=MODEL, **kwargs)
    assert server.requests[-1].url.path == "/v1/messages"
    return server.last


def job(server, sdk, **kwargs):
    return translate.to_request(schema.MessagesRequest.model_validate(sent(server, sdk, **kwargs)))


def rejected(server, sdk, error=UnsupportedParameter, **kwargs) -> InvalidRequest:
    with pytest.raises(error) as info:
        job(server, sdk, **kwargs)
    return info.value


def stream_of(chunks: list[GenerationChunk]) -> list[str]:
    return list(translate.stream_events(MODEL, iter(chunks)))


def parse_sse(frames: list[str]) -> list[tuple[str, dict]]:
    out = []
    for frame in frames:
        assert frame.endswith("\n\n") and frame.count("\n") == 3, frame
        name_line, data_line = frame.strip("\n").split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        out.append((name_line[7:], json.loads(data_line[6:])))
    return out


# -- requests: messages --------------------------------------------------------------------------


def test_plain_chat_with_system_prompt(server, sdk):
    request = job(server, sdk, system="Be brief.", max_tokens=7)
    assert request.messages == (Message("system", "Be brief."), Message("user", "Hello"))
    assert request.sampling.max_tokens == 7
    assert request.tools == () and request.tool_choice == ToolChoice()


def test_system_as_text_blocks_with_cache_control(server, sdk):
    cached = {"type": "text", "text": "Two.", "cache_control": {"type": "ephemeral"}}
    system = [{"type": "text", "text": "One."}, cached]
    assert job(server, sdk, system=system).messages[0] == Message("system", "One.\nTwo.")


def test_text_blocks_and_base64_image(server, sdk):
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
    ]
    (message,) = job(server, sdk, messages=[{"role": "user", "content": content}]).messages
    assert message == Message("user", "What is this?", images=("data:image/png;base64,iVBORw0KGgo=",))


def test_image_url_source(server, sdk):
    data_url = {"type": "image", "source": {"type": "url", "url": "data:image/gif;base64,R0lG"}}
    (message,) = job(server, sdk, messages=[{"role": "user", "content": [data_url]}]).messages
    assert message.images == ("data:image/gif;base64,R0lG",)
    remote = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
    error = rejected(server, sdk, messages=[{"role": "user", "content": [remote]}])
    assert error.param == "messages[0].content[0].source.url" and "base64" in error.message


def test_document_block_is_rejected(server, sdk):
    document = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hi"}}
    error = rejected(server, sdk, messages=[{"role": "user", "content": [document]}])
    assert error.param == "messages[0].content[0]" and "document" in error.message


def test_trailing_assistant_message_is_a_prefill(server, sdk):
    messages = [{"role": "user", "content": "Answer in JSON."}, {"role": "assistant", "content": "{"}]
    assert job(server, sdk, messages=messages).messages[-1] == Message("assistant", "{")


def test_thinking_is_accepted_and_thinking_blocks_are_dropped(server, sdk):
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xx"},
            {"type": "text", "text": "Hello!"},
        ]},
        {"role": "user", "content": "Bye"},
    ]  # fmt: skip
    request = job(server, sdk, messages=messages, thinking={"type": "enabled", "budget_tokens": 1024}, max_tokens=2048)
    assert request.messages[1] == Message("assistant", "Hello!") and request.think is True
    disabled = job(server, sdk, thinking={"type": "disabled"})
    assert disabled.messages == (Message("user", "Hello"),) and disabled.think is False
    assert job(server, sdk).think is None  # the model's default; reasoning is not shown


# -- requests: tools -----------------------------------------------------------------------------


def test_tool_round_trip_history(server, sdk):
    messages = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18°C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "no data"}],
             "is_error": True},
            {"type": "text", "text": "Thanks"},
        ]},
    ]  # fmt: skip
    request = job(server, sdk, messages=messages, tools=[WEATHER])
    assert request.messages == (
        Message("user", "Weather in Paris and Rome?"),
        Message("assistant", "Let me check.", tool_calls=(
            ToolCall("toolu_1", "get_weather", '{"city":"Paris"}'),
            ToolCall("toolu_2", "get_weather", '{"city":"Rome"}'),
        )),
        Message("tool", "18°C", tool_call_id="toolu_1", name="get_weather"),
        Message("tool", "Error: no data", tool_call_id="toolu_2", name="get_weather"),
        Message("user", "Thanks"),
    )  # fmt: skip
    (tool,) = request.tools
    assert (tool.name, tool.description) == ("get_weather", "Weather of a city")
    assert tool.parameters == WEATHER["input_schema"]


def test_tool_results_only_add_no_empty_user_turn(server, sdk):
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]},
    ]
    request = job(server, sdk, messages=messages, tools=[WEATHER])
    assert [m.role for m in request.messages] == ["user", "assistant", "tool"]
    assert request.messages[1].tool_calls == (ToolCall("toolu_1", "get_weather", "{}"),)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, ToolChoice("auto")),
        ({"type": "any"}, ToolChoice("required", parallel=False)),  # one call by default, as llama.cpp's server
        ({"type": "tool", "name": "get_weather"}, ToolChoice("function", "get_weather")),
        ({"type": "none"}, ToolChoice("none")),
        ({"type": "any", "disable_parallel_tool_use": True}, ToolChoice("required", parallel=False)),
        ({"type": "any", "disable_parallel_tool_use": False}, ToolChoice("required", parallel=True)),
    ],
)
def test_tool_choice(server, sdk, choice, expected):
    assert job(server, sdk, tools=[WEATHER], tool_choice=choice).tool_choice == expected


def test_tool_choice_naming_an_unknown_tool_is_400(server, sdk):
    error = rejected(server, sdk, InvalidRequest, tools=[WEATHER], tool_choice={"type": "tool", "name": "nope"})
    assert error.param == "tool_choice.name"


def test_server_tools_are_rejected(server, sdk):
    error = rejected(server, sdk, tools=[WEATHER, {"type": "web_search_20250305", "name": "web_search"}])
    assert error.param == "tools[1].type" and "web_search_20250305" in error.message and error.status == 400


# -- requests: sampling and other options --------------------------------------------------------


def test_sampling_through_extra_body_and_stop_sequences(server, sdk):
    extra = {"temperature": 0.2, "top_p": 0.9, "top_k": 5}
    request = job(server, sdk, stop_sequences=["\n\n", "END"], extra_body=extra)
    sampling = request.sampling
    assert (sampling.temperature, sampling.top_p, sampling.top_k, sampling.stop) == (0.2, 0.9, 5, ("\n\n", "END"))


def test_ignored_options_are_accepted(server, sdk):
    request = job(server, sdk, metadata={"user_id": "u1"}, service_tier="auto", extra_body={"container": "c"})
    assert request.messages == (Message("user", "Hello"),)


def test_structured_output_format_becomes_a_response_format(server, sdk):
    shape = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    request = job(server, sdk, output_config={"format": {"type": "json_schema", "schema": shape}})
    assert (request.response_format.kind, request.response_format.schema) == ("json_schema", shape)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": MODEL, "messages": USER}, "max_tokens"),
        ({"model": MODEL, "messages": USER, "max_tokens": 0}, "max_tokens"),
        ({"messages": USER, "max_tokens": 5}, "model"),
        ({"model": MODEL, "messages": [], "max_tokens": 5}, "messages"),
        ({"model": MODEL, "messages": USER, "max_tokens": 5, "temperature": 1.5}, "temperature"),
        ({"model": MODEL, "messages": [{"role": "tool", "content": "x"}], "max_tokens": 5}, "messages[0].role"),
    ],
)
def test_invalid_bodies_name_the_parameter(body, param):
    with pytest.raises(ValidationError) as info:
        schema.MessagesRequest.model_validate(body)
    assert describe(info.value).param == param


def test_count_tokens_body(server, sdk):
    count = sdk.messages.count_tokens(model=MODEL, messages=USER, system="Sys", tools=[WEATHER])
    assert server.requests[-1].url.path == "/v1/messages/count_tokens"
    assert count.input_tokens == 1
    request = translate.to_count_request(schema.CountTokensRequest.model_validate(server.last))
    assert request.messages == (Message("system", "Sys"), Message("user", "Hello"))
    assert request.tools[0].name == "get_weather"
    strict(MessageTokensCount, check_count(translate.count_response(42)))


def test_sdk_sends_an_api_key_header_and_a_version(server, sdk):
    sent(server, sdk)
    headers = server.requests[-1].headers
    assert "anthropic-version" in headers
    assert headers.get("x-api-key") == "x" or headers.get("authorization") == "Bearer x"


# -- responses -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("finish", "reason"),
    [(FinishReason.STOP, "end_turn"), (FinishReason.LENGTH, "max_tokens"), (FinishReason.CANCELLED, "end_turn")],
)
def test_text_response(finish, reason):
    chunks = [GenerationChunk("Hel"), GenerationChunk("lo", finish, Usage(11, 2))]
    body = check_message(translate.message_response(MODEL, chunks))
    message = strict(SdkMessage, body)
    assert message.id.startswith("msg_") and message.model == MODEL
    assert [(b.type, b.text) for b in message.content] == [("text", "Hello")]
    assert (message.stop_reason, message.stop_sequence) == (reason, None)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 2)


def tool_chunks() -> list[GenerationChunk]:
    return [
        GenerationChunk("Checking."),
        GenerationChunk(tool_calls=(ToolCallDelta(0, "call_abc", "get_weather", '{"ci'),)),
        GenerationChunk(tool_calls=(ToolCallDelta(0, arguments='ty": "Paris"}'),)),
        GenerationChunk(tool_calls=(ToolCallDelta(1, "call_def", "get_weather", '{"city": "Rome"}'),)),
        GenerationChunk("", FinishReason.TOOL_CALLS, Usage(30, 20)),
    ]


def test_tool_use_response():
    message = strict(SdkMessage, check_message(translate.message_response(MODEL, tool_chunks())))
    assert message.stop_reason == "tool_use"
    text, first, second = message.content
    assert text.text == "Checking."
    assert (first.type, first.id, first.name) == ("tool_use", "toolu_abc", "get_weather")
    assert first.input == {"city": "Paris"}
    assert (second.id, second.input) == ("toolu_def", {"city": "Rome"})


def test_tool_call_only_response_has_no_text_block():
    chunks = [GenerationChunk(tool_calls=(ToolCallDelta(0, None, "get_weather", "{}"),)),
              GenerationChunk("", FinishReason.TOOL_CALLS, Usage(3, 4))]  # fmt: skip
    message = strict(SdkMessage, translate.message_response(MODEL, chunks))
    (block,) = message.content
    assert block.type == "tool_use" and block.id.startswith("toolu_") and block.input == {}


def test_tool_arguments_that_are_not_an_object_are_an_engine_error():
    chunks = [GenerationChunk(tool_calls=(ToolCallDelta(0, "c", "f", "[1]"),)),
              GenerationChunk("", FinishReason.TOOL_CALLS)]  # fmt: skip
    with pytest.raises(EngineError):
        translate.message_response(MODEL, chunks)


def test_empty_reply_has_one_empty_text_block():
    body = check_message(translate.message_response(MODEL, [GenerationChunk("", FinishReason.STOP, Usage(5, 1))]))
    message = strict(SdkMessage, body)
    assert [(b.type, b.text) for b in message.content] == [("text", "")]


# -- streaming -----------------------------------------------------------------------------------


def test_stream_event_order_and_types():
    chunks = [GenerationChunk("Hel"), GenerationChunk("lo"), GenerationChunk("", FinishReason.LENGTH, Usage(9, 2))]
    frames = stream_of(chunks)
    check_events("".join(frames))
    events = parse_sse(frames)
    for name, data in events:
        assert name == data["type"]
        if name != "ping":
            strict(RawMessageStreamEvent, data)
    assert [name for name, _ in events] == [
        "message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    start, delta = events[0][1]["message"], events[-2][1]
    assert (start["usage"]["input_tokens"], start["usage"]["output_tokens"], start["stop_reason"]) == (0, 0, None)
    assert delta["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None,
                              "stop_details": None, "container": None}  # fmt: skip
    assert delta["usage"] == {"input_tokens": 9, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                              "output_tokens": 2, "output_tokens_details": None,
                              "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0}}  # fmt: skip


def test_every_field_anthropic_always_sends_is_there():
    body = translate.message_response(MODEL, [GenerationChunk("Hi", FinishReason.STOP, Usage(7, 1))])
    assert body["usage"] == {
        "input_tokens": 7, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}, "output_tokens": 1,
        "output_tokens_details": None, "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
        "service_tier": "standard", "inference_geo": "not_available",
    }  # fmt: skip
    assert body["content"] == [{"type": "text", "text": "Hi", "citations": None}]
    assert (body["stop_details"], body["container"]) == (None, None)
    call = translate.message_response(MODEL, tool_chunks())["content"][1]
    assert call["caller"] == {"type": "direct"}


@pytest.mark.parametrize("path", [
    ("usage", "cache_creation_input_tokens"), ("usage", "cache_read_input_tokens"), ("usage", "cache_creation"),
    ("usage", "service_tier"), ("usage", "server_tool_use"), ("usage", "inference_geo"), ("content", 0, "citations"),
    ("stop_details",),
])  # fmt: skip
def test_the_published_schema_refuses_a_reply_without_one_of_them(path):
    body = check_message(translate.message_response(MODEL, [GenerationChunk("Hi", FinishReason.STOP, Usage(7, 1))]))
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    with pytest.raises(jsonschema.ValidationError):
        check_message(body)


@pytest.mark.parametrize("stream", [False, True])
def test_prompt_tokens_the_kv_cache_held_are_cache_reads_not_input_tokens(stream, server, sdk):
    # Anthropic's definition: input_tokens + cache_read_input_tokens (+ cache writes) = the prompt.
    chunks = [GenerationChunk("", usage=Usage(40, 0)), GenerationChunk("Hi", FinishReason.STOP, Usage(40, 1, 31))]
    if stream:
        server.reply = (200, "text/event-stream", "".join(check_frames(stream_of(chunks))))
        with sdk.messages.stream(model=MODEL, max_tokens=16, messages=USER) as events:
            usage = events.get_final_message().usage
    else:
        usage = strict(SdkMessage, check_message(translate.message_response(MODEL, chunks))).usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (9, 31, 0)
    assert usage.output_tokens == 1


def check_frames(frames: list[str]) -> list[str]:
    check_events("".join(frames))
    return frames


def test_message_start_takes_input_tokens_from_an_early_usage_chunk():
    early = GenerationChunk("", usage=Usage(17, 0))  # an engine that reports the prompt's size first
    events = parse_sse(stream_of([early, GenerationChunk("Hi"), GenerationChunk("", FinishReason.STOP, Usage(17, 1))]))
    assert events[0][1]["message"]["usage"]["input_tokens"] == 17
    assert [name for name, _ in events][1:4] == ["content_block_start", "ping", "content_block_delta"]


def test_stream_with_tool_calls_event_indices():
    events = parse_sse(check_frames(stream_of(tool_chunks())))
    starts = [(d["index"], d["content_block"]["type"]) for n, d in events if n == "content_block_start"]
    assert starts == [(0, "text"), (1, "tool_use"), (2, "tool_use")]
    stops = [d["index"] for n, d in events if n == "content_block_stop"]
    assert stops == [0, 1, 2]
    pieces = [d["delta"]["partial_json"] for n, d in events if n == "content_block_delta" and d["index"] == 1]
    assert "".join(pieces) == '{"city": "Paris"}'
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_empty_stream_still_has_a_text_block():
    events = parse_sse(stream_of([GenerationChunk("", FinishReason.STOP, Usage(4, 1))]))
    assert [n for n, _ in events] == [
        "message_start", "content_block_start", "ping", "content_block_stop", "message_delta", "message_stop"
    ]
    assert events[0][1]["message"]["usage"]["input_tokens"] == 4


def thinking_chunks() -> list[GenerationChunk]:
    return [GenerationChunk(reasoning="Let me see. "), GenerationChunk("Hel", reasoning="Easy."), GenerationChunk("lo"),
            GenerationChunk("", FinishReason.STOP, Usage(9, 5))]  # fmt: skip


def test_thinking_blocks_only_when_enabled():
    message = strict(SdkMessage, check_message(translate.message_response(MODEL, thinking_chunks(), thinking=True)))
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert (message.content[0].thinking, message.content[0].signature) == ("Let me see. Easy.", "")
    assert message.content[1].text == "Hello"
    plain = strict(SdkMessage, translate.message_response(MODEL, thinking_chunks()))
    assert [(b.type, b.text) for b in plain.content] == [("text", "Hello")]  # split off, not shown


def test_thinking_streams_before_the_text(server, sdk):
    events = parse_sse(check_frames(list(translate.stream_events(MODEL, iter(thinking_chunks()), thinking=True))))
    for name, data in events:
        if name != "ping":
            strict(RawMessageStreamEvent, data)
    deltas = [(d["index"], d["delta"]["type"]) for n, d in events if n == "content_block_delta"]
    assert deltas == [(0, "thinking_delta"), (0, "thinking_delta"), (0, "signature_delta"),
                      (1, "text_delta"), (1, "text_delta")]  # fmt: skip
    server.reply = (200, "text/event-stream", "".join(translate.stream_events(MODEL, iter(thinking_chunks()), True)))
    with sdk.messages.stream(model=MODEL, max_tokens=16, messages=USER) as stream:
        message = stream.get_final_message()
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "Let me see. Easy." and message.content[1].text == "Hello"
    hidden = parse_sse(stream_of(thinking_chunks()))
    assert [d["content_block"]["type"] for n, d in hidden if n == "content_block_start"] == ["text"]


def test_sdk_reads_our_stream(server, sdk):
    server.reply = (200, "text/event-stream", "".join(stream_of(tool_chunks())))
    with sdk.messages.stream(model=MODEL, max_tokens=16, messages=USER) as stream:
        message = stream.get_final_message()
    assert message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[1].input == {"city": "Paris"}
    assert (message.usage.input_tokens, message.usage.output_tokens) == (30, 20)


def test_sdk_reads_our_raw_stream(server, sdk):
    frames = stream_of([GenerationChunk("Hi"), GenerationChunk(" there", FinishReason.STOP, Usage(3, 2))])
    server.reply = (200, "text/event-stream", "".join(frames))
    events = list(sdk.messages.create(model=MODEL, max_tokens=16, messages=USER, stream=True))
    assert [e.type for e in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip (the SDK drops ping events)


def test_stream_without_a_final_chunk_fails():
    with pytest.raises(EngineError):
        stream_of([GenerationChunk("cut")])


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (InvalidRequest("bad"), 400, "invalid_request_error"),
        (ModelNotFound("no such model"), 404, "not_found_error"),
        (RequestTooLarge("request too large"), 413, "request_too_large"),
        (EngineUnavailable("pool down"), 503, "overloaded_error"),
        (EngineError("boom"), 500, "api_error"),
    ],
)
def test_error_shape(error: DmrError, status, kind):
    response = errors.render_error(error)
    body = json.loads(response.get_data())
    assert response.status_code == status
    assert body["type"] == "error" and body["error"] == {"type": kind, "message": error.message}
    assert body["request_id"].startswith("req_") and response.headers["request-id"] == body["request_id"]
    if kind != "request_too_large":  # the SDK's error union lacks this one documented type
        strict(ErrorResponse, body)


@pytest.mark.parametrize(
    ("error", "sdk_error"),
    [(InvalidRequest("bad"), anthropic.BadRequestError), (ModelNotFound("x"), anthropic.NotFoundError),
     (RequestTooLarge("big"), anthropic.RequestTooLargeError), (EngineError("x"), anthropic.InternalServerError)],
)  # fmt: skip
def test_sdk_raises_the_matching_error_class(server, sdk, error, sdk_error):
    response = errors.render_error(error)
    server.reply = (response.status_code, "application/json", response.get_data(as_text=True))
    with pytest.raises(sdk_error) as info:
        sent(server, sdk)
    assert info.value.body["error"]["message"] == error.message


def test_mid_stream_error_is_raised_by_the_sdk(server, sdk):
    frames = stream_of([GenerationChunk("Hi"), GenerationChunk("", FinishReason.STOP, Usage(1, 1))])[:4]
    server.reply = (200, "text/event-stream", "".join(frames) + errors.stream_error(EngineError("worker died")))
    with pytest.raises(anthropic.APIStatusError) as info:
        with sdk.messages.stream(model=MODEL, max_tokens=16, messages=USER) as stream:
            stream.get_final_message()
    assert info.value.body["error"] == {"type": "api_error", "message": "worker died"}
