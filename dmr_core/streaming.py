"""Framing for streamed responses (SSE, NDJSON) and the rules every stream follows.

No dialect knowledge here: a dialect supplies the encoded events and its in-stream error form.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from flask import Response

from dmr_core.errors import ClientDisconnected, DmrError, EngineError

log = logging.getLogger("dmr.stream")

#: Headers that keep proxies (nginx) from buffering a stream.
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_data(payload: str) -> str:
    """One SSE frame with only a ``data:`` line (OpenAI's form)."""
    return f"data: {payload}\n\n"


def sse_event(event: str, payload: str) -> str:
    """One SSE frame with an ``event:`` line (Anthropic's form)."""
    return f"event: {event}\ndata: {payload}\n\n"


def guarded(events: Iterable[str], on_error: Callable[[DmrError], str]) -> Iterator[bytes]:
    """Yield ``events`` encoded; a failure after the first byte becomes the dialect's in-stream error.

    When the client disconnects, the server closes this generator (a write failed), which closes
    ``events`` and through it the pool socket: the inference worker sees that and stops the job.
    A disconnect seen first by the watch on the client (:mod:`dmr_core.disconnect`: while the
    job is slow to produce, nothing is written) ends the stream with nobody left to tell.
    """
    iterator = iter(events)
    try:
        for event in iterator:
            yield event.encode()
    except ClientDisconnected:
        return
    except DmrError as exc:
        yield on_error(exc).encode()
    except Exception as exc:  # never a traceback on the wire
        log.exception("stream failed")
        yield on_error(EngineError(f"{type(exc).__name__}: {exc}")).encode()
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def stream_response(events: Iterator[bytes], mimetype: str) -> Response:
    return Response(events, mimetype=mimetype, headers=STREAM_HEADERS, direct_passthrough=True)
