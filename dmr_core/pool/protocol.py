"""Length-prefixed JSON frames, the only thing that crosses the pool's sockets.

Each frame is a 4-byte big-endian length followed by a compact JSON object. JSON (not pickle)
because the peer is another process that must not be able to run code in ours.

Frames a client sends: to the supervisor ``{"op": "acquire", "spec": {…}}`` (answered with the
worker socket and the effective context size; the connection then stays open while the job runs,
and closing it releases the runner), ``runners``, ``unload``, ``configure``, ``configs`` and
``status``; to a worker ``{"op": "generate" | "embed" | "rank" | "images" | "count", "engine": …, "request": {…}}``
(``images`` answers with its PNGs as base64 text),
and from the supervisor ``load``, ``unload`` and ``loaded``, and ``adopt`` from a supervisor that
replaces a killed one (:mod:`dmr_core.pool.adoption`). Frames a worker answers with, keyed
by ``k``: ``c`` a generation chunk (``t`` text, ``f`` finish reason, ``u`` usage), ``r`` a result,
``e`` an error (:meth:`dmr_core.errors.DmrError.to_dict`).
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

_HEADER = struct.Struct("!I")
#: Upper bound for one frame; a larger length means a corrupt or hostile peer.
MAX_FRAME = 256 * 1024 * 1024

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_decode = json.JSONDecoder().decode


class ProtocolError(Exception):
    """The peer sent something that is not a frame."""


def encode_frame(message: dict[str, Any]) -> bytes:
    body = _encode(message).encode()
    return _HEADER.pack(len(body)) + body


def send_frame(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(encode_frame(message))


class FrameReader:
    """Reads frames from a stream socket, keeping whatever arrived past the current frame."""

    def __init__(self, sock: socket.socket, bufsize: int = 65536) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self._bufsize = bufsize

    def _fill(self, size: int) -> bool:
        while len(self._buffer) < size:
            data = self._sock.recv(self._bufsize)
            if not data:
                return False
            self._buffer += data
        return True

    def read(self) -> dict[str, Any] | None:
        """The next frame, or None at a clean end of stream."""
        if not self._fill(_HEADER.size):
            if self._buffer:
                raise ProtocolError("connection closed inside a frame header")
            return None
        (length,) = _HEADER.unpack_from(self._buffer)
        if length > MAX_FRAME:
            raise ProtocolError(f"frame of {length} bytes is over the limit")
        if not self._fill(_HEADER.size + length):
            raise ProtocolError("connection closed inside a frame")
        body = bytes(self._buffer[_HEADER.size : _HEADER.size + length])
        del self._buffer[: _HEADER.size + length]
        try:
            message = _decode(body.decode())
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
            raise ProtocolError(f"frame is not JSON: {exc}") from None
        if not isinstance(message, dict):
            raise ProtocolError("frame is not a JSON object")
        return message


def request_reply(path: str, message: dict[str, Any], timeout: float | None = 30.0) -> dict[str, Any]:
    """Send one frame to the Unix socket at ``path`` and return the one frame it answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        send_frame(sock, message)
        reply = FrameReader(sock).read()
    if reply is None:
        raise ProtocolError(f"{path} closed the connection without answering")
    return reply
