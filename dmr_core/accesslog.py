"""The access log: one line per request, written when its response ends (a stream's last byte).

Each line has the request id (the response's ``X-Request-Id``), the client address, method, path,
model, status, the prompt and completion tokens of its generation, the time to its first token and
the whole duration (seconds). ``log_format = "text"`` writes logfmt (``key=value``, values quoted
when they need it); ``"json"`` one JSON object per line, with ``null`` for what a request does not
have. Nothing else of a request is logged: no body, no query string, no header (API keys travel
in headers). The path is written escaped, so that no request can forge a line.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import time
from typing import Any, TextIO

from dmr_core.settings import Settings

FORMATS = ("text", "json")
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
#: Characters that make a logfmt value quoted (besides unprintable ones).
_LOGFMT_SPECIAL = re.compile(r'[ "=\\]')


def fields(exchange, seconds: float) -> dict[str, Any]:
    """The line's fields for ``exchange`` (a :class:`dmr_core.exchanges.Exchange`), in order; None
    for what the request does not have."""
    ttft = exchange.ttft
    return {"time": _utc_now(), "id": exchange.id, "remote": exchange.remote or None, "method": exchange.method,
            "path": exchange.path, "status": exchange.status, "model": exchange.model,
            "prompt_tokens": exchange.prompt_tokens, "completion_tokens": exchange.completion_tokens,
            "ttft": None if ttft is None else round(ttft, 4), "duration": round(seconds, 4)}  # fmt: skip


def as_json(values: dict[str, Any]) -> str:
    return _encode_json(values)


def as_text(values: dict[str, Any]) -> str:
    return " ".join(f"{name}={_logfmt(value)}" for name, value in values.items())


def _logfmt(value: Any) -> str:
    if value is None:
        return "-"
    if type(value) in (int, float):  # most fields: nothing to quote
        return repr(value)
    text = str(value)
    plain = text and text.isprintable() and _LOGFMT_SPECIAL.search(text) is None
    return text if plain else json.dumps(text)


def _utc_now() -> str:
    now = time.time()
    return _utc_second(int(now)) + f".{int(now % 1 * 1000):03d}Z"


@functools.lru_cache(maxsize=2)
def _utc_second(second: int) -> str:
    """The line's time to the second, formatted once a second rather than once a request."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


class AccessLog:
    """Writes each line, whole, to standard output or to a file (opened for appending), as
    gunicorn's ``--access-logfile`` does. Not through :mod:`logging`: a record, its handler's lock
    and its formatter cost more than the line itself (17 against 3 microseconds, measured here),
    once per request; one ``write`` of a whole line from each worker keeps lines whole."""

    def __init__(self, render, stream: TextIO | None) -> None:
        self._render = render
        self._stream = stream

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessLog:
        if settings.log_format not in FORMATS:
            raise ValueError(f"log_format must be one of {', '.join(FORMATS)}, not {settings.log_format!r}")
        render = as_json if settings.log_format == "json" else as_text
        return cls(render, _stream(settings.access_log))

    def write(self, exchange, seconds: float) -> None:
        if self._stream is not None:
            self._stream.write(self._render(fields(exchange, seconds)) + "\n")
            self._stream.flush()


def _stream(target: str) -> TextIO | None:
    if target == "off":
        return None
    if target in ("-", ""):
        return sys.stdout
    return open(target, "a", encoding="utf-8")  # noqa: SIM115 (open for the worker's life)
