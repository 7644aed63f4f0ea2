"""From token pieces to chunks: stop strings, tool calls and where log probabilities ride (no model)."""

import json

from dmr_core.generation import FinishReason, TokenLogprob, Usage
from dmr_core.toolcalls import ToolCallParser
from dmr_llamacpp.output import ChunkAssembler

CALL = '<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>'


def feed(assembler, pieces, logprobs=False):
    chunks = [assembler.add(p.encode(), TokenLogprob(p, -1.0) if logprobs else None) for p in pieces]
    return [c for c in chunks if c is not None]


def test_logprobs_of_held_back_tokens_wait_for_the_text_they_explain():
    out = ChunkAssembler(("STOP",))
    chunks = feed(out, ["Hello", " ST", "ay"], logprobs=True)  # " ST" may begin the stop string
    carried = [(c.text, [lp.token for lp in c.logprobs]) for c in chunks]
    assert carried == [("Hello", ["Hello"]), (" ", [" ST"]), ("STay", ["ay"])]


def test_pending_logprobs_come_with_the_final_chunk():
    out = ChunkAssembler(("XYZ",))
    assert [c.text for c in feed(out, ["ab", "XY"], logprobs=True)] == ["ab"]  # "XY" may begin the stop
    last = out.finish(FinishReason.LENGTH, Usage(1, 2))
    assert (last.text, [lp.token for lp in last.logprobs]) == ("XY", ["XY"])


def test_a_finished_call_ends_with_tool_calls():
    out = ChunkAssembler((), ToolCallParser())
    chunks = feed(out, [CALL[:15], CALL[15:40], CALL[40:]])
    last = out.finish(FinishReason.STOP, Usage(3, 9))
    pieces = [d for c in [*chunks, last] for d in c.tool_calls]
    assert last.finish_reason is FinishReason.TOOL_CALLS
    assert json.loads("".join(d.arguments for d in pieces)) == {"x": 1}
    assert pieces[0].name == "f" and not "".join(c.text for c in chunks)


def test_a_call_cut_by_the_token_limit_ends_with_length():
    out = ChunkAssembler((), ToolCallParser())
    feed(out, ['<tool_call>{"name": "f", "arguments": {"x": '])
    assert out.finish(FinishReason.LENGTH, Usage(3, 9)).finish_reason is FinishReason.LENGTH


def test_a_second_call_cut_before_its_closing_tag_is_whole_and_clean():
    # SmolLM2 with parallel calls and a small max_tokens: the limit fell inside "</tool_call>".
    out = ChunkAssembler((), ToolCallParser())
    cut = CALL + '\n<tool_call>\n{"name": "f", "arguments": { "x": 2 }}\n</tool_call'
    chunks = feed(out, [cut[i : i + 3] for i in range(0, len(cut), 3)])
    last = out.finish(FinishReason.LENGTH, Usage(3, 40))
    calls: dict[int, str] = {}
    for piece in (d for c in [*chunks, last] for d in c.tool_calls):
        calls[piece.index] = calls.get(piece.index, "") + piece.arguments
    assert [json.loads(a) for a in calls.values()] == [{"x": 1}, {"x": 2}]
    assert last.finish_reason is FinishReason.TOOL_CALLS and not "".join(c.text for c in [*chunks, last])


def test_text_after_a_call_stops_generation():
    out = ChunkAssembler((), ToolCallParser())
    feed(out, [CALL, " and now some chatter"])
    assert out.stopped


def test_reasoning_is_split_off_and_stops_apply_to_the_text_only():
    from dmr_core.reasoning import ReasoningSplitter

    out = ChunkAssembler(("STOP",), reasoning=ReasoningSplitter(opened=True))
    chunks = feed(out, ["No STOP ", "here.</th", "ink>\n", "Yes", " STOP and more"])
    assert [(c.reasoning, c.text) for c in chunks] == [("No STOP ", ""), ("here.", ""), ("", "Yes"), ("", " ")]
    assert out.stopped
    last = out.finish(FinishReason.STOP, Usage(1, 5))
    assert last.stop_sequence == "STOP" and (last.reasoning, last.text) == ("", "")


def test_tool_calls_after_reasoning_are_parsed_from_the_text():
    from dmr_core.reasoning import ReasoningSplitter

    out = ChunkAssembler((), ToolCallParser(), ReasoningSplitter())
    chunks = feed(out, ["<think>I should call f.", "</think>\n", CALL[:20], CALL[20:]])
    last = out.finish(FinishReason.STOP, Usage(3, 9))
    assert "".join(c.reasoning for c in chunks) == "I should call f."
    assert last.finish_reason is FinishReason.TOOL_CALLS and not "".join(c.text for c in [*chunks, last])


def test_an_unfinished_reasoning_reply_ends_as_reasoning():
    from dmr_core.reasoning import ReasoningSplitter

    out = ChunkAssembler((), reasoning=ReasoningSplitter(opened=True))
    chunks = feed(out, ["Thinking about it </"])
    last = out.finish(FinishReason.LENGTH, Usage(1, 2))
    assert "".join(c.reasoning for c in [*chunks, last]) == "Thinking about it </" and not last.text
