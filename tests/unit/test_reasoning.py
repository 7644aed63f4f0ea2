"""Splitting reasoning (``<think>…</think>``) off a streamed reply, however the text is cut."""

from dmr_core.reasoning import ReasoningSplitter, ends_inside_reasoning, template_supports_thinking

REPLY = "<think>\nLet me add: 2+2.\n</think>\n\nIt is 4."


def split(pieces, opened=False) -> tuple[str, str]:
    splitter, reasoning, text = ReasoningSplitter(opened), [], []
    for piece in [*pieces, None]:
        r, t = splitter.finish() if piece is None else splitter.feed(piece)
        reasoning.append(r)
        text.append(t)
    return "".join(reasoning), "".join(text)


def every_cut(text: str):
    """``text`` cut into one-character pieces, and in two at every position."""
    yield list(text)
    for at in range(len(text) + 1):
        yield [text[:at], text[at:]]


def test_tags_cut_anywhere_split_the_same():
    for pieces in every_cut(REPLY):
        assert split(pieces) == ("Let me add: 2+2.\n", "It is 4."), pieces


def test_a_prompt_that_opened_the_tag_starts_in_reasoning():
    for pieces in every_cut("Let me add.</think>It is 4."):
        assert split(pieces, opened=True) == ("Let me add.", "It is 4."), pieces


def test_reasoning_comes_out_as_it_streams_except_a_possible_tag():
    splitter = ReasoningSplitter(opened=True)
    assert splitter.feed("Hmm, so") == ("Hmm, so", "")
    assert splitter.feed(" it is </thi") == (" it is ", "")  # "</thi" may be the closing tag
    assert splitter.feed("nk>") == ("", "")
    assert splitter.feed("\n\n") == ("", "")  # blank lines after the tag are dropped
    assert splitter.feed("Four") == ("", "Four")


def test_text_without_tags_is_unchanged():
    assert split(["Hello", " <b>", "world</b>"]) == ("", "Hello <b>world</b>")
    assert split(["<", "thing>"]) == ("", "<thing>")
    assert split(["<thi"]) == ("", "<thi")  # an unfinished tag at the end is plain text


def test_a_tag_later_in_the_text_is_text():
    assert split(["Sure. <think>no</think>"]) == ("", "Sure. <think>no</think>")


def test_a_reply_cut_off_inside_reasoning_is_all_reasoning():
    assert split(["\nStill thinking </th"], opened=True) == ("Still thinking </th", "")


def test_where_a_prompt_leaves_reasoning():
    assert ends_inside_reasoning("<|im_start|>assistant\n<think>\n")
    assert not ends_inside_reasoning("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert not ends_inside_reasoning("<|im_start|>assistant\n")
    assert ends_inside_reasoning("no tags", already=True) and not ends_inside_reasoning("done</think>", already=True)


def test_which_templates_think():
    assert template_supports_thinking("{% if enable_thinking is defined %}…{% endif %}")
    assert template_supports_thinking("{{ '<think>\\n' }}")
    assert template_supports_thinking("{{ message.reasoning_content }}")
    assert not template_supports_thinking("{% for m in messages %}{{ m.content }}{% endfor %}")
    assert not template_supports_thinking(None)
