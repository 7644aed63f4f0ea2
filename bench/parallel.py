"""Parallel-slots benchmark: aggregate decode throughput of K concurrent streams per ``parallel``.

One server per setting ``DMR_PARALLEL`` = P (1, 2, 4), all started first and measured in one run,
interleaved: each round visits every P (order rotated) and, for each, sends K (1, 2, 4) streamed
completions at once. Aggregate tok/s = completion tokens of all K / wall time from sending the
first to the end of the last. The report gives, per (P, K), the median over rounds, and the
median of the per-round ratio to P = 1 with the same K.

    .venv/bin/python bench/parallel.py [--rounds 3] [--tokens 128]

Never run it beside another CPU-heavy job: ggml's spinning threads make any contention dominate.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dmr_core import bundled_models  # noqa: E402
from dmr_core.pool.devices import physical_cores  # noqa: E402
from dmr_core.store.layout import ModelStore  # noqa: E402
from dmr_core.testing import MODELS_CACHE, short_tempdir, start_server, stop_server  # noqa: E402

CONTEXT = 2048
PARALLEL = (1, 2, 4)
STREAMS = (1, 2, 4)


def stream(url: str, prompt: str, tokens: int) -> int:
    """One streamed completion; its completion-token count (the client only reads until the end:
    it shares the CPU with the server)."""
    body = {"model": "ai/smollm2", "prompt": prompt, "max_tokens": tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    with requests.post(url + "/engines/v1/completions", json=body, stream=True) as response:
        response.raise_for_status()
        data = b"".join(response.iter_content(chunk_size=None))
    usage = data.rsplit(b'"completion_tokens":', 1)[1]
    return int(usage.split(b",", 1)[0].split(b"}", 1)[0])


def aggregate(url: str, streams: int, tokens: int, tag: str) -> float:
    """Aggregate tok/s of ``streams`` concurrent completions, each with its own prompt."""
    counts = [0] * streams

    def one(i: int) -> None:
        counts[i] = stream(url, f"Story {tag}-{i}: once upon a time, in a land far away,", tokens)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if min(counts) < tokens:  # the others then ran without it for a while: say so
        print(f"note: a stream ended early ({counts} tokens, {tokens} asked each)", flush=True)
    return sum(counts) / elapsed


def measure(urls: dict[int, str], rounds: int, tokens: int) -> dict[tuple[int, int], list[float]]:
    rates: dict[tuple[int, int], list[float]] = {(p, k): [] for p in PARALLEL for k in STREAMS}
    for p, url in urls.items():  # load each model (all slots) before timing
        aggregate(url, p, 8, f"warm{p}")
    for r in range(rounds):
        order = PARALLEL[r % len(PARALLEL):] + PARALLEL[: r % len(PARALLEL)]
        for p in order:
            for k in STREAMS:
                rates[p, k].append(aggregate(urls[p], k, tokens, f"{r}.{p}.{k}"))
        print(f"round {r}: " + "  ".join(f"P{p}K{k} {rates[p, k][-1]:.1f}" for p in PARALLEL for k in STREAMS), flush=True)
    return rates


def report(rates: dict[tuple[int, int], list[float]]) -> None:
    print("\n== aggregate tok/s, median over rounds (ratio to parallel=1 with the same streams) ==")
    print("parallel | " + " | ".join(f"{k} stream{'s' if k > 1 else ''}".ljust(18) for k in STREAMS))
    for p in PARALLEL:
        cells = []
        for k in STREAMS:
            ratio = statistics.median(a / b for a, b in zip(rates[p, k], rates[1, k]))
            cells.append(f"{statistics.median(rates[p, k]):6.1f} (x{ratio:.2f})".ljust(18))
        print(f"{p:8} | " + " | ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    threads = physical_cores()
    gguf = bundled_models.fetch(bundled_models.DEFAULT_MODEL, MODELS_CACHE)
    store = short_tempdir("dmr-bench-store-")
    ModelStore(store).import_gguf(gguf, "ai/smollm2")
    servers = {}
    try:
        for p in PARALLEL:
            servers[p] = start_server(store, DMR_CONTEXT_SIZE=str(CONTEXT), DMR_THREADS=str(threads),
                                      DMR_PARALLEL=str(p))  # fmt: skip
        print(f"generating {args.tokens} tokens a stream; threads {threads}")
        rates = measure({p: s.url for p, s in servers.items()}, args.rounds, args.tokens)
    finally:
        for server in servers.values():
            stop_server(server)
        shutil.rmtree(store, ignore_errors=True)
    report(rates)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
