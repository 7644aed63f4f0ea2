"""Tool use through the official client: the model calls a tool, the client answers it."""

import pytest

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
