"""Streaming pull/push progress the way DMR does, in I/O-free pieces.

DMR answers ``application/json`` only when the request's ``Accept`` is exactly that; otherwise
``text/plain`` with every line HTML-escaped (its CLI unescapes them). An error after the stream has
started is sent as a final ``{"type":"error","message":"Error: …"}`` line on the 200 response.
"""

from __future__ import annotations

from collections.abc import Iterator

from dmr_core.distribution.progress import ProgressEvent
from dmr_core.errors import DmrError, EngineError


def wants_json(accept: str | None) -> bool:
    return (accept or "").strip() == "application/json"


# Go's html.EscapeString, which DMR applies to text/plain progress lines.
_GO_HTML_ESCAPES = str.maketrans({"&": "&amp;", "'": "&#39;", "<": "&lt;", ">": "&gt;", '"': "&#34;"})


def encode_line(event: ProgressEvent, as_json: bool) -> bytes:
    line = event.to_json()
    return (line if as_json else line.translate(_GO_HTML_ESCAPES)).encode() + b"\n"


def primed(events: Iterator[ProgressEvent]) -> Iterator[ProgressEvent]:
    """Take the first event now, so failures before any progress get a real HTTP status."""
    first = next(events)

    def replay() -> Iterator[ProgressEvent]:
        yield first
        yield from events

    return replay()


def lines(events: Iterator[ProgressEvent], as_json: bool, mode: str) -> Iterator[bytes]:
    try:
        for event in events:
            yield encode_line(event, as_json)
    except DmrError as exc:
        yield encode_line(ProgressEvent("error", f"Error: {exc.message}", mode=mode), as_json)
    except Exception as exc:  # never a traceback on the wire
        error = EngineError(f"{type(exc).__name__}: {exc}")
        yield encode_line(ProgressEvent("error", f"Error: {error.message}", mode=mode), as_json)
