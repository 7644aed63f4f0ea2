"""The load test of ``tests/load`` again, through a real nginx running ``conf/nginx.conf``: 64
concurrent streams and 1,000 small requests beside them, over TLS to nginx and a Unix socket to
dmr, all answered with 200 (no 502 from a reused upstream connection, no 503 from dmr's queue).

Slow (about a minute on the shared 2-core machine): ``make test-slow``.
"""

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.load.test_load import small_requests, stream_chat

pytestmark = pytest.mark.slow

STREAMS = 64
SMALL_CLIENTS, SMALL_EACH = 10, 100
#: Every wait is bounded: a hung stream fails the test instead of holding the run.
LIMIT_S = 600
STATUS = re.compile(r'" (\d{3}) ')  # nginx's combined format: "GET /path HTTP/1.1" 200 1234 ...


@pytest.fixture
def trust_nginx(nginx, monkeypatch):
    """The helpers of tests/load use ``requests`` with its default verification; requests reads the CA
    bundle from REQUESTS_CA_BUNDLE, so point it at nginx's self-signed certificate (verified, never off)."""
    with pytest.raises(requests.exceptions.SSLError):  # the system bundle does not trust it: checks are on
        requests.get(nginx.url + "/", timeout=30, verify=True)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(nginx.certificate))


def statuses(access_log: str) -> list[int]:
    return [int(match.group(1)) for line in access_log.splitlines() if (match := STATUS.search(line))]


def test_64_streams_and_1000_small_requests_through_nginx_all_pass(nginx, unix_server, trust_nginx):
    before = unix_server.worker_stats()["jobs"]
    logged_before, errors_before = len(statuses(nginx.access_log())), len(nginx.error_log())
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=STREAMS + SMALL_CLIENTS) as pool:
        small = [pool.submit(small_requests, nginx.url, SMALL_EACH) for _ in range(SMALL_CLIENTS)]
        streams = [pool.submit(stream_chat, nginx.url, i, 8) for i in range(STREAMS)]
        results = [future.result(timeout=LIMIT_S) for future in streams]
        refused = [status for future in small for status in future.result(timeout=LIMIT_S)]
    elapsed = time.monotonic() - started
    print(f"{STREAMS} streams + {SMALL_CLIENTS * SMALL_EACH} small requests through nginx in {elapsed:.1f}s")

    assert refused == []
    assert all(finish in ("stop", "length") and 1 <= usage["completion_tokens"] <= 8 for usage, finish in results)
    logged = statuses(nginx.access_log())[logged_before:]
    assert len(logged) == STREAMS + SMALL_CLIENTS * SMALL_EACH and set(logged) == {200}, sorted(set(logged))
    upstream_errors = [line for line in nginx.error_log()[errors_before:].splitlines()
                       if re.search(r"\[(error|crit|alert|emerg)\]", line)]  # fmt: skip
    assert upstream_errors == []
    after = unix_server.worker_stats()["jobs"]
    assert after["failed"] == before["failed"] and after["completed"] - before["completed"] >= STREAMS
