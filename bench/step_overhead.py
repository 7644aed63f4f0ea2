"""Per-step overhead of dmr's batch decoder: what Python and IPC add to each ``llama_decode``.

A tiny random-weight llama (``bench/random_llama.py``'s SMALL shape by default: 64 wide, 2 layers,
SmolLM2's 49k-token vocabulary) decodes a step in a fraction of a millisecond on a CPU, as a real
model does on a GPU, so what dmr adds around each step shows. For K = 1, 2, 4, 8 streams, greedy:

(a) ``raw``: ``llama_decode`` alone for a batch of K rows (one token per sequence), in-process;
(a') ``raw+greedy``: the same plus llama.cpp's native greedy sampler on each row (the C floor of a step);
(b) ``engine``: K threads each running ``LlamaCppEngine.generate`` (the BatchDecoder, sampler chains,
    detokenisation, chunk assembly) in-process, as the inference worker's job threads do;
(c) ``server``: K concurrent streamed ``/engines/v1/completions`` through real gunicorn
    (``DMR_PARALLEL=8``): IPC to the inference worker, the web worker, SSE.

Per-step wall time for (b) is wall / decode steps (the decoder counts them); for (c) wall /
(tokens per stream + 1), a step bringing each stream one token (the +1: the prompt step).
Overhead (µs a step) = (b or c) − (a'). Aggregate tok/s = all streams' tokens / wall.

    .venv/bin/python bench/step_overhead.py [--tokens 256] [--rounds 3] [--width 64] [--layers 2]
        [--no-server] [--uncached-eog] [--profile [OUT.prof]]

``--profile`` runs (b) at K = 8 once more with every job thread under cProfile and prints the top
entries. ``--uncached-eog``: (b) with the end-of-generation check as one ctypes call per check, as
before it was memoised (compare runs with and without it, alternated).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import pstats
import statistics
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import random_llama  # noqa: E402
from dmr_core.engines.base import RunnerConfig  # noqa: E402
from dmr_core.generation import GenerationRequest, Mode, SamplingParams  # noqa: E402
from dmr_core.store.layout import ModelStore  # noqa: E402
from dmr_core.testing import short_tempdir, start_server, stop_server  # noqa: E402

MODEL = "ai/random-llama"
STREAMS = (1, 2, 4, 8)
PARALLEL = 8
CONTEXT = 1024
THREADS = 2
PROMPT = "Story {tag}: once upon a time, in a land far away,"


def make_model(workdir: Path, width: int, layers: int) -> Path:
    shape = replace(random_llama.SMALL, n_embd=width, n_layer=layers, n_ff=2 * width)
    return random_llama.write(workdir / "tiny-llama.gguf", shape)


def load_engine(gguf: Path):
    from dmr_llamacpp.engine import LlamaCppEngine

    config = RunnerConfig(context_size=CONTEXT, threads=THREADS, parallel=PARALLEL)
    engine = LlamaCppEngine(str(gguf), Mode.COMPLETION, config)
    engine.load()
    return engine


# -- (a) raw llama_decode --------------------------------------------------------------------------


def raw_step_us(engine, streams: int, steps: int, sample: bool) -> float:
    """µs a ``llama_decode`` of ``streams`` rows (one token a sequence), with a greedy sample per row
    if ``sample``; the sequences' cells are cleared afterwards."""
    import llama_cpp

    ctx = engine._llama._ctx.ctx
    memory = llama_cpp.llama_get_memory(ctx)
    batch = llama_cpp.llama_batch_init(streams, 0, 1)
    greedy = llama_cpp.llama_sampler_init_greedy()
    try:
        for seq in range(streams):
            llama_cpp.llama_memory_seq_rm(memory, seq, -1, -1)
        started = time.perf_counter()
        for pos in range(steps):
            for row in range(streams):
                batch.token[row], batch.pos[row], batch.n_seq_id[row], batch.logits[row] = 100 + row, pos, 1, 1
                batch.seq_id[row][0] = row
            batch.n_tokens = streams
            if llama_cpp.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed")
            if sample:
                for row in range(streams):
                    llama_cpp.llama_sampler_sample(greedy, ctx, row)
        elapsed = time.perf_counter() - started
    finally:
        for seq in range(streams):
            llama_cpp.llama_memory_seq_rm(memory, seq, -1, -1)
        llama_cpp.llama_sampler_free(greedy)
        llama_cpp.llama_batch_free(batch)
        free_openmp_pool()
    return elapsed / steps * 1e6


def free_openmp_pool() -> None:
    """Free the OpenMP pool this (main) thread's decodes started: with more pools than cores libgomp
    stops spinning and every later step slows down (see batch.release_openmp_threads)."""
    from dmr_llamacpp.batch import _omp_pause_resource_all

    pause = _omp_pause_resource_all()
    if pause is not None:
        pause(1)


# -- (b) the engine in-process ---------------------------------------------------------------------


def engine_run(engine, streams: int, tokens: int, tag: str, profiles: list | None = None) -> tuple[float, float]:
    """(µs a step, aggregate tok/s) of ``streams`` threads each generating ``tokens`` greedily."""
    sampling = SamplingParams(max_tokens=tokens, temperature=0, seed=1)
    counts = [0] * streams

    def one(i: int) -> None:
        request = GenerationRequest(engine.model_path, prompt=PROMPT.format(tag=f"{tag}-{i}"), sampling=sampling)
        profile = None if profiles is None else cProfile.Profile()
        if profile is not None:
            profiles.append(profile)
            profile.enable()
        for chunk in engine.generate(request, lambda: False):
            if chunk.usage is not None:
                counts[i] = chunk.usage.completion_tokens
        if profile is not None:
            profile.disable()

    before = engine._decoder.steps
    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    steps = engine._decoder.steps - before
    return elapsed / steps * 1e6, sum(counts) / elapsed


def profile_engine(engine, tokens: int, out: Path | None) -> None:
    """(b) at K = 8 with every job thread under cProfile; the merged top entries by own time."""
    profiles: list[cProfile.Profile] = []
    engine_run(engine, PARALLEL, tokens, "prof", profiles)
    stats = pstats.Stats(*profiles)
    if out is not None:
        stats.dump_stats(str(out))
    stats.sort_stats("tottime").print_stats(20)


def breakdown(engine, tokens: int) -> None:
    """Where a step's time goes in (b): ``llama_decode``, sampling the rows (llama.cpp's sampler
    chains, native), filling the batch, and the time between steps (the stepper's own job's token
    work and its hand-offs to the other job threads), at K = 1 and 8. The decoder's methods are
    wrapped with timers for the run, so the figures carry a few µs of timing overhead."""
    decoder, spent = engine._decoder, {}
    originals = {name: getattr(decoder, name) for name in ("_step", "_sample", "_fill_batch")}

    def timed(name, function):
        def run(*args):
            started = time.perf_counter()
            try:
                return function(*args)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - started
        return run

    lib = decoder._lib
    decoder._lib = type("TimedLib", (), {"__getattr__": lambda self, n: getattr(lib, n),
                                         "llama_decode": staticmethod(timed("decode", lib.llama_decode))})()  # fmt: skip
    for name, function in originals.items():
        setattr(decoder, name, timed(name, function))
    try:
        print("\nWhere a step goes (engine in-process, µs a step):\n")
        print("| K | step (wall) | llama_decode | sampling | batch fill | between steps |\n|---|---|---|---|---|---|")
        for k in (1, PARALLEL):
            spent.clear()
            before, started = decoder.steps, time.perf_counter()
            engine_run(engine, k, tokens, f"bd{k}")
            steps, wall = decoder.steps - before, time.perf_counter() - started
            us = {name: value / steps * 1e6 for name, value in spent.items()}
            print(f"| {k} | {wall / steps * 1e6:.0f} | {us['decode']:.0f} | {us['_sample']:.0f} | {us['_fill_batch']:.0f} "
                  f"| {wall / steps * 1e6 - us['_step']:.0f} |")  # fmt: skip
    finally:
        decoder._lib = lib
        for name in originals:
            delattr(decoder, name)


# -- (c) the server --------------------------------------------------------------------------------


def stream(url: str, prompt: str, tokens: int) -> tuple[int, float]:
    """One streamed completion: (completion tokens, seconds from sending to the first text)."""
    body = {"model": MODEL, "prompt": prompt, "max_tokens": tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    started, first, parts = time.perf_counter(), None, []
    with requests.post(url + "/engines/v1/completions", json=body, stream=True, timeout=300) as response:
        response.raise_for_status()
        for part in response.iter_content(chunk_size=None):
            if first is None and b'"text":"' in part.replace(b'"text":""', b""):
                first = time.perf_counter() - started
            parts.append(part)
    usage = b"".join(parts).rsplit(b'"completion_tokens":', 1)[1]
    return int(usage.split(b",", 1)[0].split(b"}", 1)[0]), first or 0.0


def server_run(url: str, streams: int, tokens: int, tag: str) -> tuple[float, float, float]:
    """(µs a step, aggregate tok/s, median time to first text in ms) of ``streams`` concurrent streams."""
    counts, firsts = [0] * streams, [0.0] * streams

    def one(i: int) -> None:
        counts[i], firsts[i] = stream(url, PROMPT.format(tag=f"{tag}-{i}"), tokens)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return elapsed / (max(counts) + 1) * 1e6, sum(counts) / elapsed, statistics.median(firsts) * 1e3


# -- the run ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def uncached_eog(engine):
    """The engine as before the end-of-generation check was memoised: one ctypes call a check."""
    import llama_cpp

    vocab, cached = engine._llama._model.vocab, engine._is_eog
    engine._is_eog = engine._decoder._is_eog = lambda token: llama_cpp.llama_vocab_is_eog(vocab, token)
    try:
        yield
    finally:
        engine._is_eog = engine._decoder._is_eog = cached


def measure(engine, url: str | None, rounds: int, tokens: int) -> dict[str, dict[int, list]]:
    results: dict[str, dict[int, list]] = {n: {k: [] for k in STREAMS} for n in ("raw", "raw+greedy", "engine", "server")}
    for r in range(rounds):  # interleaved: every kind and K each round
        for k in STREAMS:
            results["raw"][k].append((raw_step_us(engine, k, tokens, sample=False), 0.0))
            raw = raw_step_us(engine, k, tokens, sample=True)
            results["raw+greedy"][k].append((raw, k / raw * 1e6))
            results["engine"][k].append(engine_run(engine, k, tokens, f"e{r}.{k}"))
            if url is not None:
                results["server"][k].append(server_run(url, k, tokens, f"s{r}.{k}"))
        print(f"round {r} done", flush=True)
    return results


def report(results, tokens: int) -> None:
    print(f"\n{tokens} tokens a stream, greedy; medians over rounds; µs a step (aggregate tok/s)\n")
    print("| K | raw decode | raw decode + greedy | engine (b) | server (c) | overhead b−a′ | overhead c−a′ | TTFT (c) |")
    print("|---|---|---|---|---|---|---|---|")
    for k in STREAMS:
        cell = {n: (statistics.median(v[0] for v in results[n][k]), statistics.median(v[1] for v in results[n][k]))
                if results[n][k] else None for n in results}  # fmt: skip
        floor = cell["raw+greedy"][0]

        def show(name: str) -> str:
            value = cell[name]
            return "–" if value is None else f"{value[0]:.0f} µs ({value[1]:.0f} tok/s)" if value[1] else f"{value[0]:.0f} µs"

        over_c = "–" if cell["server"] is None else f"{cell['server'][0] - floor:+.0f} µs"
        ttft = "–" if cell["server"] is None else f"{statistics.median(v[2] for v in results['server'][k]):.1f} ms"
        print(f"| {k} | {show('raw')} | {show('raw+greedy')} | {show('engine')} | {show('server')} "
              f"| {cell['engine'][0] - floor:+.0f} µs | {over_c} | {ttft} |")  # fmt: skip


def medians(results, name: str, index: int) -> list[float]:
    return [statistics.median(v[index] for v in results[name][k]) for k in STREAMS]


def chart(results, tokens: int, path: Path) -> None:
    """Aggregate tok/s and time to first token against concurrent streams, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rate, first) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for name, label, style in (("raw+greedy", "llama_decode + native greedy (C floor)", "k--"),
                               ("engine", "dmr engine in-process", "o-"), ("server", "dmr server (HTTP, pool)", "s-")):  # fmt: skip
        if all(results[name][k] for k in STREAMS):
            rate.plot(STREAMS, medians(results, name, 1), style, label=label)
    rate.set(xlabel="concurrent streams", ylabel="aggregate tokens/s", xticks=STREAMS, ylim=(0, None),
             title=f"Aggregate decode, {tokens} tokens a stream")  # fmt: skip
    rate.legend(fontsize=8)
    if all(results["server"][k] for k in STREAMS):
        first.plot(STREAMS, medians(results, "server", 2), "s-", color="C2", label="dmr server, median of streams")
        first.legend(fontsize=8)
    first.set(xlabel="concurrent streams", ylabel="ms", xticks=STREAMS, ylim=(0, None), title="Time to first token")
    for axes in (rate, first):
        axes.grid(alpha=0.3)
    fig.suptitle("Tiny random llama (GPU-like step time), parallel 8, 2-core CPU", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    print(f"chart: {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--no-server", action="store_true")
    parser.add_argument("--chart", type=Path, help="draw tok/s and TTFT against streams to this PNG (matplotlib)")
    parser.add_argument("--uncached-eog", action="store_true",
                        help="(b) as before the end-of-generation check was memoised (a before/after run)")
    parser.add_argument("--profile", nargs="?", const="", default=None, help="cProfile (b) at K=8; optional .prof path")
    args = parser.parse_args(argv)
    workdir = short_tempdir("dmr-steps-")
    gguf = make_model(workdir, args.width, args.layers)
    engine = load_engine(gguf)
    if args.uncached_eog:
        uncached_eog(engine).__enter__()
    server = None
    if not args.no_server:
        ModelStore(workdir / "store").import_gguf(gguf, MODEL)
        server = start_server(workdir / "store", DMR_PARALLEL=str(PARALLEL), DMR_CONTEXT_SIZE=str(CONTEXT),
                              DMR_THREADS=str(THREADS), DMR_DEVICES="cpu")  # fmt: skip
    try:
        if server is not None:
            server_run(server.url, PARALLEL, 8, "warm")
        engine_run(engine, PARALLEL, 8, "warm")
        results = measure(engine, server.url if server else None, args.rounds, args.tokens)
        report(results, args.tokens)
        if args.chart is not None:
            chart(results, args.tokens, args.chart)
        breakdown(engine, args.tokens)
        if args.profile is not None:
            profile_engine(engine, args.tokens, Path(args.profile) if args.profile else None)
    finally:
        if server is not None:
            stop_server(server)
        engine.close()


if __name__ == "__main__":
    main()
