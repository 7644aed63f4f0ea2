"""Structured output: ``response_format`` json_object and json_schema are grammar-enforced, so the
reply always parses and validates; schemas a grammar cannot enforce are a 400 naming the parameter."""

import json

import jsonschema
import openai
import pydantic
import pytest

MODEL = "ai/smollm2"
CAT = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer"},
        "colour": {"enum": ["black", "white", "ginger"]},
        "indoor": {"type": "boolean"},
    },
    "required": ["name", "age", "colour", "indoor"],
    "additionalProperties": False,
}


def ask(client, content: str, response_format: dict, **kwargs):
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}],
                                          response_format=response_format, temperature=0, max_tokens=100, **kwargs)  # fmt: skip


def json_schema(schema: dict, strict: bool = True) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": strict}}


def test_json_object_reply_is_a_json_object(openai_client):
    reply = ask(openai_client, "Give me a JSON object describing a cat with name and age.", {"type": "json_object"})
    assert reply.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


@pytest.mark.parametrize("strict", [True, False])
def test_json_schema_reply_validates(openai_client, strict):
    reply = ask(openai_client, "Describe a cat.", json_schema(CAT, strict))
    assert reply.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(reply.choices[0].message.content), CAT)


def test_streamed_json_schema_reply_is_the_same_json(openai_client):
    whole = ask(openai_client, "Describe a cat.", json_schema(CAT)).choices[0].message.content
    pieces = [c.choices[0].delta.content or "" for c in ask(openai_client, "Describe a cat.", json_schema(CAT), stream=True)
              if c.choices]  # fmt: skip
    assert len(pieces) > 3 and "".join(pieces) == whole


def test_nested_schema_with_refs_and_arrays_validates(openai_client):
    schema = {
        "$defs": {"toy": {"type": "object", "properties": {"kind": {"enum": ["ball", "mouse"]}}, "required": ["kind"],
                          "additionalProperties": False}},
        "type": "object",
        "properties": {"cat": {"type": "string", "maxLength": 12},
                       "toys": {"type": "array", "items": {"$ref": "#/$defs/toy"}, "minItems": 1, "maxItems": 3}},
        "required": ["cat", "toys"],
        "additionalProperties": False,
    }  # fmt: skip
    reply = ask(openai_client, "List a cat's toys.", json_schema(schema))
    jsonschema.validate(json.loads(reply.choices[0].message.content), schema)


class Cat(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=20)
    age: int
    indoor: bool


def test_the_sdk_parse_helper_gets_a_pydantic_object(openai_client):
    # The SDK turns the model class into a strict json_schema (titles, additionalProperties false).
    reply = openai_client.chat.completions.parse(model=MODEL, messages=[{"role": "user", "content": "Describe a cat."}],
                                                 response_format=Cat, temperature=0, max_tokens=60)  # fmt: skip
    assert isinstance(reply.choices[0].message.parsed, Cat)


@pytest.mark.parametrize(
    "schema",
    [{"type": "integer", "minimum": 0}, {"type": "string", "format": "email"},
     {"type": "object", "properties": {"a": {"not": {"type": "null"}}}}, {"type": "array", "uniqueItems": True},
     {"$ref": "https://example.com/cat.json"}],
)  # fmt: skip
def test_schemas_a_grammar_cannot_enforce_are_400(openai_client, schema):
    with pytest.raises(openai.BadRequestError) as caught:
        ask(openai_client, "x", json_schema(schema))
    assert caught.value.param == "response_format"
    assert "cannot be enforced" in caught.value.message or "supported" in caught.value.message


def test_unknown_response_format_type_is_400(openai_client):
    with pytest.raises(openai.BadRequestError) as caught:
        ask(openai_client, "x", {"type": "grammar", "grammar": "root ::= \"a\""})
    assert caught.value.param == "response_format"
