"""The web workers' side of the pool: route a job, send it, stream its chunks back.

Only plain blocking ``socket`` calls, so under gunicorn's gevent workers every wait yields to
other requests. Closing the chunk iterator closes the socket, which the worker notices within
one token and stops the job; so does a generation's HTTP client closing its connection, streamed
or not (:mod:`dmr_core.disconnect` watches it and the job is abandoned: its socket shut down).

A job whose worker dies fails with :class:`~dmr_core.errors.WorkerCrashed`, unless the worker
never read it: then the kernel resets the connection (a Unix socket closed with data unread, or
one never accepted, resets its peer; one whose job was read ends with a plain end of file), and
the job is placed and sent again, on the worker respawned in its place. A job that the worker had
read may be what killed it, so it is never sent twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dmr_core.disconnect import ClientWatch
from dmr_core.errors import ClientDisconnected, EngineUnavailable, WorkerCrashed, error_from_dict
from dmr_core.generation import (
    EmbeddingRequest,
    EmbeddingResult,
    GenerationChunk,
    GenerationRequest,
    ImageRequest,
    ImageResult,
    RankRequest,
    RankResult,
    chunk_from_wire,
    image_result_from_wire,
    to_wire,
)
from dmr_core.pool.protocol import FrameReader, ProtocolError, request_reply, send_frame
from dmr_core.pool.supervisor import SUPERVISOR_SOCKET

#: How long a preload waits for the supervisor to confirm its reference is released.
RELEASE_WAIT = 5.0
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
            except (FileNotFoundError, ConnectionRefusedError, ProtocolError, ConnectionResetError, BrokenPipeError):
                if time.monotonic() >= deadline:
                    raise EngineUnavailable("the inference pool is not running") from None
                time.sleep(delay)
                # At most 50 ms: a failed connect to a Unix socket costs microseconds, and a new
                # supervisor (a killed one's) listens within about 0.2 s.
                delay = min(delay * 2, 0.05)

    def call_supervisor(self, message: dict[str, Any]) -> dict[str, Any]:
        path = str(self.pool_dir / SUPERVISOR_SOCKET)
        reply = self._retrying(lambda: request_reply(path, message))
        if reply.get("k") == "e":
            raise error_from_dict(reply["error"])
        return reply["result"]

    def _acquire(self, spec: dict[str, Any]) -> tuple[socket.socket, dict[str, Any]]:
        """A reference on a runner for ``spec``: held while the returned socket stays open."""
        lease = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            lease.connect(str(self.pool_dir / SUPERVISOR_SOCKET))
            send_frame(lease, {"op": "acquire", "spec": spec})
            reply = FrameReader(lease).read()
            if reply is None:
                raise ProtocolError("the pool supervisor closed the connection")
            if reply.get("k") == "e":
                raise error_from_dict(reply["error"])
        except BaseException:
            lease.close()
            raise
        return lease, reply["result"]

    def _open_job(self, spec: dict[str, Any], op: str, engine: str, request, client=None) -> Job:
        def attempt() -> Job:
            lease, placed = self._acquire(spec)
            job = dataclasses.replace(request, context_size=placed["context_size"])
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(placed["socket"])
                send_frame(sock, {"op": op, "engine": engine, "model": spec.get("model_name"), "request": to_wire(job)})
            except BaseException:
                sock.close()
                lease.close()
                raise
            return Job(sock, lease, client)

        return self._retrying(attempt)

    def _first_frame(self, job: Job, submit: Callable[[], Job]) -> tuple[Job, dict[str, Any]]:
        """``job``'s first frame; while its worker dies before reading it, ``submit()`` it again
        (see the module; for up to ``connect_timeout``), and that job's first frame."""
        deadline = time.monotonic() + self.connect_timeout
        while True:
            try:
                return job, job.frame(first=True)
            except ConnectionResetError:
                job.close()
                if time.monotonic() >= deadline:
                    raise WorkerCrashed(_CRASHED) from None
            except BaseException:
                job.close()
                raise
            job = submit()

    def preload(self, spec: dict[str, Any]) -> None:
        """Take a reference on the runner for ``spec`` (the supervisor loads it first) and let go."""
        lease, _ = self._retrying(lambda: self._acquire(spec))
        with lease:
            # Released before we answer: an unload sent right after a preload finds the model idle.
            lease.shutdown(socket.SHUT_WR)
            lease.settimeout(RELEASE_WAIT)
            with contextlib.suppress(OSError):
                lease.recv(1)  # the supervisor closes its end once the reference is released

    # -- jobs ----------------------------------------------------------------------------------

    def generate(self, engine: str, request: GenerationRequest, spec: dict[str, Any] | None = None,
                 client: socket.socket | None = None) -> Iterator[GenerationChunk]:  # fmt: skip
        """Chunks of the job; raises the worker's :class:`~dmr_core.errors.DmrError` as it comes.

        :param spec: what :class:`~dmr_core.pool.scheduler.RunnerSpec` the job needs (model name,
            sizes, keep-alive); a minimal one is made from ``request`` when not given.
        :param client: the HTTP client's socket (:func:`dmr_core.disconnect.client_socket`): the
            job is cancelled if it closes, and the chunks end with :class:`ClientDisconnected`."""
        spec = spec or _spec(engine, request, "completion")

        def submit() -> Job:
            return self._open_job(spec, "generate", engine, request, client)

        return self._chunks(submit(), submit)  # sent now: OpenAI's n sends them all before reading any

    def _chunks(self, job: Job, submit: Callable[[], Job]) -> Iterator[GenerationChunk]:
        job, frame = self._first_frame(job, submit)
        with job:
            while True:
                if frame["k"] == "e":
                    raise error_from_dict(frame["error"])
                chunk = chunk_from_wire(frame)
                yield chunk
                if chunk.finish_reason is not None:
                    return
                frame = job.frame()

    def embed(self, engine: str, request: EmbeddingRequest, spec: dict[str, Any] | None = None) -> EmbeddingResult:
        result = self._one_reply(spec or _spec(engine, request, "embedding"), "embed", engine, request)
        return EmbeddingResult(tuple(tuple(v) for v in result["vectors"]), result["prompt_tokens"])

    def rank(self, engine: str, request: RankRequest, spec: dict[str, Any] | None = None) -> RankResult:
        """One score per pair of ``request``, from a model loaded for reranking."""
        result = self._one_reply(spec or _spec(engine, request, "reranking"), "rank", engine, request)
        return RankResult(tuple(result["scores"]), result["prompt_tokens"])

    def generate_images(self, engine: str, request: ImageRequest, spec: dict[str, Any] | None = None,
                        client: socket.socket | None = None) -> ImageResult:  # fmt: skip
        """The pictures of ``request``, from a model loaded for image generation. If ``client``
        (the HTTP client's socket) closes meanwhile, the job stops and this raises ClientDisconnected."""
        spec = spec or _spec(engine, request, "image-generation")
        frame = self._one_frame(lambda: self._open_job(spec, "images", engine, request, client))
        if frame["k"] == "e":
            raise error_from_dict(frame["error"])
        return image_result_from_wire(frame["result"])

    def count_tokens(self, engine: str, request: GenerationRequest, spec: dict[str, Any] | None = None) -> int:
        """The prompt size of ``request`` in tokens (template and tools applied), without generating."""
        return int(self._one_reply(spec or _spec(engine, request, "completion"), "count", engine, request))

    def _one_reply(self, spec: dict[str, Any], op: str, engine: str, request) -> Any:
        """The result of a job answered with one frame; the worker's error raised as it came."""
        frame = self._one_frame(lambda: self._open_job(spec, op, engine, request))
        if frame["k"] == "e":
            raise error_from_dict(frame["error"])
        return frame["result"]

    def _one_frame(self, submit: Callable[[], Job]) -> dict[str, Any]:
        job, frame = self._first_frame(submit(), submit)
        job.close()
        return frame

    def status(self) -> dict[str, Any]:
        return self.call_supervisor({"op": "status"})


class Job:
    """A job's socket to its worker and its lease on the runner (closed together), and the watch
    on its HTTP client's connection, if any (stopped with them)."""

    def __init__(self, sock: socket.socket, lease: socket.socket, client: socket.socket | None = None) -> None:
        self.sock = sock
        self.lease = lease
        self.abandoned = False
        self._reader = FrameReader(sock)
        self._watch = ClientWatch(client, self.abandon) if client is not None else None

    def frame(self, first: bool = False) -> dict[str, Any]:
        """The job's next frame; ClientDisconnected or WorkerCrashed if it ends without one.
        ``first``: a reset connection (its worker died before reading the job) raises ConnectionResetError."""
        try:
            frame = self._reader.read()
        except ConnectionResetError:
            if first and not self.abandoned:
                raise
            frame = None
        except ProtocolError:
            frame = None
        if frame is None and self.abandoned:
            raise ClientDisconnected("the client closed its connection; its job was cancelled")
        if frame is None:
            raise WorkerCrashed(_CRASHED)
        return frame

    def abandon(self) -> None:
        """Cancel the job: its client left. The worker sees its socket end, as when a stream's reader
        closes it, and stops within a token; the reader here sees it end and raises ClientDisconnected."""
        self.abandoned = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # not close(): this job's reader may be waiting on it
        except OSError:
            pass  # already closed: the job is over anyway

    def __enter__(self) -> Job:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._watch is not None:
            self._watch.stop()
        try:
            self.sock.close()
        finally:
            self.lease.close()


def _spec(engine: str, request, mode: str) -> dict[str, Any]:
    return {"engine": engine, "model_path": request.model_path, "mode": mode, "model_name": request.model_path,
            "model_id": request.model_path, "default_context": request.context_size or 0}  # fmt: skip

