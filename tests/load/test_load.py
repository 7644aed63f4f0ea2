"""Bounded load against a real server: many concurrent streams and abrupt disconnects.

Slow (about a minute): run by ``make test-slow`` and CI. Every loop is bounded in count and time.
"""

import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from dmr_core.testing import openai_client_for, wait_until

pytestmark = pytest.mark.slow


def stream_chat(url, i, max_tokens):
    body = {"model": "ai/smollm2", "stream": True, "max_tokens": max_tokens, "temperature": 0.7, "seed": i,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": f"Tell me fact number {i} about rivers."}]}  # fmt: skip
    events = []
    with requests.post(url + "/engines/v1/chat/completions", json=body, stream=True, timeout=300) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith(b"data: "):
                events.append(line[6:])
    assert events[-1] == b"[DONE]"
    usage = json.loads(events[-2])["usage"]
    finish = [json.loads(e)["choices"][0]["finish_reason"] for e in events[:-2] if json.loads(e)["choices"]]
    return usage, finish[-1]


def test_32_concurrent_streams_all_finish(private_server):
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(lambda i: stream_chat(private_server.url, i, 16), range(32)))
    assert len(results) == 32
    for usage, finish in results:
        assert finish in ("stop", "length")
        assert 1 <= usage["completion_tokens"] <= 16
    jobs = settled_jobs(private_server)
    assert jobs["failed"] == 0 and jobs["running"] == 0 and jobs["completed"] >= 32


def settled_jobs(server) -> dict:
    """The worker's job counts once none runs. A job is counted as ended once its worker closed its
    connection, which may come just after the client read the last event (a CI run once saw the
    last of 32 streams still running)."""
    assert wait_until(lambda: server.worker_stats()["jobs"]["running"] == 0, timeout=10)
    return server.worker_stats()["jobs"]


SMALL_GETS = ("/engines/v1/models", "/api/tags", "/models", "/api/version", "/")


def small_requests(url, count):
    """``count`` small GETs, in order; the statuses that were not 200."""
    with requests.Session() as session:
        return [status for i in range(count)
                if (status := session.get(url + SMALL_GETS[i % len(SMALL_GETS)], timeout=300).status_code) != 200]


def test_64_streams_and_1000_small_requests_all_pass(private_server):
    """The default queue (512) takes 64 streams to one model (2 slots) without a 503 (the old
    bound of 32 refused 30 of them), while small requests beside them keep being answered."""
    with ThreadPoolExecutor(max_workers=64 + 10) as pool:
        small = [pool.submit(small_requests, private_server.url, 100) for _ in range(10)]
        streams = [pool.submit(stream_chat, private_server.url, i, 8) for i in range(64)]
        results = [future.result(timeout=600) for future in streams]
        refused = [status for future in small for status in future.result(timeout=600)]
    assert refused == []
    assert all(finish in ("stop", "length") and 1 <= usage["completion_tokens"] <= 8 for usage, finish in results)
    jobs = settled_jobs(private_server)
    assert jobs["failed"] == 0 and jobs["completed"] >= 64


def disconnect_after(url, i, events_to_read):
    body = {"model": "ai/smollm2", "stream": True, "max_tokens": 400, "seed": i,
            "messages": [{"role": "user", "content": "Write a long poem about the moon."}]}  # fmt: skip
    with requests.post(url + "/engines/v1/chat/completions", json=body, stream=True, timeout=300) as response:
        read = 0
        for line in response.iter_lines():
            if line.startswith(b"data: "):
                read += 1
                if read >= events_to_read:
                    break


def test_abrupt_disconnects_leave_the_worker_clean(private_server):
    rng = random.Random(7)
    threads = [threading.Thread(target=disconnect_after, args=(private_server.url, i, rng.randint(1, 12)))
               for i in range(12)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert wait_until(lambda: private_server.worker_stats()["jobs"]["running"] == 0, timeout=120)
    jobs = private_server.worker_stats()["jobs"]
    assert jobs["failed"] == 0
    assert jobs["cancelled"] >= 10  # a few may have finished before their client left
    client = openai_client_for(private_server)
    reply = client.chat.completions.create(model="ai/smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert reply.choices[0].message.content


def test_web_worker_restart_keeps_the_pool(private_server):
    """gunicorn HUP replaces every web worker; the pool (and its loaded model) stays."""
    import signal

    client = openai_client_for(private_server)
    client.chat.completions.create(model="ai/smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    pool_before = private_server.pool_pids()
    web_before = set(private_server.web_worker_pids())
    private_server.process.send_signal(signal.SIGHUP)
    assert wait_until(lambda: not (set(private_server.web_worker_pids()) & web_before), timeout=60)
    reply = client.chat.completions.create(model="ai/smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert reply.choices[0].message.content
    assert private_server.pool_pids() == pool_before
