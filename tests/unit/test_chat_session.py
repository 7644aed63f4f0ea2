"""``dmr run``'s chat without a terminal: commands, history, multi-line input, streams, Ctrl-C."""

import json

import pytest

from dmr_core.chat_session import (AnswerPrinter, ChatSession, Delta, MultiLine, StreamError, Terminal, answer, chat,
                                   read_message, stream_deltas)  # fmt: skip


def sse(*deltas: dict) -> list[bytes]:
    chunks = [{"choices": [{"index": 0, "delta": d}]} for d in deltas]
    return [f"data: {json.dumps(c)}".encode() for c in chunks] + [b"", b"data: [DONE]"]


class Script:
    """A terminal fed from a list of lines: a str is typed, an exception class is raised (Ctrl-C/D)."""

    def __init__(self, *lines):
        self.lines = list(lines)
        self.prompts: list[str] = []
        self.out: list[str] = []

    def read_line(self, prompt: str) -> str:
        self.prompts.append(prompt)
        item = self.lines.pop(0) if self.lines else EOFError
        if isinstance(item, type):
            raise item()
        return item

    def terminal(self) -> Terminal:
        return Terminal(self.read_line, self.out.append, dim=lambda t: f"<dim>{t}</dim>")

    @property
    def text(self) -> str:
        return "".join(self.out)


def replying(*texts: str):
    """A fake server: each request gets the next answer, streamed word by word; requests are kept."""
    sent: list[dict] = []
    answers = list(texts)

    def send(body):
        sent.append(json.loads(json.dumps(body)))
        words = answers.pop(0).split(" ")
        return stream_deltas(sse(*({"content": w if i == 0 else " " + w} for i, w in enumerate(words))))

    return send, sent


def test_history_is_kept_and_cleared():
    session = ChatSession("ai/smollm2")
    script = Script("Hi", "Who?", "/clear", "Again", "/bye")
    send, sent = replying("Hello there", "A model", "Fresh")
    chat(session, script.terminal(), send)
    assert [m["content"] for m in sent[1]["messages"]] == ["Hi", "Hello there", "Who?"]
    assert sent[0]["stream"] is True and sent[0]["model"] == "ai/smollm2"
    assert [m["content"] for m in sent[2]["messages"]] == ["Again"]  # /clear forgot the first two turns
    assert "Hello there\n" in script.text and "Cleared session context" in script.text
    assert len(script.prompts) == 5  # /bye ended it: nothing read afterwards


def test_system_message_and_parameters_go_into_the_request():
    session = ChatSession("m")
    script = Script("/set system You are terse.", "/set parameter temperature 0.2", "/set parameter seed 7",
                    "/set parameter max_tokens 20", "/set parameter num_predict 30", "Hi")  # fmt: skip
    send, sent = replying("Ok")
    chat(session, script.terminal(), send)  # ends at Ctrl-D (the script runs out)
    assert sent[0]["messages"][0] == {"role": "system", "content": "You are terse."}
    assert sent[0]["temperature"] == 0.2 and sent[0]["seed"] == 7 and sent[0]["max_tokens"] == 30
    assert "Set parameter 'temperature' to '0.2'" in script.text


@pytest.mark.parametrize(("line", "reply"), [
    ("/set parameter num_ctx 8192", "num_ctx is ignored"),
    ("/set parameter temperature warm", "Invalid value 'warm' for temperature"),
    ("/set parameter seed 1.5", "must be an integer"),
    ("/set parameter mirostat 1", "Unknown parameter 'mirostat'"),
    ("/set parameter", "Usage: /set parameter NAME VALUE"),
    ("/set", "Usage: /set system TEXT"),
    ("/frobnicate", "Unknown command '/frobnicate'. Type /? for help"),
    ("/?", "/set parameter NAME VALUE"),
    ("/help", "Use \"\"\" to begin"),
])  # fmt: skip
def test_commands_answer_without_sending(line, reply):
    session = ChatSession("m")
    result = session.command(line)
    assert reply in result.message and not result.exit
    assert session.parameters == {} and session.history == []


def test_show_reports_the_settings():
    session = ChatSession("ai/smollm2", system="Be brief.")
    session.set_parameter("top_p", "0.9")
    shown = session.command("/show").message
    assert "ai/smollm2" in shown and "Be brief." in shown and "top_p" in shown and "0.9" in shown


def test_multi_line_input_like_ollama():
    lines = MultiLine()
    assert lines.feed("plain") == "plain"
    assert lines.feed('"""one line"""') == "one line"
    assert lines.feed('"""first') is None and lines.open
    assert lines.feed("second") is None
    assert lines.feed('third"""') == "first\nsecond\nthird" and not lines.open
    assert lines.feed('"""') is None
    assert lines.feed("body") is None and lines.feed('"""') == "body"


def test_read_message_prompts_for_continuation_lines():
    script = Script('"""a', "b", 'c"""')
    assert read_message(script.read_line) == "a\nb\nc"
    assert script.prompts == [">>> ", "... ", "... "]


def test_multi_line_message_is_sent_whole():
    script = Script('"""Line one', "Line two", '"""', "/bye")
    send, sent = replying("Ok")
    chat(ChatSession("m"), script.terminal(), send)
    assert sent[0]["messages"][-1]["content"] == "Line one\nLine two"


def test_reasoning_is_dimmed_and_apart_from_the_answer():
    out = []
    printer = AnswerPrinter(out.append, dim=lambda t: f"<dim>{t}</dim>")
    reply = answer(stream_deltas(sse({"reasoning_content": "Hmm"}, {"reasoning_content": " ok"}, {"content": "42"})),
                   printer)  # fmt: skip
    assert reply.text == "42"  # the reasoning is not part of the answer kept in the history
    assert "".join(out) == ("<dim>Thinking...</dim>\n<dim>Hmm</dim><dim> ok</dim>\n<dim>...done thinking.</dim>\n\n"
                            "42\n")  # fmt: skip


def test_reasoning_can_go_elsewhere():
    answer_out, reasoning_out = [], []
    answer(stream_deltas(sse({"reasoning_content": "x"}, {"content": "y"})),
           AnswerPrinter(answer_out.append, reasoning_out.append))
    assert "".join(answer_out) == "y\n" and "x" in "".join(reasoning_out)


class StoppedStream:
    """Deltas, then Ctrl-C while the next one is awaited; records that it was closed."""

    def __init__(self):
        self.closed = False
        self.inner = iter([Delta("content", "Part")])

    def __iter__(self):
        return self

    def __next__(self):
        for delta in self.inner:
            return delta
        raise KeyboardInterrupt

    def close(self):
        self.closed = True


def test_ctrl_c_stops_the_answer_and_closes_the_stream_but_not_the_session():
    streams = []

    def send(body):
        streams.append(StoppedStream())
        return streams[-1]

    session = ChatSession("m")
    script = Script("Tell me a story", KeyboardInterrupt, "/bye")
    chat(session, script.terminal(), send)
    assert streams[0].closed
    assert "Part\n(stopped)" in script.text
    assert "Use Ctrl + d or /bye to exit." in script.text  # Ctrl-C at the prompt: still chatting
    assert session.history[-1] == {"role": "assistant", "content": "Part"}
    assert len(script.prompts) == 3


def test_closing_the_deltas_closes_the_lines():
    closed = []

    def lines():
        try:
            yield from sse({"content": "a"}, {"content": "b"})
        finally:
            closed.append(True)

    deltas = stream_deltas(lines())
    assert next(deltas) == Delta("content", "a")
    deltas.close()
    assert closed == [True]


def test_an_error_frame_ends_the_answer_with_its_message():
    error = [b'data: {"error": {"message": "the model crashed", "type": "server_error"}}']
    with pytest.raises(StreamError, match="the model crashed"):
        list(stream_deltas(error))
    script = Script("Hi")
    chat(ChatSession("m"), script.terminal(), lambda body: stream_deltas(iter(error)))
    assert "the model crashed" in script.text


def test_ctrl_d_ends_the_session():
    script = Script()
    chat(ChatSession("m"), script.terminal(), lambda body: pytest.fail("nothing to send"))
    assert script.prompts == [">>> "]
