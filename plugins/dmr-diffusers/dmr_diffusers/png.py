"""Pictures as PNG files' bytes (Pillow): lossless, so the same pixels give the same bytes."""

from __future__ import annotations

import io


def png_bytes(image) -> bytes:
    """``image`` (a Pillow image) encoded as PNG; nothing time-dependent is written in it."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
