"""With one slot a loaded model runs one job at a time; at most ``max_queue`` more wait, the rest
get a 503 (test_parallel.py checks the same past two slots)."""

import os
import time

from dmr_core.testing import wait_until
from tests.engines.conftest import HeldStream, InThread, chat, ollama_generate


def test_full_queue_is_503(server_with):
    server = server_with(DMR_PARALLEL="1", DMR_MAX_QUEUE="1")
    running = HeldStream(server)
    try:
        waiting = InThread(lambda: chat(server, max_tokens=4))
        assert wait_until(lambda: server.worker_stats()["jobs"]["running"] == 2, timeout=30)
        refused = chat(server)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error"]["code"] == "queue_full"
        assert "too many requests queued" in refused.json()["error"]["message"]
        ollama_refused = ollama_generate(server)
        assert ollama_refused.status_code == 503 and ollama_refused.headers["Retry-After"] == "1"
        assert "too many requests queued" in ollama_refused.json()["error"]
    finally:
        running.close()
    assert waiting.result().status_code == 200


def _threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def test_a_waiting_request_holds_no_thread_in_the_pool(server_with):
    """DMR_MAX_QUEUE is 512 by default: a thread per waiting request in the supervisor (its lease)
    or the worker (its turn) would be a thousand threads for one model's full queue."""
    server = server_with(DMR_PARALLEL="1", DMR_MAX_QUEUE="64")
    pids = server.pool_pids()  # the supervisor, then the worker
    running = HeldStream(server)
    try:
        one = InThread(lambda: chat(server, max_tokens=1))
        assert wait_until(lambda: server.worker_stats()["jobs"]["running"] == 2, timeout=30)
        time.sleep(0.5)  # the threads that took the connections are idle again
        before = [_threads(pid) for pid in pids]
        waiting = []
        for queued in range(3, 43):  # one at a time: a burst may start threads at once (kept, not held)
            waiting.append(InThread(lambda: chat(server, max_tokens=1)))
            assert wait_until(lambda: server.worker_stats()["jobs"]["running"] == queued, timeout=30)
        after = [_threads(pid) for pid in pids]
        # A thread held per waiting request would be 40 more in one process or the other.
        assert all(grown - had < 5 for had, grown in zip(before, after)), (before, after)
    finally:
        running.close()
    assert one.result().status_code == 200
    assert all(request.result().status_code == 200 for request in waiting)
