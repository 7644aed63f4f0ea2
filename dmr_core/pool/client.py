"""The web workers' side of the pool: route a job, send it, stream its chunks back.

Only plain blocking ``socket`` calls, so under gunicorn's gevent workers every wait yields to
other requests. Closing the chunk iterator closes the socket, which the worker notices within
one token and stops the job.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dmr_core.errors import EngineUnavailable, WorkerCrashed, error_from_dict
from dmr_core.generation import (
    EmbeddingRequest,
    EmbeddingResult,
    GenerationChunk,
    GenerationRequest,
    chunk_from_wire,
    to_wire,
)
from dmr_core.pool.protocol import FrameReader, ProtocolError, request_reply, send_frame
from dmr_core.pool.supervisor import SUPERVISOR_SOCKET

_CRASHED = "the inference worker running this request exited unexpectedly; it is being restarted"


class PoolClient:
    """:param pool_dir: the pool's socket directory. :param connect_timeout: how long to keep
    retrying while the pool (re)starts before answering 503."""

    def __init__(self, pool_dir: Path, connect_timeout: float = 30.0) -> None:
        self.pool_dir = pool_dir
        self.connect_timeout = connect_timeout

    # -- connection ----------------------------------------------------------------------------

    def _retrying(self, attempt):
        deadline = time.monotonic() + self.connect_timeout
        delay = 0.01
        while True:
            try:
                return attempt()
            except (FileNotFoundError, ConnectionRefusedError, ProtocolError, ConnectionResetError):
                if time.monotonic() >= deadline:
                    raise EngineUnavailable("the inference pool is not running") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.25)

    def call_supervisor(self, message: dict[str, Any]) -> dict[str, Any]:
        path = str(self.pool_dir / SUPERVISOR_SOCKET)
        reply = self._retrying(lambda: request_reply(path, message))
        if reply.get("k") == "e":
            raise error_from_dict(reply["error"])
        return reply["result"]

    def _open_job(self, model_path: str, frame: dict[str, Any]) -> socket.socket:
        def attempt() -> socket.socket:
            route = self.call_supervisor({"op": "route", "model_path": model_path})
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(route["socket"])
                send_frame(sock, frame)
            except BaseException:
                sock.close()
                raise
            return sock

        return self._retrying(attempt)

    # -- jobs ----------------------------------------------------------------------------------

    def generate(self, engine: str, request: GenerationRequest) -> Iterator[GenerationChunk]:
        """Chunks of the job; raises the worker's :class:`~dmr_core.errors.DmrError` as it comes."""
        sock = self._open_job(request.model_path, {"op": "generate", "engine": engine, "request": to_wire(request)})
        return self._chunks(sock)

    @staticmethod
    def _chunks(sock: socket.socket) -> Iterator[GenerationChunk]:
        with sock:
            reader = FrameReader(sock)
            while True:
                frame = _read_or_crash(reader)
                if frame["k"] == "e":
                    raise error_from_dict(frame["error"])
                chunk = chunk_from_wire(frame)
                yield chunk
                if chunk.finish_reason is not None:
                    return

    def embed(self, engine: str, request: EmbeddingRequest) -> EmbeddingResult:
        sock = self._open_job(request.model_path, {"op": "embed", "engine": engine, "request": to_wire(request)})
        with sock:
            frame = _read_or_crash(FrameReader(sock))
        if frame["k"] == "e":
            raise error_from_dict(frame["error"])
        result = frame["result"]
        return EmbeddingResult(tuple(tuple(v) for v in result["vectors"]), result["prompt_tokens"])

    def count_tokens(self, engine: str, request: GenerationRequest) -> int:
        """The prompt size of ``request`` in tokens (template and tools applied), without generating."""
        sock = self._open_job(request.model_path, {"op": "count", "engine": engine, "request": to_wire(request)})
        with sock:
            frame = _read_or_crash(FrameReader(sock))
        if frame["k"] == "e":
            raise error_from_dict(frame["error"])
        return int(frame["result"])

    def status(self) -> dict[str, Any]:
        return self.call_supervisor({"op": "status"})


def _read_or_crash(reader: FrameReader) -> dict[str, Any]:
    try:
        frame = reader.read()
    except (ConnectionResetError, ProtocolError):
        frame = None
    if frame is None:
        raise WorkerCrashed(_CRASHED)
    return frame
