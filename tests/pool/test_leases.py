"""The supervisor's lease watch: every held lease on one thread, each released once its client hangs up."""

import socket
import threading

from dmr_core.pool.leases import LeaseWatch
from dmr_core.testing import wait_until


def test_a_lease_ends_when_its_client_hangs_up_and_not_before():
    watch, ended = LeaseWatch(), []
    client, held = socket.socketpair()
    watch.hold(held, lambda: ended.append("released"))
    client.sendall(b"x")  # a stray byte is not a hang-up
    assert not wait_until(lambda: ended, timeout=0.3)
    client.close()
    assert wait_until(lambda: ended == ["released"], timeout=10)
    assert held.fileno() == -1  # the watch closed its end
    assert watch.held() == 0


def test_many_leases_cost_one_thread():
    watch, ended = LeaseWatch(), []
    before = threading.active_count()
    clients = []
    for number in range(200):
        client, held = socket.socketpair()
        clients.append(client)
        watch.hold(held, lambda number=number: ended.append(number))
    assert wait_until(lambda: watch.held() == 200, timeout=10)
    assert threading.active_count() == before + 1
    for client in clients[::2]:
        client.close()
    assert wait_until(lambda: sorted(ended) == list(range(0, 200, 2)), timeout=10)
    for client in clients[1::2]:
        client.close()
    assert wait_until(lambda: len(ended) == 200 and watch.held() == 0, timeout=10)


def test_a_failing_release_does_not_stop_the_watch():
    watch, ended = LeaseWatch(), []
    first, held = socket.socketpair()
    watch.hold(held, lambda: 1 / 0)
    first.close()
    second, held = socket.socketpair()
    watch.hold(held, lambda: ended.append("second"))
    second.close()
    assert wait_until(lambda: ended == ["second"], timeout=10)


def test_settle_releases_every_hang_up_already_queued_at_once(monkeypatch):
    watch, ended = LeaseWatch(), []
    monkeypatch.setattr(watch, "_start", lambda: None)  # no watch thread: only settle() can release
    gone, held_gone = socket.socketpair()
    staying, held_staying = socket.socketpair()
    watch.hold(held_gone, lambda: ended.append("gone"))
    watch.hold(held_staying, lambda: ended.append("staying"))
    gone.close()
    staying.sendall(b"x")  # readable, but not a hang-up
    watch.settle()
    assert ended == ["gone"] and watch.held() == 1 and held_gone.fileno() == -1
    watch.settle()  # nothing more to release; the stray byte was read
    assert ended == ["gone"] and watch.held() == 1


def test_settle_and_the_watch_thread_release_a_lease_once():
    watch, ended = LeaseWatch(), []
    clients = []
    for number in range(100):
        client, held = socket.socketpair()
        clients.append(client)
        watch.hold(held, lambda number=number: ended.append(number))
    for client in clients:
        client.close()
        watch.settle()
    assert wait_until(lambda: watch.held() == 0, timeout=10)
    assert sorted(ended) == list(range(100))
