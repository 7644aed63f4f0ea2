"""Pull and push progress, as DMR reports it: one JSON object per line.

``{"type":"progress","message":"Downloaded: 12.34 MB","total":<all layers>,"layer":{"id":"sha256:…",
"size":<layer>,"current":<done>},"mode":"pull"}`` while bytes move, then ``{"type":"success",
"message":"Model pulled successfully","total":0,"layer":{"size":0,"current":0},"mode":"pull"}``.
The same events drive the native API's streamed response and the CLI's progress bars.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LayerProgress:
    id: str = ""
    size: int = 0
    current: int = 0

    def to_dict(self) -> dict:
        data: dict = {"id": self.id} if self.id else {}  # DMR omits an empty id
        data.update(size=self.size, current=self.current)
        return data


@dataclass(frozen=True)
class ProgressEvent:
    """``type`` is ``progress``, ``success``, ``warning`` or ``error``; ``mode`` is ``pull`` or ``push``."""

    type: str
    message: str
    total: int = 0
    layer: LayerProgress = field(default_factory=LayerProgress)
    mode: str = "pull"

    def to_dict(self) -> dict:
        return {"type": self.type, "message": self.message, "total": self.total,
                "layer": self.layer.to_dict(), "mode": self.mode}  # fmt: skip

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict) -> ProgressEvent:
        """An event read back from a server's progress stream (the CLI's ``dmr run`` pull)."""
        layer = data.get("layer") or {}
        return cls(str(data.get("type", "")), str(data.get("message", "")), int(data.get("total") or 0),
                   LayerProgress(str(layer.get("id", "")), int(layer.get("size") or 0), int(layer.get("current") or 0)),
                   str(data.get("mode", "pull")))  # fmt: skip


def human_bytes(count: float) -> str:
    """DMR's progress unit: decimal megabytes with two decimals (``12.34 MB``)."""
    return f"{count / 1_000_000:.2f} MB"


def transfer_event(verb: str, total: int, layer: LayerProgress, mode: str) -> ProgressEvent:
    """``{"type":"progress","message":"Downloaded: 12.34 MB",…}``: ``layer``'s own bytes so far."""
    return ProgressEvent("progress", f"{verb}: {human_bytes(layer.current)}", total, layer, mode)


class Throttle:
    """Lets a progress event through at most every ``interval`` s or ``step`` bytes, and always at a layer's end."""

    def __init__(self, interval: float = 0.1, step: int = 1 << 20, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.step = step
        self.clock = clock
        self._last_time = float("-inf")
        self._last_bytes: dict[str, int] = {}

    def due(self, layer: LayerProgress) -> bool:
        now = self.clock()
        last = self._last_bytes.get(layer.id, -self.step)
        if layer.current >= layer.size or now - self._last_time >= self.interval or layer.current - last >= self.step:
            self._last_time = now
            self._last_bytes[layer.id] = layer.current
            return True
        return False


def layer_events(verb: str, mode: str, total: int, layer: LayerProgress, counts: Iterator[int],
                 throttle: Throttle) -> Iterator[ProgressEvent]:  # fmt: skip
    """Throttled transfer events for one layer from its running byte counts (repeats dropped)."""
    return interleaved_events(verb, mode, total, ((layer.id, layer.size, current) for current in counts), throttle)


def interleaved_events(verb: str, mode: str, total: int, counts: Iterator[tuple[str, int, int]],
                       throttle: Throttle) -> Iterator[ProgressEvent]:  # fmt: skip
    """Throttled transfer events from ``(layer id, layer size, bytes done)`` of layers moving at once.

    Each layer keeps its own last count, so layers transferred concurrently each get their events
    (and always their final one) however their counts are interleaved.
    """
    last: dict[str, int] = {}
    for layer_id, size, current in counts:
        progress = LayerProgress(layer_id, size, current)
        if last.get(layer_id) != current and throttle.due(progress):
            last[layer_id] = current
            yield transfer_event(verb, total, progress, mode)
