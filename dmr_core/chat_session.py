"""``dmr run``'s chat, without a terminal: the conversation, the slash commands, multi-line input,
reading an OpenAI chat stream and printing it. Input, output and the server are passed in as
functions, so the whole loop runs in tests with lists of lines and a fake stream.

Like Ollama's REPL: ``\"\"\"`` opens and closes a multi-line message; ``/bye``, ``/clear``,
``/set system …``, ``/set parameter NAME VALUE``, ``/show``, ``/?``; Ctrl-C stops the answer being
streamed (the stream is closed, so the server stops generating) and Ctrl-D ends the session.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

PROMPT = ">>> "
CONTINUATION = "... "
QUOTES = '"""'

HELP = """Available commands:
  /set system TEXT            Set the system message
  /set parameter NAME VALUE   Set a parameter: temperature, top_p, seed, max_tokens (num_predict)
  /show [parameters|system]   Show the parameters and the system message
  /clear                      Clear the conversation (the system message stays)
  /bye                        Exit (Ctrl-D works too)
  /?, /help                   This help

Use \"\"\" to begin and end a multi-line message. Ctrl-C stops an answer."""

#: Parameters ``/set parameter`` accepts: their request field and type (Ollama's num_predict too).
PARAMETERS: dict[str, tuple[str, type]] = {
    "temperature": ("temperature", float), "top_p": ("top_p", float), "seed": ("seed", int),
    "max_tokens": ("max_tokens", int), "num_predict": ("max_tokens", int),
}  # fmt: skip
#: Ollama parameters that mean nothing per request here, with why.
IGNORED_PARAMETERS = {
    "num_ctx": "num_ctx is ignored: the context size is the server's; set it with "
               "`dmr configure MODEL --context-size N`.",
}  # fmt: skip


@dataclass(frozen=True)
class Delta:
    """A piece of a streamed answer: ``reasoning`` (the model thinking) or ``content``."""

    kind: str
    text: str


@dataclass(frozen=True)
class CommandResult:
    message: str = ""
    exit: bool = False


@dataclass
class ChatSession:
    """One conversation with one model: its history, system message and sampling parameters."""

    model: str
    system: str = ""
    parameters: dict[str, float | int] = field(default_factory=dict)
    history: list[dict[str, str]] = field(default_factory=list)

    def request_body(self, text: str) -> dict:
        """The streamed chat completion request for the user's next message ``text``."""
        system = [{"role": "system", "content": self.system}] if self.system else []
        messages = system + self.history + [{"role": "user", "content": text}]
        return {"model": self.model, "messages": messages, "stream": True, **self.parameters}

    def record(self, text: str, answer: str) -> None:
        self.history += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]

    def command(self, line: str) -> CommandResult:
        """Carry out a slash command (``line`` starts with ``/``)."""
        words = line.strip().split(maxsplit=1)
        name, rest = words[0].lower(), (words[1] if len(words) > 1 else "")
        if name in ("/bye", "/exit"):
            return CommandResult(exit=True)
        if name in ("/?", "/help"):
            return CommandResult(HELP)
        if name == "/clear":
            self.history.clear()
            return CommandResult("Cleared session context")
        if name == "/set":
            return CommandResult(self._set(rest))
        if name == "/show":
            return CommandResult(self._show(rest.strip()))
        return CommandResult(f"Unknown command '{words[0]}'. Type /? for help")

    def _set(self, rest: str) -> str:
        what, _, value = rest.strip().partition(" ")
        if what == "system":
            self.system = value.strip()
            return "Set system message." if self.system else "Cleared system message."
        if what == "parameter":
            return self.set_parameter(*value.split(maxsplit=1)) if len(value.split()) == 2 else _parameter_usage()
        return "Usage: /set system TEXT, or /set parameter NAME VALUE"

    def set_parameter(self, name: str, raw: str) -> str:
        if name in IGNORED_PARAMETERS:
            return IGNORED_PARAMETERS[name]
        if name not in PARAMETERS:
            return f"Unknown parameter '{name}'. {_parameter_usage()}"
        field_name, kind = PARAMETERS[name]
        try:
            self.parameters[field_name] = kind(raw)
        except ValueError:
            return f"Invalid value '{raw}' for {name}: it must be {'an integer' if kind is int else 'a number'}."
        return f"Set parameter '{name}' to '{raw}'"

    def _show(self, what: str) -> str:
        parameters = "\n".join(f"  {k:<12} {v}" for k, v in self.parameters.items()) or "  (server defaults)"
        system = self.system or "(none)"
        if what == "system":
            return system
        if what == "parameters":
            return "Parameters:\n" + parameters
        return f"Model: {self.model}\nSystem message: {system}\nParameters:\n{parameters}"


def _parameter_usage() -> str:
    return "Usage: /set parameter NAME VALUE, NAME one of " + ", ".join([*PARAMETERS, *IGNORED_PARAMETERS])


class MultiLine:
    """Assembles one message from typed lines: ``\"\"\"`` opens a multi-line message, a line ending
    in ``\"\"\"`` closes it (Ollama's rules). :meth:`feed` returns the message once it is whole."""

    def __init__(self) -> None:
        self._parts: list[str] | None = None

    @property
    def open(self) -> bool:
        return self._parts is not None

    def feed(self, line: str) -> str | None:
        if self._parts is None:
            if not line.startswith(QUOTES):
                return line
            line, self._parts = line[len(QUOTES):], []
        closed = line.endswith(QUOTES)
        self._parts.append(line[: -len(QUOTES)] if closed else line)
        if not closed:
            return None
        text, self._parts = "\n".join(self._parts), None
        return text.strip("\n")


def read_message(read_line: Callable[[str], str]) -> str:
    """The next whole message; ``read_line(prompt)`` raises EOFError (Ctrl-D) or KeyboardInterrupt."""
    assembler = MultiLine()
    while True:
        message = assembler.feed(read_line(CONTINUATION if assembler.open else PROMPT))
        if message is not None:
            return message


def stream_deltas(lines: Iterable[bytes | str]) -> Iterator[Delta]:
    """The reasoning and content deltas of an OpenAI chat completion stream (``data: …`` lines).

    Closing this generator closes ``lines`` too, so a stopped answer closes the HTTP stream.
    """
    try:
        for raw in lines:
            line = raw.decode() if isinstance(raw, bytes) else raw
            if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                continue
            yield from _chunk_deltas(json.loads(line[5:]))
    finally:
        close = getattr(lines, "close", None)
        if close is not None:
            close()


class StreamError(Exception):
    """An error frame in the middle of a stream."""


def _chunk_deltas(chunk: dict) -> Iterator[Delta]:
    if "error" in chunk:
        error = chunk["error"]
        raise StreamError(error.get("message", str(error)) if isinstance(error, dict) else str(error))
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        if delta.get("reasoning_content"):
            yield Delta("reasoning", delta["reasoning_content"])
        if delta.get("content"):
            yield Delta("content", delta["content"])


class AnswerPrinter:
    """Prints deltas: reasoning dimmed (``dim``) and apart from the answer, which follows it."""

    def __init__(self, write_answer: Callable[[str], None], write_reasoning: Callable[[str], None] | None = None,
                 dim: Callable[[str], str] = lambda text: text) -> None:  # fmt: skip
        self.write_answer = write_answer
        self.write_reasoning = write_reasoning or write_answer
        self.dim = dim
        self.thinking = False
        self.answered = False

    def feed(self, delta: Delta) -> None:
        if delta.kind == "reasoning":
            if not self.thinking:
                self.thinking = True
                self.write_reasoning(self.dim("Thinking...") + "\n")
            self.write_reasoning(self.dim(delta.text))
            return
        if self.thinking and not self.answered:
            self.write_reasoning("\n" + self.dim("...done thinking.") + "\n\n")
        self.answered = True
        self.write_answer(delta.text)

    def finish(self) -> None:
        self.write_answer("\n")
        if self.thinking and not self.answered:  # stopped while thinking: close the dimmed part
            self.write_reasoning("\n")


@dataclass
class Answer:
    text: str
    interrupted: bool = False


def answer(deltas: Iterator[Delta], printer: AnswerPrinter) -> Answer:
    """Print one streamed answer; Ctrl-C stops it and closes the stream (the server stops generating)."""
    parts: list[str] = []
    try:
        for delta in deltas:
            printer.feed(delta)
            if delta.kind == "content":
                parts.append(delta.text)
    except KeyboardInterrupt:
        return Answer("".join(parts), interrupted=True)
    finally:
        getattr(deltas, "close", lambda: None)()
        printer.finish()
    return Answer("".join(parts))


@dataclass
class Terminal:
    """What the loop needs from the outside world."""

    read_line: Callable[[str], str]
    write: Callable[[str], None]
    dim: Callable[[str], str] = lambda text: text


#: Sends a request body, returns its deltas; raises an exception with ``.message`` on failure.
Send = Callable[[dict], Iterator[Delta]]


def chat(session: ChatSession, terminal: Terminal, send: Send, errors: tuple[type[Exception], ...] = ()) -> None:
    """The interactive loop, until ``/bye`` or Ctrl-D."""
    terminal.write(terminal.dim("Send a message (/? for help)") + "\n")
    while True:
        try:
            text = read_message(terminal.read_line)
        except KeyboardInterrupt:
            terminal.write("\nUse Ctrl + d or /bye to exit.\n")
            continue
        except EOFError:
            terminal.write("\n")
            return
        if text.startswith("/") and not text.startswith("//"):
            result = session.command(text)
            if result.message:
                terminal.write(result.message + "\n")
            if result.exit:
                return
        elif text.strip():
            _turn(session, terminal, send, text, errors)


def _turn(session: ChatSession, terminal: Terminal, send: Send, text: str, errors: tuple) -> None:
    try:
        reply = answer(send(session.request_body(text)), AnswerPrinter(terminal.write, dim=terminal.dim))
    except (StreamError, *errors) as exc:
        terminal.write(f"{getattr(exc, 'message', exc)}\n")
        return
    if reply.interrupted:
        terminal.write("(stopped)\n")
    if reply.text or not reply.interrupted:
        session.record(text, reply.text)
