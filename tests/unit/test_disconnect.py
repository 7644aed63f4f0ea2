"""The watch on a job's HTTP client (:mod:`dmr_core.disconnect`) on real loopback TCP connections,
and what the pool client makes of a job abandoned because of it."""

import select
import socket
import time
from pathlib import Path

import gevent
import pytest

from dmr_core import disconnect
from dmr_core.disconnect import PIPELINED_POLL, ClientWatch, client_socket
from dmr_core.errors import ClientDisconnected, WorkerCrashed
from dmr_core.pool.client import Job, PoolClient
from dmr_core.pool.protocol import send_frame


@pytest.fixture
def connection():
    """(the client's end, the server's end) of a loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    with client, server:
        yield client, server


class Calls:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def settle(calls: Calls, seconds: float) -> int:
    """Let the watch run (gevent's hub) for up to ``seconds``, or until it called back."""
    deadline = time.monotonic() + seconds
    while not calls.count and time.monotonic() < deadline:
        gevent.sleep(0.02)
    return calls.count


def test_a_client_that_closes_its_connection_is_noticed(connection):
    client, server = connection
    gone = Calls()
    ClientWatch(server, gone)
    assert settle(gone, 0.3) == 0  # a client that waits is not gone
    client.close()
    assert settle(gone, 2) == 1


def test_a_reset_connection_is_noticed(connection):
    client, server = connection
    gone = Calls()
    ClientWatch(server, gone)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()  # linger 0: an RST, as a killed process's socket sends
    assert settle(gone, 2) == 1


def test_a_half_close_counts_as_gone(connection):
    client, server = connection
    gone = Calls()
    ClientWatch(server, gone)
    client.shutdown(socket.SHUT_WR)  # as llama-server and Go's net/http read it (see the module)
    assert settle(gone, 2) == 1


def test_a_pipelined_request_is_not_a_departure_and_a_close_behind_it_is(connection):
    client, server = connection
    gone = Calls()
    ClientWatch(server, gone)
    client.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
    assert settle(gone, 3 * PIPELINED_POLL) == 0
    client.close()
    assert settle(gone, 3 * PIPELINED_POLL) == 1
    assert server.recv(100).startswith(b"GET /v1/models")  # the watch only peeked: the bytes are still there


def test_a_stopped_watch_calls_nothing(connection):
    client, server = connection
    gone = Calls()
    watch = ClientWatch(server, gone)
    gevent.sleep(0.05)  # waiting in the hub
    watch.stop()
    client.close()
    assert settle(gone, 0.5) == 0


def test_without_pollrdhup_a_peek_finds_the_end(connection, monkeypatch):
    monkeypatch.setattr(disconnect, "_RDHUP", 0)
    monkeypatch.setattr(disconnect, "_HANG_UP", select.POLLHUP | select.POLLERR)
    client, server = connection
    gone = Calls()
    ClientWatch(server, gone)
    assert settle(gone, 0.2) == 0
    client.shutdown(socket.SHUT_WR)  # end-of-file, no hang-up flag from a plain poll
    assert settle(gone, 2) == 1


def test_without_pollrdhup_a_watch_behind_pipelined_bytes_gives_up_quietly(connection, monkeypatch):
    monkeypatch.setattr(disconnect, "_RDHUP", 0)
    monkeypatch.setattr(disconnect, "_HANG_UP", select.POLLHUP | select.POLLERR)
    client, server = connection
    gone = Calls()
    watch = ClientWatch(server, gone)
    client.sendall(b"GET / HTTP/1.1\r\n\r\n")
    assert settle(gone, 0.3) == 0
    assert not watch.watching  # nothing it can tell any more: never a false cancel


def test_outside_a_request_there_is_nothing_to_watch():
    assert client_socket() is None


def _no_resubmit():
    raise AssertionError("a job whose worker read it is never sent again")


def test_an_abandoned_job_ends_its_chunks_with_client_disconnected():
    sock, worker = socket.socketpair()
    lease, supervisor = socket.socketpair()
    with worker, supervisor:
        job = Job(sock, lease)
        job.abandon()
        with pytest.raises(ClientDisconnected):
            list(PoolClient(Path("unused"))._chunks(job, _no_resubmit))
        assert worker.recv(1) == b""  # the worker's side sees the end: its PeerWatch cancels the job
        assert sock.fileno() == -1 and lease.fileno() == -1  # both closed once the chunks ended


def test_a_job_that_ends_unabandoned_is_a_crashed_worker():
    sock, worker = socket.socketpair()
    lease, supervisor = socket.socketpair()
    with supervisor:
        send_frame(worker, {"k": "c", "t": "partial"})
        worker.close()
        with pytest.raises(WorkerCrashed):
            list(PoolClient(Path("unused"))._chunks(Job(sock, lease), _no_resubmit))
