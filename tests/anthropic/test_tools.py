"""Tool use through the official client: the model calls a tool, the client answers it."""

import pytest
import requests

from tests.anthropic.published_schema import check_events, check_message

MODEL = "ai/smollm2"
WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def history(call_id: str = "toolu_01") -> list[dict]:
    return ASK + [
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": call_id, "name": "get_weather", "input": {"city": "Paris"}},
        ]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": "Sunny, 24 degrees"}]},
    ]  # fmt: skip


def test_forced_tool_call(client):
    message = client.messages.create(model=MODEL, messages=ASK, max_tokens=64, tools=[WEATHER],
                                     tool_choice={"type": "tool", "name": "get_weather"},
                                     extra_body={"temperature": 0})  # fmt: skip
    assert message.stop_reason == "tool_use"
    call = next(block for block in message.content if block.type == "tool_use")
    assert call.id.startswith("toolu_") and call.name == "get_weather"
    assert isinstance(call.input, dict) and isinstance(call.input.get("city"), str)


def test_streamed_tool_call_equals_non_streamed(client):
    args = dict(model=MODEL, messages=ASK, max_tokens=64, tools=[WEATHER],
                tool_choice={"type": "any", "disable_parallel_tool_use": True},
                extra_body={"temperature": 0})  # fmt: skip
    whole = client.messages.create(**args)
    with client.messages.stream(**args) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == whole.stop_reason == "tool_use"
    streamed = [(b.name, b.input) for b in final.content if b.type == "tool_use"]
    assert streamed == [(b.name, b.input) for b in whole.content if b.type == "tool_use"]


def calls_of(dmr_server, stream: bool = False, **body) -> list[dict]:
    """The tool_use blocks of a raw reply, which is checked against Anthropic's published schema."""
    body = {"model": MODEL, "messages": ASK, "max_tokens": 120, "tools": [WEATHER], "temperature": 0, **body}
    response = requests.post(dmr_server.url + "/v1/messages", json={**body, "stream": stream}, timeout=120)
    assert response.status_code == 200, response.text
    if stream:
        return [e["content_block"] for e in check_events(response.text)
                if e["type"] == "content_block_start" and e["content_block"]["type"] == "tool_use"]  # fmt: skip
    message = check_message(response.json())
    assert message["stop_reason"] == "tool_use"
    return [block for block in message["content"] if block["type"] == "tool_use"]


@pytest.mark.parametrize("stream", [False, True])
def test_any_makes_one_call_unless_parallel_use_is_asked_for(dmr_server, stream):
    # llama.cpp's server, what DMR runs, allows one call a turn by default; so does dmr. An explicit
    # disable_parallel_tool_use: false is how a client asks for several.
    ask = [{"role": "user", "content": "What is the weather in Paris and in Rome?"}]
    (call,) = calls_of(dmr_server, stream, messages=ask, tool_choice={"type": "any"})
    assert call["name"] == "get_weather" and call["caller"] == {"type": "direct"}
    allowed = {"type": "any", "disable_parallel_tool_use": False}
    several = calls_of(dmr_server, stream, messages=ask, tool_choice=allowed)
    assert len(several) >= 2  # the 135M model keeps calling; an unfinished last call is left out


def test_tool_result_history_gets_an_answer(client):
    message = client.messages.create(model=MODEL, messages=history(), max_tokens=24, tools=[WEATHER],
                                     extra_body={"temperature": 0})  # fmt: skip
    assert message.stop_reason in ("end_turn", "max_tokens", "tool_use")
    assert message.content


def test_tool_choice_none_gives_text(client):
    message = client.messages.create(model=MODEL, messages=ASK, max_tokens=12, tools=[WEATHER],
                                     tool_choice={"type": "none"}, extra_body={"temperature": 0})  # fmt: skip
    assert [block.type for block in message.content] == ["text"]
    assert message.stop_reason in ("end_turn", "max_tokens")
