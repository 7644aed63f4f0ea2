"""Terminal progress bars (tqdm) for pull and push: one bar per layer, driven by progress events."""

from __future__ import annotations

from collections.abc import Iterable

from tqdm import tqdm

from dmr_core.distribution.progress import ProgressEvent


class LayerBars:
    """Draws a bar per layer id from DMR progress events; returns the final message."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bars: dict[str, tqdm] = {}

    def update(self, event: ProgressEvent) -> None:
        layer = event.layer
        if event.type != "progress" or not layer.id:
            return
        bar = self._bars.get(layer.id)
        if bar is None:
            label = layer.id.removeprefix("sha256:")[:12]
            bar = tqdm(total=layer.size, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
                       disable=not self.enabled, leave=True, position=len(self._bars))  # fmt: skip
            self._bars[layer.id] = bar
        bar.update(layer.current - bar.n)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()

    def follow(self, events: Iterable[ProgressEvent]) -> str:
        """Consume ``events``, drawing bars; the message of the last event (success or warning)."""
        message = ""
        try:
            for event in events:
                self.update(event)
                if event.type in ("success", "warning"):
                    message = event.message
        finally:
            self.close()
        return message
