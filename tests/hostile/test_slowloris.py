"""Slow-loris clients (headers sent a byte at a time, or a body that never finishes) do not take the
web workers from everyone else: gevent gives each connection a greenlet, not a worker; gunicorn's
``keepalive`` timeout (5 s) bounds how long a request's head may take to arrive, and dmr's
``client_timeout`` (:mod:`dmr_core.web_worker`) how long a body may stall."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import ExitStack, closing

import pytest
import requests

from dmr_core.testing import start_server, stop_server
from tests.hostile.conftest import TINY

#: Connections each kind of slow client opens (200 in all): far below gunicorn's worker_connections.
SLOW_CLIENTS = 100
#: A normal request must still be answered within this many seconds while they hang on.
FAST = 2.0
HEAD = b"POST /engines/v1/chat/completions HTTP/1.1\r\nHost: dmr\r\nContent-Type: application/json\r\n"


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(0.2)
    return sock


def _dribble(sockets: list[socket.socket], stop: threading.Event) -> None:
    """Send the request head one byte per socket per round, never finishing it."""
    for i in range(len(HEAD)):
        for sock in sockets:
            if stop.is_set():
                return
            try:
                sock.sendall(HEAD[i:i + 1])
            except OSError:
                pass  # the server dropped this one: what it should do, eventually
        if stop.wait(0.1):
            return


def _stalled_bodies(port: int, stack: ExitStack) -> list[socket.socket]:
    """Whole heads promising a 1 MB body, then 10 bytes of it and nothing more."""
    sockets = []
    for _ in range(SLOW_CLIENTS):
        sock = stack.enter_context(closing(_connect(port)))
        sock.sendall(HEAD + b"Content-Length: 1000000\r\n\r\n" + b'{"model": ')
        sockets.append(sock)
    return sockets


def _timed(method: str, url: str, **kwargs) -> tuple[float, requests.Response]:
    started = time.monotonic()
    response = requests.request(method, url, timeout=30, **kwargs)
    return time.monotonic() - started, response


def _normal_requests_are_fast(url: str) -> None:
    chat = {"model": TINY, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    for method, path, body in (("GET", "/api/version", None), ("GET", "/v1/models", None),
                               ("POST", "/engines/v1/chat/completions", chat)):  # fmt: skip
        elapsed, response = _timed(method, url + path, json=body)
        assert response.status_code == 200, response.text
        assert elapsed < FAST, f"{method} {path} took {elapsed:.2f}s beside the slow clients"


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        sock.recv(1 << 16)  # EOF, or a reply (400, 408): either way the server is done with it
        return True
    except TimeoutError:
        return False
    except OSError:
        return True  # reset


def test_slow_clients_do_not_block_others(hostile):
    server = hostile.server
    stop = threading.Event()
    with ExitStack() as stack:
        dribblers = [stack.enter_context(closing(_connect(server.port))) for _ in range(SLOW_CLIENTS)]
        sender = threading.Thread(target=_dribble, args=(dribblers, stop), daemon=True)
        sender.start()
        stack.callback(sender.join, 5)
        stack.callback(stop.set)
        stalled = _stalled_bodies(server.port, stack)
        time.sleep(0.5)  # every connection is open and half-sent
        _normal_requests_are_fast(server.url)
        assert all(not _closed_by_server(s) for s in stalled[:5])  # still pending: the test had its slow clients
    _normal_requests_are_fast(server.url)


@pytest.mark.slow
def test_stalled_request_heads_are_dropped(hostile):
    """A head that never completes is dropped after gunicorn's keepalive timeout (5 s)."""
    with ExitStack() as stack:
        stalled = [stack.enter_context(closing(_connect(hostile.server.port))) for _ in range(SLOW_CLIENTS)]
        for sock in stalled:
            sock.sendall(HEAD[:20])
        deadline = time.monotonic() + 15
        open_ones = list(stalled)
        while open_ones and time.monotonic() < deadline:
            open_ones = [s for s in open_ones if not _closed_by_server(s)]
        assert not open_ones, f"{len(open_ones)} stalled connections still open after 15 s"
        _normal_requests_are_fast(hostile.server.url)


@pytest.mark.slow
def test_stalled_bodies_are_dropped_after_client_timeout(hostile):
    server = start_server(hostile.store, DMR_CLIENT_TIMEOUT="2")
    try:
        with ExitStack() as stack:
            stalled = _stalled_bodies(server.port, stack)
            started = time.monotonic()
            open_ones = list(stalled)
            while open_ones and time.monotonic() < started + 10:
                open_ones = [s for s in open_ones if not _closed_by_server(s)]
            assert not open_ones, f"{len(open_ones)} stalled bodies still open after 10 s"
            assert time.monotonic() - started > 1.5  # dropped by the timeout, not at once
            _normal_requests_are_fast(server.url)
        assert "Traceback" not in server.log()
    finally:
        stop_server(server)
