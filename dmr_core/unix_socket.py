"""dmr on a Unix socket (``DMR_BIND=unix:/run/dmr/dmr.sock``): the socket's permissions.

gunicorn creates the socket itself (its own ``unix:`` bind; it removes a stale one first and the
socket file when it stops). dmr applies ``bind_mode`` twice: as gunicorn's ``umask`` while the
master binds, so the socket never exists with looser permissions than asked, and with a chmod once
the server listens (the ``when_ready`` hook), which also covers a socket gunicorn did not bind
itself: one inherited across a ``USR2`` re-exec or handed over by systemd socket activation.
"""

from __future__ import annotations

import os
from typing import Any

from dmr_core.settings import Settings, load_settings


def socket_path(bind: str) -> str | None:
    """The filesystem path of a ``unix:`` bind (``unix:/p`` or ``unix:///p``, as gunicorn reads them)."""
    if not bind.startswith("unix:"):
        return None
    return bind[len("unix://"):] if bind.startswith("unix://") else bind[len("unix:"):]


def socket_mode(settings: Settings) -> int:
    """``bind_mode`` as permission bits; a clear error for anything but octal 0-0777."""
    try:
        mode = int(settings.bind_mode, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise ValueError(f"bind_mode must be octal permissions such as 0660, not {settings.bind_mode!r}")
    return mode


def gunicorn_settings(settings: Settings) -> dict[str, Any]:
    """gunicorn's ``umask`` for a ``unix:`` bind: the socket is born with ``bind_mode`` (0777 & ~umask)."""
    if socket_path(settings.bind) is None:
        return {}
    return {"umask": 0o777 & ~socket_mode(settings)}


def when_ready(server) -> None:
    """gunicorn hook, once the master listens: set ``bind_mode`` on each Unix socket it listens on."""
    mode = socket_mode(load_settings())
    for listener in server.LISTENERS:
        path = listener.cfg_addr
        if str(listener).startswith("unix:") and isinstance(path, str) and not path.startswith("\0"):
            os.chmod(path, mode)
            server.log.info("Unix socket %s: mode %04o", path, mode)
