"""Raw streamed requests whose TCP connection a test can see: which web worker serves it, how it ended."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.long_stories import LONG_STORY, NEVER_ENDS

#: A streamed request per dialect: (path, body for a number of tokens and a context size, 0 for the default).
STREAMED = {
    "openai": ("/engines/v1/chat/completions", lambda tokens, context: {
        "model": "ai/smollm2", "stream": True, "max_tokens": tokens, "temperature": 1.0, "messages": LONG_STORY,
        "logit_bias": NEVER_ENDS}),
    "anthropic": ("/v1/messages", lambda tokens, context: {
        "model": "ai/smollm2", "stream": True, "max_tokens": tokens, "messages": LONG_STORY}),
    "ollama": ("/api/chat", lambda tokens, context: {
        "model": "ai/smollm2", "stream": True, "messages": LONG_STORY,
        "options": {"num_predict": tokens, **({"num_ctx": context} if context else {})}}),
}  # fmt: skip


@dataclass
class Stream:
    """One streamed generation read line by line in a thread of its own.

    ``events``: the JSON payloads received (SSE ``data:`` lines, or NDJSON lines); ``ended``: how it
    ended: ``done`` (the dialect's normal end), ``error`` (an error event), ``dropped`` (the
    connection ended without either). ``context``: a context size of its own (Ollama's ``num_ctx``:
    another runner of the model). ``connection``: a kept-alive one to send it on (a chosen web worker)."""

    dialect: str
    port: int
    tokens: int = 2000
    context: int = 0
    connection: http.client.HTTPConnection | None = None
    events: list[dict] = field(default_factory=list)
    ended: str | None = None
    local_port: int = 0
    started: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Stream:
        path, body = STREAMED[self.dialect]
        self._connection = self.connection or http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        self._connection.request("POST", path, json.dumps(body(self.tokens, self.context)),
                                 {"Content-Type": "application/json"})  # fmt: skip
        self.local_port = self._connection.sock.getsockname()[1]
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        try:
            response = self._connection.getresponse()
            assert response.status == 200, response.read()
            for line in response:
                self._take(line.decode().strip())
                if self.ended:
                    return
            self.ended = "dropped"
        except (OSError, http.client.HTTPException):
            self.ended = "dropped"
        finally:
            self.ended = self.ended or "dropped"
            self.finished.set()
            self._connection.close()

    def _take(self, line: str) -> None:
        if line.startswith("data:"):
            line = line[5:].strip()
        elif self.dialect != "ollama":
            return
        if not line:
            return
        if line == "[DONE]":
            self.ended = "done"
            return
        event = json.loads(line)
        self.events.append(event)
        self.started.set()
        if "error" in event:
            self.ended = "error"
        elif event.get("type") == "message_stop" or event.get("done") is True:
            self.ended = "done"

    def error_message(self) -> str:
        error = self.events[-1]["error"]
        return error if isinstance(error, str) else error["message"]

    def wait(self, timeout: float) -> str:
        assert self.finished.wait(timeout), f"the {self.dialect} stream did not end within {timeout}s"
        return self.ended

    def close(self) -> None:
        """Hang up (the server cancels the generation); the reading thread ends as ``dropped``."""
        sock = self._connection.sock  # None once the stream ended and its connection closed
        if sock is not None and not self.finished.is_set():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.finished.wait(10)


def connections_on_distinct_workers(server, wanted: int = 2) -> list[http.client.HTTPConnection]:
    """Kept-alive connections, each held by a different web worker (a model list tells which).
    Use them within gunicorn's ``keepalive`` (5 s).

    The kernel does not spread accepts over processes sharing a listening socket (40 connections in a
    row once all went to one worker), so the other workers are stopped while each one accepts."""
    workers = server.web_worker_pids()
    connections = []
    for pid in workers[:wanted]:
        others = [w for w in workers if w != pid]
        with _stopped(others):
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
            connection.request("GET", "/engines/v1/models")
            connection.getresponse().read()
        assert serving_pid(server.port, connection.sock.getsockname()[1], workers) == pid
        connections.append(connection)
    assert len(connections) == wanted, f"{wanted} web workers wanted, there are {workers}"
    return connections


@contextlib.contextmanager
def _stopped(pids: list[int]):
    """``pids`` stopped (SIGSTOP) for the block, continued however it ends."""
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def serving_pid(server_port: int, client_port: int, candidates: list[int], timeout: float = 10.0) -> int:
    """The pid among ``candidates`` holding the server's side of the TCP connection from ``client_port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inode = _server_socket_inode(server_port, client_port)
        for pid in candidates if inode else ():
            if _holds_socket(pid, inode):
                return pid
        time.sleep(0.05)
    raise AssertionError(f"no process of {candidates} holds the connection from port {client_port}")


def _server_socket_inode(server_port: int, client_port: int) -> str | None:
    local, remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[1] == local and parts[2] == remote and parts[9] != "0":
            return parts[9]
    return None


def _holds_socket(pid: int, inode: str) -> bool:
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if fd.readlink().name == f"socket:[{inode}]":
                return True
        except OSError:
            continue
    return False


def first_success_after(url: str, since: float, timeout: float = 60.0) -> float:
    """Seconds from ``since`` (``time.monotonic()``) to the first chat request that succeeds."""
    import requests

    body = {"model": "ai/smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    deadline = since + timeout
    while time.monotonic() < deadline:
        try:
            if requests.post(url + "/engines/v1/chat/completions", json=body, timeout=timeout).status_code == 200:
                return time.monotonic() - since
        except requests.RequestException:
            pass
        time.sleep(0.02)
    raise AssertionError(f"no request succeeded within {timeout}s")
