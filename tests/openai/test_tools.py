"""Tool calling through the official client (strict validation): forced, named, auto, streamed,
parallel, and the round trip call -> tool result -> answer."""

import json

import jsonschema
import openai
import pytest

MODEL = "ai/smollm2"
CITY = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24}}, "required": ["city"],
        "additionalProperties": False}  # fmt: skip
ZONE = {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET", "PST"]}}, "required": ["zone"]}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city", "parameters": CITY}},
    {"type": "function", "function": {"name": "get_time", "description": "Current time in a timezone", "parameters": ZONE}},
]
SCHEMAS = {"get_weather": CITY, "get_time": ZONE}
ASK = [{"role": "user", "content": "What's the weather like in Paris today?"}]


def create(client, **kwargs):
    kwargs = {"model": MODEL, "messages": ASK, "tools": TOOLS, "temperature": 0, "max_tokens": 60, **kwargs}
    return client.chat.completions.create(**kwargs)


def assert_valid_calls(calls):
    assert calls and len({c.id for c in calls}) == len(calls)
    for call in calls:
        assert call.type == "function" and call.id.startswith("call_")
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def test_required_tool_choice_returns_a_valid_call_and_null_content(openai_client):
    reply = create(openai_client, tool_choice="required", parallel_tool_calls=False)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert len(choice.message.tool_calls) == 1
    assert_valid_calls(choice.message.tool_calls)


def test_named_function_is_the_one_called(openai_client):
    reply = create(openai_client, tool_choice={"type": "function", "function": {"name": "get_time"}}, parallel_tool_calls=False)
    calls = reply.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_time"]
    assert_valid_calls(calls)


def test_streamed_call_fragments_are_keyed_by_index_and_name_comes_once(openai_client):
    fragments, finish = [], None
    for chunk in create(openai_client, tool_choice="required", parallel_tool_calls=False, stream=True):
        for choice in chunk.choices:
            fragments += choice.delta.tool_calls or []
            assert not choice.delta.content
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    first, rest = fragments[0], fragments[1:]
    assert (first.index, first.type, first.function.name) == (0, "function", "get_weather") and first.id.startswith("call_")
    assert rest and all(f.index == 0 and f.id is None and f.type is None and f.function.name is None for f in rest)
    arguments = first.function.arguments + "".join(f.function.arguments for f in rest)
    whole = create(openai_client, tool_choice="required", parallel_tool_calls=False).choices[0].message.tool_calls[0]
    assert arguments == whole.function.arguments  # same greedy call, streamed or not
    jsonschema.validate(json.loads(arguments), CITY)


def test_parallel_calls_each_get_an_index_and_valid_arguments(openai_client):
    ask = [{"role": "user", "content": "What's the weather in Paris and in Rome?"}]
    reply = create(openai_client, messages=ask, tool_choice={"type": "function", "function": {"name": "get_weather"}},
                   parallel_tool_calls=True, max_tokens=120)  # fmt: skip
    calls, finish = reply.choices[0].message.tool_calls, reply.choices[0].finish_reason
    # The 135M model keeps calling until the token limit, which may cut the last call short
    # (finish_reason "length", as OpenAI reports it); every call before it is whole.
    complete = calls[:-1] if finish == "length" else calls
    assert finish in ("tool_calls", "length") and len(complete) >= 2
    assert_valid_calls(complete)
    assert [c.function.name for c in calls] == ["get_weather"] * len(calls)


def test_required_makes_one_call_unless_parallel_calls_are_asked_for(openai_client):
    # llama.cpp's server (what DMR runs) defaults parallel_tool_calls to false; so does dmr.
    ask = [{"role": "user", "content": "What's the weather in Paris and in Rome?"}]
    choice = create(openai_client, messages=ask, tool_choice="required", max_tokens=120).choices[0]
    assert choice.finish_reason == "tool_calls" and len(choice.message.tool_calls) == 1
    assert_valid_calls(choice.message.tool_calls)


def test_a_parallel_call_cut_by_max_tokens_carries_no_template_markup(openai_client):
    # Issue 10: with parallel calls on, SmolLM2 writes a second call; when max_tokens fell inside
    # it, its arguments came back as '{ "zone": "UTC"}}\n</' (measured with max_tokens=60).
    def calls(max_tokens):
        reply = create(openai_client, tool_choice="required", parallel_tool_calls=True, max_tokens=max_tokens)
        return reply.choices[0].finish_reason, reply.choices[0].message.tool_calls or []

    _, whole = calls(120)
    assert len(whole) >= 2 and whole[0].function.name == "get_weather"
    assert_valid_calls(whole[:2])
    seen_second = False
    for max_tokens in (50, 54, 60):  # the limit falls in the second call's head, arguments, closing tag
        finish, cut = calls(max_tokens)
        seen_second = seen_second or len(cut) >= 2
        for got, want in zip(cut, whole):  # greedy: the same calls, each cut short at most
            assert got.function.name == want.function.name
            assert want.function.arguments.startswith(got.function.arguments), (max_tokens, got.function.arguments)
        complete = cut[:-1] if finish == "length" else cut  # "length": the last one may be unfinished
        if complete:
            assert_valid_calls(complete)
    assert seen_second  # the cut-off case was exercised


def test_auto_lets_the_model_answer_in_text(openai_client):
    reply = create(openai_client)
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content.strip() and reply.choices[0].message.tool_calls is None


def test_auto_call_started_by_the_model_is_kept_valid(openai_client):
    # Earlier turns show the format; the model then opens <tool_call> on its own (auto), and
    # the lazy grammar keeps the rest of the call valid.
    history = []
    for i, city in enumerate(["Rome", "Oslo"]):
        call = {"id": f"call_{i}", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}
        history += [{"role": "user", "content": f"What's the weather in {city}?"},
                    {"role": "assistant", "content": None, "tool_calls": [call]}]  # fmt: skip
    messages = [*history, {"role": "user", "content": "What's the weather in Paris?"}]
    reply = create(openai_client, messages=messages, tools=TOOLS[:1], parallel_tool_calls=False)
    assert reply.choices[0].finish_reason == "tool_calls"
    assert_valid_calls(reply.choices[0].message.tool_calls)


def test_round_trip_call_then_tool_result_then_answer(openai_client):
    first = create(openai_client, tool_choice="required", parallel_tool_calls=False).choices[0].message
    call = first.tool_calls[0]
    result = {"role": "tool", "tool_call_id": call.id, "content": "Sunny and 18 degrees Celsius."}
    messages = [*ASK, first.model_dump(exclude_none=True), result]
    answer = create(openai_client, messages=messages)
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.tool_calls is None
    assert "18" in answer.choices[0].message.content
    # The tool result is part of the prompt: a longer result costs more prompt tokens.
    longer = dict(result, content=result["content"] + " Light wind from the west, no rain expected today.")
    again = create(openai_client, messages=[*ASK, first.model_dump(exclude_none=True), longer], max_tokens=1)
    assert again.usage.prompt_tokens > answer.usage.prompt_tokens


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
     ({"tools": openai.NOT_GIVEN, "tool_choice": "required"}, "tool_choice"),
     ({"tools": [{"type": "custom", "custom": {"name": "grep"}}]}, "tools[0]")],
)  # fmt: skip
def test_impossible_tool_requests_are_400_naming_the_parameter(openai_client, kwargs, param):
    with pytest.raises(openai.BadRequestError) as caught:
        create(openai_client, **kwargs)
    assert caught.value.param == param


def test_runtime_counts_the_same_prompt_tokens_a_call_with_tools_uses(dmr_server, openai_client):
    # Runtime.count_tokens -> pool "count" op -> engine: template and tools applied, nothing generated.
    from dmr_core.app import create_app
    from dmr_core.dialects.openai import schema, translate
    from dmr_core.settings import load_settings

    settings = load_settings(dict(dmr_server.env()))
    runtime = create_app(settings).extensions["dmr"]
    body = {"model": MODEL, "messages": ASK, "tools": TOOLS, "tool_choice": "required"}
    job = translate.to_chat_request(schema.ChatCompletionRequest.model_validate(body))
    counted = runtime.count_tokens(MODEL, None, job)
    assert counted == create(openai_client, tool_choice="required", max_tokens=1).usage.prompt_tokens
    assert counted > runtime.count_tokens(MODEL, None, translate.to_chat_request(
        schema.ChatCompletionRequest.model_validate({"model": MODEL, "messages": ASK})))  # fmt: skip
