"""The pool's sockets serve each connection on a thread of its own, reused once idle."""

import socket
import threading

from dmr_core.pool.handlers import ConnectionThreads
from dmr_core.testing import wait_until


def test_an_idle_thread_serves_the_next_connection_and_a_busy_one_never_delays_it():
    served, release = [], threading.Event()
    done = threading.Semaphore(0)

    def handle(conn):
        with conn:
            served.append((conn.recv(16), threading.get_ident()))
            if served[-1][0] == b"hold":
                release.wait(30)
        done.release()

    threads = ConnectionThreads(handle, "test")
    pairs = [socket.socketpair() for _ in range(3)]
    for (ours, theirs), word in zip(pairs, (b"first", b"second", b"hold")):
        ours.sendall(word)
    threads.submit(pairs[0][1])
    assert done.acquire(timeout=30)
    assert wait_until(lambda: threads._idle == 1, timeout=30)  # back to waiting for a connection
    threads.submit(pairs[2][1])  # takes the idle thread, and keeps it
    threads.submit(pairs[1][1])  # must not wait for "hold": a new thread starts
    assert done.acquire(timeout=30)
    release.set()
    assert done.acquire(timeout=30)
    assert sorted(word for word, _ in served) == [b"first", b"hold", b"second"]
    assert len({thread for _, thread in served}) == 2  # never more than two at once: one was reused
    for ours, _ in pairs:
        ours.close()
