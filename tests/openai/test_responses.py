"""The Responses API through the official client (strict validation), at DMR's prefixes."""

import json

import jsonschema
import openai
import pytest
import requests

from dmr_core.testing import openai_client_for

MODEL = "ai/smollm2"


def test_create_get_input_items_delete(openai_client):
    reply = openai_client.responses.create(model=MODEL, input="Say hello.", max_output_tokens=12, temperature=0)
    assert reply.status in ("completed", "incomplete") and reply.object == "response"
    assert reply.output_text
    assert reply.usage.input_tokens > 5 and 0 < reply.usage.output_tokens <= 12
    again = openai_client.responses.retrieve(reply.id)
    assert again.id == reply.id and again.output_text == reply.output_text
    items = openai_client.responses.input_items.list(reply.id)
    assert [item.role for item in items.data] == ["user"]
    assert openai_client.responses.delete(reply.id) is None
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve(reply.id)


def test_stream_events_in_order_and_consistent(openai_client):
    args = dict(model=MODEL, input="Name a colour.", max_output_tokens=10, temperature=0)
    events = list(openai_client.responses.create(stream=True, **args))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(1, len(events) + 1))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas and deltas == events[-1].response.output_text
    added = [e.type for e in events if e.type.startswith(("response.output_item", "response.content_part"))]
    assert added == ["response.output_item.added", "response.content_part.added",
                     "response.content_part.done", "response.output_item.done"]  # fmt: skip
    assert openai_client.responses.retrieve(events[-1].response.id).output_text == deltas


def test_max_output_tokens_gives_incomplete(openai_client):
    reply = openai_client.responses.create(model=MODEL, input="Count from 1 to 100.", max_output_tokens=4)
    assert reply.status == "incomplete" and reply.incomplete_details.reason == "max_output_tokens"


def test_previous_response_id_continues_the_conversation(openai_client):
    first = openai_client.responses.create(model=MODEL, input="My name is Ada.", max_output_tokens=8, temperature=0)
    second = openai_client.responses.create(model=MODEL, input="What is my name?", previous_response_id=first.id,
                                            max_output_tokens=8, temperature=0)  # fmt: skip
    alone = openai_client.responses.create(model=MODEL, input="What is my name?", max_output_tokens=8, temperature=0)
    assert second.usage.input_tokens > alone.usage.input_tokens  # the earlier turn is in the prompt


def test_structured_output_follows_the_schema(openai_client):
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"],
              "additionalProperties": False}  # fmt: skip
    reply = openai_client.responses.create(model=MODEL, input="Name a colour.", max_output_tokens=40,
                                           text={"format": {"type": "json_schema", "name": "c", "schema": schema}})  # fmt: skip
    jsonschema.validate(json.loads(reply.output_text), schema)


def test_forced_function_call(openai_client):
    tool = {"type": "function", "name": "get_weather", "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}  # fmt: skip
    reply = openai_client.responses.create(model=MODEL, input="Weather in Paris?", tools=[tool], max_output_tokens=60,
                                           tool_choice={"type": "function", "name": "get_weather"},
                                           parallel_tool_calls=False)  # fmt: skip
    calls = [item for item in reply.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather" and isinstance(json.loads(calls[0].arguments)["city"], str)


@pytest.mark.parametrize("prefix", ["", "/engines", "/engines/llama.cpp/v1"])
def test_other_prefixes(dmr_server, prefix):
    client = openai_client_for(dmr_server, prefix)
    assert client.responses.create(model=MODEL, input="Hi", max_output_tokens=3).output_text


def test_errors_in_openai_shape(dmr_server, openai_client):
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.create(model="ai/missing", input="Hi")
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve("resp_" + "0" * 32)
    bad = requests.post(dmr_server.url + "/responses", json={"model": MODEL, "input": "x", "tools": [{"type": "web_search"}]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tools[0]"
