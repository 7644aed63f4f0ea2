"""What requests waiting in a model's queue cost each dmr process: threads and memory.

    .venv/bin/python bench/queue_cost.py [--waiting 512]

Starts a real server (gunicorn, two web workers, one CPU inference worker) with ``DMR_PARALLEL=1``
and ``DMR_MAX_QUEUE`` = ``--waiting``, holds one long stream so the model's one slot is busy, then
sends ``--waiting`` one-token chat requests, each on its own connection, and waits until the
inference worker counts them all. It prints each process's threads and resident memory (VmRSS)
before and after, and the cost per waiting request. Light on CPU (waiting costs none): it may run
beside other work, though the memory figures are steadier on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dmr_core import bundled_models  # noqa: E402
from dmr_core.store.layout import ModelStore  # noqa: E402
from dmr_core.testing import MODELS_CACHE, short_tempdir, start_server, stop_server, wait_until  # noqa: E402

CHAT = "/engines/v1/chat/completions"
HI = {"model": "ai/smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
#: Greedy counting goes on for thousands of tokens: the slot stays busy while the queue fills.
LONG = {"model": "ai/smollm2", "prompt": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,", "max_tokens": 8000, "temperature": 0,
        "stream": True}  # fmt: skip


def process_figures(pid: int) -> tuple[int, int]:
    """(threads, resident KiB) of ``pid``."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(status["Threads"]), int(status["VmRSS"].split()[0])


def processes(server) -> dict[str, int]:
    pool = server.pool_status()
    named = {"pool supervisor": pool["pid"], "inference worker": pool["workers"][0]["pid"]}
    named |= {f"web worker {n}": pid for n, pid in enumerate(sorted(server.web_worker_pids()), 1)}
    return named


def send_waiting(url: str) -> socket.socket:
    """A one-token chat request on its own connection, sent and left unread (raw: hundreds of
    them are sent in milliseconds, well before the held stream could end)."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps(HI).encode()
    conn = socket.create_connection((host, int(port)))
    conn.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)  # fmt: skip
    return conn


def status_of(conn: socket.socket) -> int:
    """The HTTP status of the answer on ``conn`` (0: none came)."""
    with conn:
        conn.settimeout(120)
        head = conn.recv(64).split(b" ", 2)
    return int(head[1]) if len(head) > 1 else 0


def measure(server, waiting: int) -> None:
    held = requests.post(server.url + "/v1/completions", json=LONG, stream=True, timeout=600)
    lines = held.iter_lines()  # kept: a dropped iterator closes the response, which cancels the stream
    next(lines)  # the slot is taken
    named = processes(server)
    time.sleep(0.5)
    before = {name: process_figures(pid) for name, pid in named.items()}
    conns = [send_waiting(server.url) for _ in range(waiting)]
    arrived = wait_until(lambda: server.worker_stats()["jobs"]["running"] == waiting + 1, timeout=120)
    time.sleep(0.5)
    after = {name: process_figures(pid) for name, pid in named.items()}
    if not arrived:
        sys.exit(f"not all {waiting} requests reached the worker: {server.worker_stats()['jobs']}")
    print(f"{waiting} requests waiting behind one stream (DMR_PARALLEL=1)")
    print(f"{'process':<18} {'threads':>15} {'RSS MiB':>17} {'KiB per waiting':>16}")
    for name in named:
        (t0, m0), (t1, m1) = before[name], after[name]
        print(f"{name:<18} {t0:>6} → {t1:<6} {m0 / 1024:>7.1f} → {m1 / 1024:<7.1f} {(m1 - m0) / waiting:>16.1f}")
    held.close()
    statuses = [status_of(conn) for conn in conns]
    print(f"then answered: {', '.join(f'{statuses.count(s)} × {s}' for s in sorted(set(statuses)))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiting", type=int, default=512)
    args = parser.parse_args()
    gguf = bundled_models.fetch(bundled_models.DEFAULT_MODEL, MODELS_CACHE)
    store = short_tempdir("dmr-queue-store-")
    try:
        ModelStore(store).import_gguf(gguf, "ai/smollm2")
        server = start_server(store, DMR_PARALLEL="1", DMR_MAX_QUEUE=str(args.waiting))
        try:
            measure(server, args.waiting)
        finally:
            stop_server(server)
    finally:
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
