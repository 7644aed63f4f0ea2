"""Grammar-constrained generation on the 135M model: forced and lazy tool calls, JSON answers."""

import dataclasses
import json

import jsonschema
import pytest

from dmr_core.engines.base import RunnerConfig
from dmr_core.errors import InvalidRequest
from dmr_core.generation import (
    FinishReason,
    GenerationRequest,
    Message,
    Mode,
    ResponseFormat,
    SamplingParams,
    ToolCall,
    ToolChoice,
    ToolSpec,
)
from dmr_llamacpp import grammar, sampler
from dmr_llamacpp.engine import LlamaCppEngine

CITY = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24}}, "required": ["city"],
        "additionalProperties": False}  # fmt: skip
WEATHER = ToolSpec("get_weather", "Current weather in a city", CITY)
TIME = ToolSpec("get_time", "Current time in a timezone",
                {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}}, "required": ["zone"]})  # fmt: skip
ASK = (Message("user", "What's the weather like in Paris today?"),)
GREEDY = SamplingParams(max_tokens=60, temperature=0)


@pytest.fixture(scope="module")
def engine(smollm2_gguf):
    loaded = LlamaCppEngine(str(smollm2_gguf), Mode.COMPLETION, RunnerConfig(context_size=1024, threads=2))
    loaded.load()
    yield loaded
    loaded.close()


def run(engine, **kwargs):
    kwargs.setdefault("sampling", GREEDY)
    chunks = list(engine.generate(GenerationRequest(engine.model_path, **kwargs), lambda: False))
    calls: dict[int, list[str]] = {}
    for chunk in chunks:
        for piece in chunk.tool_calls:
            calls.setdefault(piece.index, [piece.name, ""])[1] += piece.arguments
    return "".join(c.text for c in chunks), [tuple(c) for c in calls.values()], chunks[-1].finish_reason


def test_required_tool_choice_forces_one_valid_call(engine):
    text, calls, finish = run(engine, messages=ASK, tools=(WEATHER, TIME), tool_choice=ToolChoice("required", parallel=False))
    assert text == "" and finish is FinishReason.TOOL_CALLS
    assert len(calls) == 1
    name, arguments = calls[0]
    jsonschema.validate(json.loads(arguments), {WEATHER.name: CITY, TIME.name: TIME.parameters}[name])


def test_named_tool_choice_forces_that_tool(engine):
    text, calls, finish = run(engine, messages=ASK, tools=(WEATHER, TIME),
                              tool_choice=ToolChoice("function", "get_time", parallel=False))  # fmt: skip
    assert [name for name, _ in calls] == ["get_time"] and finish is FinishReason.TOOL_CALLS
    jsonschema.validate(json.loads(calls[0][1]), TIME.parameters)


def test_auto_lets_the_model_answer_in_text(engine):
    text, calls, finish = run(engine, messages=ASK, tools=(WEATHER,))
    assert text.strip() and calls == [] and finish is FinishReason.STOP


def test_auto_call_written_by_the_model_is_completed_by_the_lazy_grammar(engine):
    # Two earlier turns show the model the format; it then opens <tool_call> itself, and from
    # there the grammar keeps the call valid (the 135M model would not manage it alone).
    shots = []
    for i, city in enumerate(["Rome", "Oslo"]):
        call = ToolCall(f"call_{i}", "get_weather", json.dumps({"city": city}))
        shots += [Message("user", f"What's the weather in {city}?"), Message("assistant", "", tool_calls=(call,))]
    text, calls, finish = run(engine, messages=(*shots, Message("user", "What's the weather in Paris?")),
                              tools=(WEATHER,), tool_choice=ToolChoice("auto", parallel=False))  # fmt: skip
    assert text == "" and finish is FinishReason.TOOL_CALLS
    assert calls[0][0] == "get_weather"
    jsonschema.validate(json.loads(calls[0][1]), CITY)


def test_tool_choice_none_leaves_tools_out(engine):
    request = GenerationRequest(engine.model_path, messages=ASK, tools=(WEATHER,), tool_choice=ToolChoice("none"))
    assert engine.count_tokens(request) == engine.count_tokens(GenerationRequest(engine.model_path, messages=ASK))
    assert grammar.plan_for(request) is None


def test_json_object_answer_parses(engine):
    ask = (Message("user", "Give me a JSON object describing a cat with name and age."),)
    text, _, finish = run(engine, messages=ask, response_format=ResponseFormat("json_object"),
                          sampling=SamplingParams(max_tokens=120, temperature=0))  # fmt: skip
    assert finish is FinishReason.STOP
    assert isinstance(json.loads(text), dict)


def test_json_schema_answer_validates(engine):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
              "age": {"type": "integer"}, "colour": {"enum": ["black", "white", "ginger"]}},
              "required": ["name", "age", "colour"], "additionalProperties": False}  # fmt: skip
    text, _, finish = run(engine, messages=(Message("user", "Describe a cat."),), response_format=ResponseFormat("json_schema", schema),
                          sampling=SamplingParams(max_tokens=80, temperature=0))  # fmt: skip
    assert finish is FinishReason.STOP
    jsonschema.validate(json.loads(text), schema)


#: Names and constants whose JSON text holds escapes: the fuzzer's ``\b`` name was a 500 (the grammar
#: llama.cpp rejected: the Python converter left JSON's backslashes raw in GBNF literals).
ODD_TEXTS = ("\b", 'say "hi"', "back\\slash", "tab\tnew\nline", "°C", "caf\u00e9", "\U0001F600", "nul\x00")


@pytest.mark.parametrize("odd", ODD_TEXTS)
def test_names_and_constants_with_json_escapes_come_out_exactly(engine, odd):
    schema = {"type": "object", "properties": {odd: {"const": odd}}, "required": [odd], "additionalProperties": False}
    tool = ToolSpec(odd, "", schema)
    text, calls, finish = run(engine, messages=ASK, tools=(tool,), tool_choice=ToolChoice("function", odd, parallel=False),
                              sampling=SamplingParams(max_tokens=80, temperature=0))  # fmt: skip
    assert finish is FinishReason.TOOL_CALLS, text
    assert calls == [(odd, calls[0][1])] and json.loads(calls[0][1]) == {odd: odd}


@pytest.mark.parametrize("empty", ["anyOf", "oneOf", "enum"])
def test_a_tool_schema_no_value_matches_is_a_400_naming_tools(empty):
    # It was a 500: the converter wrote an empty rule, which llama.cpp's GBNF parser refuses.
    tool = ToolSpec("f", "", {"type": "object", "properties": {"a": {empty: []}}, "required": ["a"]})
    with pytest.raises(InvalidRequest) as info:
        grammar.plan_for(GenerationRequest("m", messages=ASK, tools=(tool,), tool_choice=ToolChoice("required")))
    assert info.value.param == "tools"


def test_a_grammar_llama_cpp_refuses_is_a_400_naming_the_parameters(engine):
    # It was an EngineError (a 500): whatever the converter writes, a refusal is the schema's.
    plan = grammar.GrammarPlan('root ::= "unclosed', params=("tools", "response_format"))
    with pytest.raises(InvalidRequest) as info:
        sampler.SamplerChain(engine._llama)(temp=0, top_k=40, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
                                            frequency_penalty=0.0, presence_penalty=0.0, grammar=plan)  # fmt: skip
    assert info.value.param == "tools" and "'tools' and 'response_format'" in str(info.value)


def test_json_strings_never_hold_raw_control_characters():
    gbnf = grammar.plan_for(GenerationRequest("m", messages=ASK, response_format=ResponseFormat("json_object"))).gbnf
    assert "char ::= " + grammar.JSON_CHAR in gbnf


def test_auto_tools_get_a_lazy_grammar_forced_ones_an_eager_one():
    auto = grammar.plan_for(GenerationRequest("m", messages=ASK, tools=(WEATHER,)))
    forced = grammar.plan_for(GenerationRequest("m", messages=ASK, tools=(WEATHER,), tool_choice=ToolChoice("required")))
    assert auto.triggers == (grammar.CALL_TRIGGER,) and forced.triggers == ()
    assert "root ::= tool-calls" in forced.gbnf
    assert "tool-calls ::= tool-call" in forced.gbnf.splitlines()  # one call
    several = ToolChoice("required", parallel=True)
    parallel = grammar.plan_for(GenerationRequest("m", messages=ASK, tools=(WEATHER,), tool_choice=several))
    assert "tool-call (" in parallel.gbnf  # parallel calls allowed


def test_a_tool_schema_the_converter_cannot_express_is_a_400_naming_tools(engine):
    odd = ToolSpec("odd", "", {"type": "object", "properties": {"x": {"type": "tuple"}}})
    with pytest.raises(InvalidRequest) as caught:
        run(engine, messages=ASK, tools=(odd,), tool_choice=ToolChoice("required"))
    assert caught.value.param == "tools"


# -- the grammar is asked second (sampler.py): same greedy text as masking every step, far fewer masks --

SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"},
          "colour": {"enum": ["black", "white", "ginger"]}}, "required": ["name", "age", "colour"],
          "additionalProperties": False}  # fmt: skip
CONSTRAINED = {
    "json_schema": dict(messages=(Message("user", "Describe a cat."),), response_format=ResponseFormat("json_schema", SCHEMA),
                        sampling=SamplingParams(max_tokens=80, temperature=0)),
    "forced_call": dict(messages=ASK, tools=(WEATHER, TIME), tool_choice=ToolChoice("required", parallel=False)),
}  # fmt: skip


@pytest.fixture
def masks(engine, monkeypatch):
    """Counts the draws that masked the whole vocabulary with the grammar."""
    counted = {"masked": 0, "draws": 0}
    draw = sampler.GrammarSampler._draw

    def counting(self, ctx, row, masked):
        counted["draws"] += 1
        counted["masked"] += masked
        return draw(self, ctx, row, masked)

    monkeypatch.setattr(sampler.GrammarSampler, "_draw", counting)
    return counted


@pytest.mark.parametrize("kind", CONSTRAINED)
def test_greedy_output_equals_masking_the_vocabulary_every_step(engine, monkeypatch, masks, kind):
    fast = run(engine, **CONSTRAINED[kind])
    fast_masks, fast_draws = masks["masked"], masks["draws"]
    monkeypatch.setattr(engine, "_chains", sampler.SamplerChain(engine._llama, grammar_first=True))
    assert run(engine, **CONSTRAINED[kind]) == fast
    assert masks["masked"] - fast_masks == masks["draws"] - fast_draws  # the slow path masked every draw
    # Most drawn tokens already fit: the vocabulary was masked for a minority of the steps.
    assert fast_masks < (fast_draws - fast_masks) / 2


def test_seeded_sampling_under_a_grammar_is_deterministic_and_valid(engine):
    seeded = SamplingParams(max_tokens=80, temperature=0.9, seed=1234)
    ask = dict(messages=(Message("user", "Describe a cat."),), response_format=ResponseFormat("json_schema", SCHEMA))
    first, again = run(engine, sampling=seeded, **ask), run(engine, sampling=seeded, **ask)
    assert first == again
    jsonschema.validate(json.loads(first[0]), SCHEMA)
    other = run(engine, sampling=dataclasses.replace(seeded, seed=99), **ask)
    jsonschema.validate(json.loads(other[0]), SCHEMA)


def test_the_grammar_check_refuses_a_token_the_grammar_does_not_allow(engine):
    plan = grammar.plan_for(GenerationRequest(engine.model_path, messages=ASK, response_format=ResponseFormat("json_object")))
    chosen = engine._chains(temp=0, top_k=40, top_p=1.0, min_p=0.0, repeat_penalty=1.0, frequency_penalty=0.0,
                            presence_penalty=0.0, grammar=plan)  # fmt: skip
    brace, word = (engine._llama.tokenize(t.encode(), add_bos=False, special=False) for t in ("{", "Hello"))
    assert chosen._allowed(brace[0]) and not chosen._allowed(word[0])
