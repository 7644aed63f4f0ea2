"""GPU check: serve a random-weight llama on one GPU, prove that only the inference worker holds it, measure.

Run it through ``bench/gpu_check.sh``, which first builds llama-cpp-python for the local GPU
(see docs/gpu.md). This part needs no network and runs every step after the build:

2. writes a random-weight llama with SmolLM2's tokenizer (``bench/random_llama.py``: 1.17 B
   parameters, F16; ``--small``: a tiny one) and packages it into a temporary store;
3. serves it with ``DMR_DEVICES=cuda:0`` (``--cpu``: ``cpu``) through real gunicorn;
4. prints each server process (master, web workers, pool supervisor, inference worker) with its
   ``CUDA_VISIBLE_DEVICES`` and the CUDA libraries it maps, and ``nvidia-smi``'s compute apps;
   the check fails unless only the worker maps CUDA and holds GPU memory;
5. prints single-stream TTFT and decode tok/s (a ~150-token prompt, greedy, interleaved rounds)
   through dmr (default settings, and ``DMR_STREAM_FLUSH_INTERVAL=0``) against the same model
   in-process (a ``Llama.generate`` loop), then aggregate tok/s of 1 / 4 / 8 concurrent streams
   at ``DMR_PARALLEL`` 2 and 8.

    .venv/bin/python bench/gpu_check.py [--cpu] [--small] [--rounds 8] [--tokens 256]

``--cpu`` is the dry run for a machine without a GPU: tiny model, ``DMR_DEVICES=cpu``, fewer
rounds and tokens; the figures then say nothing about a GPU, only that every step works.
Exit status: 0 when every step ran and the pinning proof holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import random_llama  # noqa: E402
from bench.serving import STORY, timing  # noqa: E402
from dmr_core.pool.devices import physical_cores  # noqa: E402
from dmr_core.store.layout import ModelStore  # noqa: E402
from dmr_core.testing import DmrServer, short_tempdir, start_server, stop_server  # noqa: E402

MODEL = "ai/random-llama"
CONTEXT = 2048
STREAMS = (1, 4, 8)
#: Substrings of the shared objects that only a process using CUDA maps.
CUDA_LIBRARIES = ("libcuda.so", "libcudart", "libcublas", "libggml-cuda")
REQUEST_TIMEOUT = 300


@dataclass(frozen=True)
class Plan:
    """What this run does: the GPU check, or the CPU dry run of the same steps."""

    cpu: bool
    small: bool
    rounds: int
    tokens: int
    aggregate_rounds: int

    @property
    def device(self) -> str:
        return "cpu" if self.cpu else "cuda:0"

    @property
    def shape(self) -> random_llama.Shape:
        return random_llama.SMALL if self.small else random_llama.FULL

    def server_env(self, **extra: str) -> dict[str, str]:
        return {"DMR_DEVICES": self.device, "DMR_CONTEXT_SIZE": str(CONTEXT),
                "DMR_THREADS": str(physical_cores()), **extra}  # fmt: skip


class Steps:
    """Numbered, timed progress lines."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, text: str) -> None:
        print(f"\n[{time.monotonic() - self.start:6.1f}s] {text}", flush=True)


def prompt_for(tag: str) -> str:
    # bench/serving.py's story (about 150 SmolLM2 tokens with this prefix); a different first token each
    # time, so that no side can reuse a cached prompt prefix.
    return f"Chapter {tag}. {STORY}"


# -- step 2: the model -----------------------------------------------------------------------------


def make_model(plan: Plan, workdir: Path, store: Path) -> Path:
    started = time.monotonic()
    vocabulary = random_llama.Vocabulary.read(random_llama.DEFAULT_SOURCE)
    gguf = random_llama.write(workdir / "random-llama.gguf", plan.shape, vocabulary=vocabulary)
    params = random_llama.parameter_count(plan.shape, len(vocabulary.tokens))
    print(f"wrote {gguf} ({params / 1e9:.3f} B parameters, {gguf.stat().st_size / 2**30:.2f} GiB, F16) "
          f"in {time.monotonic() - started:.1f}s")  # fmt: skip
    ModelStore(store).import_gguf(gguf, MODEL)
    print(f"packaged as {MODEL} in {store}")
    return gguf


# -- the client ------------------------------------------------------------------------------------


def stream_completion(url: str, prompt: str, tokens: int, session: requests.Session | None = None):
    """One streamed completion: (start, arrival time of each text event, completion tokens)."""
    body = {"model": MODEL, "prompt": prompt, "max_tokens": tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    post = (session or requests).post
    start = time.perf_counter()
    stamps, pieces = [], []
    with post(url + "/engines/v1/completions", json=body, stream=True, timeout=REQUEST_TIMEOUT) as response:
        response.raise_for_status()
        for piece in response.iter_content(chunk_size=None):  # parse after the end: keep the client light
            stamps.append(time.perf_counter())
            pieces.append(piece)
    return (start, *_text_events(stamps, pieces))


def _text_events(stamps: list[float], pieces: list[bytes]) -> tuple[list[float], int]:
    text_stamps, buffer, tokens = [], b"", 0
    for stamp, piece in zip(stamps, pieces):
        *lines, buffer = (buffer + piece).split(b"\n")
        for line in lines:
            if line.startswith(b"data: {"):
                event = json.loads(line[6:])
                if event["choices"] and event["choices"][0]["text"]:
                    text_stamps.append(stamp)
                tokens = (event.get("usage") or {}).get("completion_tokens", tokens)
    return text_stamps, tokens


class Dmr:
    """dmr over HTTP, streamed: (TTFT s, decode tok/s after the first token, tokens)."""

    def __init__(self, url: str) -> None:
        self.url, self.session = url, requests.Session()

    def run(self, prompt: str, tokens: int) -> tuple[float, float, int]:
        start, stamps, count = stream_completion(self.url, prompt, tokens, self.session)
        return timing(start, stamps, count)


class InProcess:
    """The same model in this process: a ``Llama.generate`` loop, detokenizing as an application would."""

    def __init__(self, gguf: Path) -> None:
        import llama_cpp
        from dmr_llamacpp import extra_buffers

        cpu_path = extra_buffers.decide()  # the worker's own rule: AMX faults on some CPUs
        print(f"in-process llama.cpp CPU path: {cpu_path.reason}")
        threads = physical_cores()
        with extra_buffers.model_defaults(cpu_path.use_extra_buffers):
            self.llama = llama_cpp.Llama(str(gguf), n_ctx=CONTEXT, n_gpu_layers=-1, n_threads=threads,
                                         n_threads_batch=threads, verbose=False)  # fmt: skip

    def run(self, prompt: str, tokens: int) -> tuple[float, float, int]:
        ids = self.llama.tokenize(prompt.encode(), add_bos=True, special=True)  # as the engine does
        start, stamps = time.perf_counter(), []
        for token in self.llama.generate(ids, temp=0.0):
            self.llama.detokenize([token])
            stamps.append(time.perf_counter())
            if len(stamps) == tokens:
                break
        return timing(start, stamps)

    def prompt_tokens(self, prompt: str) -> int:
        return len(self.llama.tokenize(prompt.encode(), add_bos=True, special=True))

    def close(self) -> None:
        self.llama.close()


# -- step 3: serving -------------------------------------------------------------------------------


@contextlib.contextmanager
def serving(store: Path, plan: Plan, **extra: str) -> Iterator[DmrServer]:
    """A real dmr server over ``store``, the model loaded by a first request; stopped afterwards."""
    env = plan.server_env(**extra)
    server = start_server(store, **env)
    try:
        print(f"dmr at {server.url} ({' '.join(f'{k}={v}' for k, v in env.items())})")
        started = time.perf_counter()
        _, _, count = stream_completion(server.url, prompt_for("warm-up"), 8)
        print(f"first request (load + {count} tokens): {time.perf_counter() - started:.2f}s")
        yield server
    finally:
        stop_server(server)


# -- step 4: the pinning proof ---------------------------------------------------------------------


@dataclass
class ServerProcess:
    pid: int
    role: str
    device: str = ""  # inference workers only
    cuda_visible: str | None = None
    cuda_libraries: list[str] = field(default_factory=list)

    def describe(self) -> str:
        visible = "(unset)" if self.cuda_visible is None else repr(self.cuda_visible)
        libs = ", ".join(self.cuda_libraries) or "none"
        return f"{self.role:<28} pid {self.pid:<8} CUDA_VISIBLE_DEVICES={visible:<9} CUDA libraries: {libs}"


def children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass  # the thread or the process ended meanwhile
    return kids


def process_tree(root: int) -> list[int]:
    pids, pending = [root], [root]
    while pending:
        kids = children(pending.pop())
        pids += kids
        pending += kids
    return pids


def environ_value(pid: int, name: str) -> str | None:
    for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep and key.decode(errors="replace") == name:
            return value.decode(errors="replace")
    return None


def mapped_cuda_libraries(pid: int) -> list[str]:
    names = set()
    for line in Path(f"/proc/{pid}/maps").read_text(errors="replace").splitlines():
        path = line.split(maxsplit=5)[5] if len(line.split(maxsplit=5)) == 6 else ""
        name = os.path.basename(path)
        if any(lib in name for lib in CUDA_LIBRARIES):
            names.add(name)
    return sorted(names)


def server_processes(server: DmrServer) -> list[ServerProcess]:
    status = server.pool_status()
    roles = {server.process.pid: ("gunicorn master", ""), status["pid"]: ("pool supervisor", "")}
    roles.update({pid: ("web worker", "") for pid in server.web_worker_pids()})
    for worker in status["workers"]:
        roles[worker["pid"]] = (f"inference worker {worker['index']} ({worker['device']})", worker["device"])
    found = []
    for pid in process_tree(server.process.pid):
        role, device = roles.get(pid, ("other (e.g. a probe)", ""))
        try:
            found.append(ServerProcess(pid, role, device, environ_value(pid, "CUDA_VISIBLE_DEVICES"),
                                       mapped_cuda_libraries(pid)))  # fmt: skip
        except OSError:
            pass  # it ended while we looked (a short-lived probe)
    return found


def compute_apps() -> list[tuple[int, str]] | None:
    """nvidia-smi's (pid, used memory) rows; None where there is no nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=30, check=True).stdout  # fmt: skip
    rows = [line.split(",", 1) for line in out.splitlines() if line.strip()]
    return [(int(pid), memory.strip()) for pid, memory in rows]


def pinning_problems(processes: list[ServerProcess], apps: list[tuple[int, str]] | None) -> list[str]:
    """What contradicts "only the inference worker of each GPU holds that GPU, and nothing else does"."""
    problems = []
    for proc in processes:
        on_gpu = proc.device.startswith("cuda:")
        if proc.device and proc.cuda_visible != proc.device.partition(":")[2]:
            problems.append(f"{proc.role}: CUDA_VISIBLE_DEVICES={proc.cuda_visible!r}, expected the device's index")
        if on_gpu and not any("ggml-cuda" in lib for lib in proc.cuda_libraries):
            problems.append(f"{proc.role}: maps no libggml-cuda: llama-cpp-python is not a CUDA build")
        if not on_gpu and proc.cuda_libraries:
            problems.append(f"{proc.role} (pid {proc.pid}) maps {', '.join(proc.cuda_libraries)}")
    gpu_workers = {p.pid for p in processes if p.device.startswith("cuda:")}
    ours = {p.pid for p in processes}
    for pid, _ in apps or ():
        if pid in ours and pid not in gpu_workers:
            problems.append(f"nvidia-smi shows pid {pid}, which is not an inference worker, on the GPU")
    return problems


def prove_pinning(server: DmrServer) -> bool:
    processes = server_processes(server)
    for proc in processes:
        print(proc.describe())
    apps = compute_apps()
    print(_describe_apps(apps, processes))
    print(_describe_loaded(server))
    problems = pinning_problems(processes, apps)
    for problem in problems:
        print(f"PINNING FAILED: {problem}")
    if not problems and any(p.device.startswith("cuda:") for p in processes):
        print("pinning holds: only the inference worker of each GPU maps CUDA; the other processes map none")
    elif not problems:
        print("pinning holds for the CPU: no process maps CUDA, and the worker's CUDA_VISIBLE_DEVICES hides every GPU")
    return not problems


def _describe_loaded(server: DmrServer) -> str:
    """What the worker's engine reads back from its loaded ``Llama`` (``n_gpu_layers`` -1, all, reads
    back as 2147483647)."""
    keys = ("n_gpu_layers", "n_ctx", "n_threads", "flash_attn_type", "offload_kqv", "use_extra_bufts")
    lines = []
    for index, worker in enumerate(server.pool_status()["workers"]):
        for model in server.worker_stats(index)["models"]:
            settings = model["settings"]
            values = ", ".join(f"{key} {settings.get(key)}" for key in keys)
            lines.append(f"worker {index} ({worker['device']}), loaded model: {values}")
    return "\n".join(lines) or "no model loaded in any worker"


def _describe_apps(apps: list[tuple[int, str]] | None, processes: list[ServerProcess]) -> str:
    if apps is None:
        return "nvidia-smi: not found on this machine (no NVIDIA driver): no GPU to show"
    if not apps:
        return ("nvidia-smi --query-compute-apps: no process listed (inside a container nvidia-smi may not "
                "see PIDs; /proc/PID/maps above is the proof then)")  # fmt: skip
    roles = {p.pid: p.role for p in processes}
    lines = [f"  pid {pid:<8} {memory:<10} {roles.get(pid, 'not a process of this server')}" for pid, memory in apps]
    listed = {pid for pid, _ in apps}
    lines += [f"  note: {p.role} (pid {p.pid}) is not listed (nvidia-smi in another PID namespace?)"
              for p in processes if p.device.startswith("cuda:") and p.pid not in listed]  # fmt: skip
    return "nvidia-smi --query-compute-apps=pid,used_memory:\n" + "\n".join(lines)


# -- step 5: figures -------------------------------------------------------------------------------


def single_stream(targets: dict[str, object], plan: Plan) -> dict[str, list[tuple[float, float, int]]]:
    """Interleaved rounds: each round visits every target, the order rotating."""
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in targets}
    names = list(targets)
    for r in range(plan.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            results[name].append(targets[name].run(prompt_for(f"{r}"), plan.tokens))
        print(f"round {r}: " + " | ".join(f"{n} TTFT {results[n][-1][0] * 1000:.1f} ms, "
                                          f"{results[n][-1][1]:.0f} tok/s" for n in names), flush=True)  # fmt: skip
    return results


def aggregate(url: str, streams: int, tokens: int, tag: str) -> float:
    """Aggregate tok/s of ``streams`` concurrent completions, each with its own prompt."""
    counts = [0] * streams

    def one(i: int) -> None:
        counts[i] = stream_completion(url, prompt_for(f"{tag}-{i}"), tokens)[2]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if min(counts) < tokens:
        print(f"note: a stream ended early ({counts} tokens, {tokens} asked each)")
    return sum(counts) / elapsed


def aggregates(url: str, parallel: int, plan: Plan) -> dict[int, float]:
    aggregate(url, parallel, 8, f"warm{parallel}")  # every slot's first use before timing
    rates: dict[int, list[float]] = {k: [] for k in STREAMS}
    for r in range(plan.aggregate_rounds):
        for k in STREAMS:
            rates[k].append(aggregate(url, k, plan.tokens, f"p{parallel}r{r}k{k}"))
        cells = "  ".join(f"{k} stream{'s' * (k > 1)} {rates[k][-1]:.0f}" for k in STREAMS)
        print(f"parallel {parallel}, round {r}: {cells} tok/s", flush=True)
    return {k: statistics.median(v) for k, v in rates.items()}


# -- the report ------------------------------------------------------------------------------------


def machine_line(plan: Plan) -> str:
    import llama_cpp

    commit = _run(["git", "rev-parse", "--short", "HEAD"]) or "unknown commit"
    dirty = " (with uncommitted changes)" if _run(["git", "status", "--porcelain", "--untracked-files=no"]) else ""
    gpu = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader", "-i", "0"])
    return (f"{datetime.date.today().isoformat()}, commit {commit}{dirty}; {gpu or 'no GPU (CPU dry run)'}; "
            f"llama-cpp-python {llama_cpp.__version__} (GPU offload: {llama_cpp.llama_supports_gpu_offload()}); "
            f"{os.cpu_count()} CPUs; Python {platform.python_version()}; "
            f"model {'--small' if plan.small else '1.17 B F16'}, {plan.tokens} tokens")  # fmt: skip


def _run(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        return ""
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=Path(__file__).parent)
    return done.stdout.strip() if done.returncode == 0 else ""


def report(plan: Plan, pinned: bool, single: dict, rates: dict[int, dict[int, float]], prompt_tokens: int) -> None:
    print(f"\n== dmr GPU check: {machine_line(plan)} ==")
    print(f"pinning ({plan.device}): {'holds' if pinned else 'FAILED (see above)'}")
    print(f"\nsingle stream, {prompt_tokens}-token prompt, {plan.tokens} tokens, greedy, median of {plan.rounds} "
          f"interleaved rounds:\n\n| | TTFT | decode tok/s | all {plan.tokens} tokens | decode vs in-process |"
          f"\n|---|---|---|---|---|")  # fmt: skip
    base = single["in-process"]
    for name, runs in single.items():
        ratio = statistics.median(r[1] / b[1] for r, b in zip(runs, base))
        total = statistics.median(r[0] + (r[2] - 1) / r[1] for r in runs)
        ttft, decode = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        print(f"| {name} | {ttft * 1000:.1f} ms | {decode:.0f} | {total * 1000:.0f} ms | ×{ratio:.2f} |")
    print(f"\naggregate tok/s, concurrent streams ({plan.tokens} tokens each), median of {plan.aggregate_rounds} "
          f"rounds:\n\n| `parallel` | " + " | ".join(f"{k} stream{'s' * (k > 1)}" for k in STREAMS) + " |\n|---|"
          + "---|" * len(STREAMS))  # fmt: skip
    for parallel, row in rates.items():
        print(f"| {parallel} | " + " | ".join(f"{row[k]:.0f}" for k in STREAMS) + " |")


# -- the run ---------------------------------------------------------------------------------------


def run(plan: Plan, workdir: Path) -> bool:
    step, store = Steps(), workdir / "store"
    step(f"[2/5] writing the random-weight model ({'small' if plan.small else 'full'} size) and packaging it")
    gguf = make_model(plan, workdir, store)
    step(f"[3/5] serving it with DMR_DEVICES={plan.device} (DMR_PARALLEL=2, the default)")
    with serving(store, plan, DMR_PARALLEL="2") as default:
        step("[4/5] which process holds the GPU")
        pinned = prove_pinning(default)
        step("[5/5] figures: one stream, dmr against the same model in-process")
        single, prompt_tokens = measure_single_stream(store, plan, gguf, default)
        step("[5/5] figures: concurrent streams with DMR_PARALLEL=2")
        rates = {2: aggregates(default.url, 2, plan)}
    step("[5/5] figures: concurrent streams with DMR_PARALLEL=8")
    with serving(store, plan, DMR_PARALLEL="8") as wide:
        rates[8] = aggregates(wide.url, 8, plan)
    report(plan, pinned, single, rates, prompt_tokens)
    step("done")
    return pinned


def measure_single_stream(store: Path, plan: Plan, gguf: Path, default: DmrServer):
    """Interleaved rounds of in-process, dmr as configured, and dmr with a frame per token."""
    with serving(store, plan, DMR_PARALLEL="2", DMR_STREAM_FLUSH_INTERVAL="0") as unbuffered:
        in_process = InProcess(gguf)  # after the proof: from here on this process holds the GPU too
        try:
            targets = {"in-process": in_process, "dmr": Dmr(default.url), "dmr, flush 0": Dmr(unbuffered.url)}
            return single_stream(targets, plan), in_process.prompt_tokens(prompt_for("0"))
        finally:
            in_process.close()


def parse_plan(argv: list[str] | None) -> Plan:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="dry run on a CPU: DMR_DEVICES=cpu, --small, fewer rounds")
    parser.add_argument("--small", action="store_true", help="a tiny model instead of the 1.17 B one")
    parser.add_argument("--rounds", type=int, help="single-stream rounds (default 8; --cpu: 2)")
    parser.add_argument("--tokens", type=int, help="tokens per request (default 256; --cpu: 32)")
    parser.add_argument("--aggregate-rounds", type=int, help="rounds of concurrent streams (default 3; --cpu: 1)")
    args = parser.parse_args(argv)
    cpu = args.cpu
    return Plan(cpu=cpu, small=args.small or cpu, rounds=args.rounds or (2 if cpu else 8),
                tokens=args.tokens or (32 if cpu else 256),
                aggregate_rounds=args.aggregate_rounds or (1 if cpu else 3))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    plan = parse_plan(argv)
    if not random_llama.DEFAULT_SOURCE.exists():
        print(f"gpu_check: {random_llama.DEFAULT_SOURCE} not found (its tokenizer is copied): run `make model`",
              file=sys.stderr)  # fmt: skip
        return 1
    workdir = short_tempdir("dmr-gpu-check-")
    try:
        return 0 if run(plan, workdir) else 1
    except Exception:  # say which step broke (the last numbered line above), then why
        traceback.print_exc()
        print("gpu_check: FAILED in the step above", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
