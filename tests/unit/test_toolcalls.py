"""The generic tool-call format: prompt rendering, and the streaming parser on every split of its input."""

from __future__ import annotations

import json
import random

import pytest

from dmr_core.errors import InvalidRequest
from dmr_core.generation import GenerationRequest, Message, ToolCall, ToolChoice, ToolSpec
from dmr_core.toolcalls import (
    CLOSE,
    OPEN,
    ToolCallParser,
    call_schema,
    check_choice,
    system_section,
    template_messages,
    with_system_section,
)

WEATHER = ToolSpec("get_weather", "Weather for a city",
                   {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})  # fmt: skip
TIME = ToolSpec("get_time", "", {"type": "object", "properties": {}})


def parse(pieces: list[str], parallel: bool = True):
    """Feed ``pieces``; return (content, [(index, id, name, arguments)], parser)."""
    parser = ToolCallParser(parallel)
    text, deltas = "", []
    for piece in pieces:
        out = parser.feed(piece)
        text += out.text
        deltas += out.calls
    out = parser.finish()
    text += out.text
    deltas += out.calls
    return text, assemble(deltas), parser


def assemble(deltas) -> list[tuple[int, str, str, str]]:
    calls: dict[int, list] = {}
    for d in deltas:
        if d.index not in calls:
            assert d.id and d.id.startswith("call_") and d.name, "the first piece of a call names it"
            calls[d.index] = [d.index, d.id, d.name, ""]
        else:
            assert d.id is None and d.name is None, "only the first piece carries id and name"
        calls[d.index][3] += d.arguments
    assert sorted(calls) == list(range(len(calls))), "indices count up from 0"
    return [tuple(c) for c in calls.values()]


def splits(text: str, seed: int = 0) -> list[list[str]]:
    """The whole text, one character at a time, and a few random cuttings."""
    rng = random.Random(seed)
    ways = [[text], list(text)]
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(1, 8))))
        ways.append([text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])])
    return ways


CALL = f'{OPEN}\n{{"name": "get_weather", "arguments": {{"city": "Paris"}}}}\n{CLOSE}'


@pytest.mark.parametrize("pieces", splits(CALL))
def test_a_call_streams_its_name_first_then_arguments_that_parse(pieces):
    text, calls, parser = parse(pieces)
    assert text == ""
    assert [(i, name) for i, _, name, _ in calls] == [(0, "get_weather")]
    assert json.loads(calls[0][3]) == {"city": "Paris"}
    assert parser.calls == 1 and not parser.in_call


def test_arguments_stream_before_the_call_is_complete():
    parser = ToolCallParser()
    first = parser.feed(OPEN + '{"name": "get_weather", "arguments": {"city": "Pa')
    assert first.calls[0].name == "get_weather"
    assert "".join(d.arguments for d in first.calls) == '{"city": "Pa'


@pytest.mark.parametrize("pieces", splits("Let me check. " + CALL + "\n" + CALL.replace("Paris", "Rome"), seed=1))
def test_text_before_calls_is_content_and_parallel_calls_get_their_own_index(pieces):
    text, calls, _ = parse(pieces)
    assert text == "Let me check."
    assert [json.loads(c[3])["city"] for c in calls] == ["Paris", "Rome"]
    assert [c[0] for c in calls] == [0, 1] and calls[0][1] != calls[1][1]


def test_without_parallel_calls_the_turn_ends_after_the_first():
    parser = ToolCallParser(parallel=False)
    out = parser.feed(CALL + CALL)
    assert len({d.index for d in out.calls}) == 1
    assert parser.done


def test_text_after_calls_ends_the_turn():
    text, calls, parser = parse([CALL, "\nThat is all, thanks!"])
    assert text == "" and len(calls) == 1 and parser.done


@pytest.mark.parametrize("pieces", splits("Use <b>bold</b> and <tool or <tool_cal, then stop.", seed=2))
def test_text_that_only_looks_like_a_call_is_released_unchanged(pieces):
    text, calls, _ = parse(pieces)
    assert text == "Use <b>bold</b> and <tool or <tool_cal, then stop." and calls == []


def test_trailing_whitespace_before_a_call_is_not_content():
    text, calls, _ = parse(["\n\n", CALL])
    assert text == "" and len(calls) == 1


def test_fields_out_of_order_are_taken_whole():
    text, calls, _ = parse([OPEN + '{"arguments": {"city": "Oslo"}, "name": "get_weather"}' + CLOSE])
    assert text == "" and calls[0][2] == "get_weather" and json.loads(calls[0][3]) == {"city": "Oslo"}


def test_a_call_cut_short_by_the_end_of_generation_keeps_what_is_complete():
    text, calls, parser = parse([OPEN + '{"name": "get_weather", "arguments": {"city": "Oslo"}}'])
    assert json.loads(calls[0][3]) == {"city": "Oslo"} and not parser.in_call


# What SmolLM2 wrote with tool_choice "required", parallel calls on and a small max_tokens: the
# second call ran into the limit one character before its closing tag was whole.
CUT_SECOND = f'{CALL}\n{OPEN}\n{{"name": "get_weather", "arguments": {{ "city": "Paris" }}}}\n</tool_call'


@pytest.mark.parametrize("pieces", splits(CUT_SECOND, seed=3))
def test_a_call_cut_before_its_closing_tag_carries_no_markup(pieces):
    text, calls, parser = parse(pieces)
    assert text == "" and [c[3] for c in calls] == ['{"city": "Paris"}', '{ "city": "Paris" }']
    assert not parser.in_call  # its arguments were whole: the call is complete


@pytest.mark.parametrize("cut", range(len(OPEN) + 1, len(CALL)))
def test_a_call_cut_anywhere_sends_a_prefix_of_its_arguments_and_nothing_else(cut):
    whole = '{"city": "Paris"}'
    text, calls, _ = parse([CALL[:cut]])
    arguments = calls[0][3] if calls else ""
    assert text == "" and whole.startswith(arguments)
    assert arguments == whole or cut < CALL.index(whole) + len(whole)


TRICKY = OPEN + '{"name": "f", "arguments": {"q": "a } b </tool_call> {", "n": [1, {"m": null}]}}' + CLOSE


@pytest.mark.parametrize("pieces", splits(TRICKY, seed=4))
def test_braces_and_tags_inside_strings_do_not_end_the_arguments(pieces):
    _, calls, _ = parse(pieces)
    assert json.loads(calls[0][3]) == {"q": "a } b </tool_call> {", "n": [1, {"m": None}]}


def test_a_malformed_call_never_pulls_its_closing_tag_into_the_arguments():
    _, calls, _ = parse([OPEN + '{"name": "f", "arguments": {"x": 1' + CLOSE + " done"])
    assert calls[0][3] == '{"x": 1'


def test_arguments_written_as_a_json_string_are_the_text_inside_it():
    _, calls, _ = parse([OPEN + '{"name": "f", "arguments": "{\\"x\\": 1}"}', CLOSE])
    assert json.loads(calls[0][3]) == {"x": 1}


def test_a_call_cut_before_its_arguments_began_is_dropped_not_shown():
    text, calls, parser = parse([OPEN + '\n{"name": "get_wea'])
    assert (text, calls) == ("", [])


def test_a_call_left_unclosed_before_the_next_one_opens_is_still_two_calls():
    unclosed = OPEN + '{"name": "get_weather", "arguments": {"city": "Oslo"}}\n'
    _, calls, _ = parse([unclosed + CALL])
    assert [json.loads(c[3])["city"] for c in calls] == ["Oslo", "Paris"]


def test_something_that_is_not_a_call_is_shown_as_text():
    text, calls, _ = parse([f"{OPEN}not json{CLOSE} ok"])
    assert text == f"{OPEN}not json{CLOSE} ok" and calls == []


def test_plain_text_passes_through():
    assert parse(["Hello", " world", "!"])[:2] == ("Hello world!", [])


# -- the prompt ------------------------------------------------------------------------------------


def test_system_section_lists_tools_as_json_and_states_the_choice():
    section = system_section((WEATHER, TIME), ToolChoice("function", "get_time", parallel=False))
    lines = section.split("<tools>\n")[1].split("\n</tools>")[0].splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["get_weather", "get_time"]
    assert json.loads(lines[0])["parameters"] == WEATHER.parameters
    assert OPEN in section and CLOSE in section
    assert "You must call get_time." in section and "at most one" in section


def test_generic_messages_render_calls_and_results_in_the_same_format():
    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    messages = (
        Message("user", "Weather?"),
        Message("assistant", "", tool_calls=(call,)),
        Message("tool", "18C", tool_call_id="call_1", name="get_weather"),
        Message("tool", "sunny", tool_call_id="call_2", name="get_weather"),
    )
    rendered = template_messages(messages, native=False)
    assert [m["role"] for m in rendered] == ["user", "assistant", "user"]  # both results in one turn
    assert rendered[1]["content"] == f'{OPEN}\n{{"name": "get_weather", "arguments": {{"city": "Paris"}}}}\n{CLOSE}'
    assert rendered[2]["content"].count("<tool_response>") == 2 and '"content": "18C"' in rendered[2]["content"]


def test_native_messages_keep_openai_shape_with_arguments_as_objects():
    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    rendered = template_messages((Message("assistant", "", tool_calls=(call,)),
                                  Message("tool", "18C", tool_call_id="call_1", name="get_weather")), native=True)  # fmt: skip
    assert rendered[0]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert rendered[1] == {"role": "tool", "content": "18C", "tool_call_id": "call_1", "name": "get_weather"}


def test_system_section_joins_an_existing_system_prompt():
    joined = with_system_section([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "X")
    assert joined[0]["content"] == "Be brief.\n\nX" and len(joined) == 2
    assert with_system_section([{"role": "user", "content": "Hi"}], "X")[0] == {"role": "system", "content": "X"}


def test_call_schema_puts_name_before_arguments():
    schema = call_schema((WEATHER,))
    assert list(schema["anyOf"][0]["properties"]) == ["name", "arguments"]
    assert schema["anyOf"][0]["properties"]["name"] == {"const": "get_weather"}


@pytest.mark.parametrize(("tools", "choice"), [((), ToolChoice("required")), ((WEATHER,), ToolChoice("function", "nope"))])
def test_impossible_tool_choice_is_refused(tools, choice):
    with pytest.raises(InvalidRequest) as caught:
        check_choice(tools, choice)
    assert caught.value.param == "tool_choice"


def test_request_helpers_follow_tool_choice():
    from dmr_core.toolcalls import callable_tools, enabled

    named = GenerationRequest("m", tools=(WEATHER, TIME), tool_choice=ToolChoice("function", "get_time"))
    assert callable_tools(named) == (TIME,) and enabled(named)
    assert not enabled(GenerationRequest("m", tools=(WEATHER,), tool_choice=ToolChoice("none")))


def test_arguments_carry_no_padding_from_the_grammar_spacing():
    # Grammar output puts optional spaces around JSON values: ' {"x": 1} }'.
    text, calls, _ = parse([f'{OPEN}{{"name": "f", "arguments":', ' {', '"x": 1', '} ', '}', CLOSE])
    assert calls[0][3] == '{"x": 1}'
