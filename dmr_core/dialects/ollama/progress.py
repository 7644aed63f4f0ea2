"""DMR pull/push progress events as Ollama's status objects, with no I/O.

Ollama's clients (its CLI, ollama-python, Open WebUI) draw one bar per ``digest`` from
``{"status":"pulling <12 hex>","digest","total","completed"}`` and finish on ``{"status":"success"}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from dmr_core.distribution.progress import ProgressEvent
from dmr_core.errors import EngineError

_OPENING = {"pull": "pulling manifest", "push": "retrieving manifest"}
_VERB = {"pull": "pulling", "push": "pushing"}
_CLOSING = {
    "pull": ("verifying sha256 digest", "writing manifest", "success"),
    "push": ("pushing manifest", "success"),
}


def _layer_status(event: ProgressEvent, mode: str) -> dict[str, Any]:
    digest = event.layer.id
    short = digest.removeprefix("sha256:")[:12]
    return {"status": f"{_VERB[mode]} {short}", "digest": digest, "total": event.layer.size,
            "completed": event.layer.current}  # fmt: skip


def statuses(events: Iterable[ProgressEvent], mode: str) -> Iterator[dict[str, Any]]:
    """Ollama's status objects for ``events`` (``mode``: pull or push); an error event raises."""
    iterator = iter(events)
    try:
        yield {"status": _OPENING[mode]}
        for event in iterator:
            if event.type == "progress" and event.layer.id:
                yield _layer_status(event, mode)
            elif event.type == "success":
                yield from ({"status": status} for status in _CLOSING[mode])
            elif event.type == "error":
                raise EngineError(event.message.removeprefix("Error: "))
            elif event.type == "warning" and event.message:
                yield {"status": event.message}
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
