"""Whether ggml's extra CPU buffer types (AMX tiles, repacked weights) are safe on this CPU.

llama-cpp-python builds with ``GGML_NATIVE``, so on a CPU that reports AMX (Sapphire Rapids and
later) ggml puts quantized weights in its AMX buffer. On some virtualised Xeons the first AMX
matrix product then faults (``ldtilecfg``: llama.cpp #20824, Ollama #17006 and #17249) and kills
the process; no Python code can catch that. So before the worker loads a model, a throwaway child
process tries it: it loads a tiny quantized llama with the extra buffers on and evaluates a
batch. If the child dies, models load with ``use_extra_bufts = False`` (plain CPU buffers; the
same VM then decodes SmolLM2 at ≈ 88 tok/s). CPUs without AMX are not probed: there the extra
buffers only repack weights for AVX2/NEON kernels, which work everywhere and are faster.

A worker keeps the probe's verdict in the pool directory, keyed by the CPU, the kernel and the
llama.cpp build (:mod:`dmr_llamacpp.probe_cache`), so the workers that start after it (a respawn
after a crash above all) do not probe again.

The operator can skip the probe either way with ``DMR_LLAMACPP_EXTRA_BUFFERS`` = ``on`` or ``off``
(default ``auto``). ``DMR_LLAMACPP_PROBE_FORCE`` = ``crash`` makes the probe's child kill itself
with SIGSEGV before it tries anything, so tests exercise the fallback on any CPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from dmr_llamacpp import probe_cache

log = logging.getLogger("dmr.llamacpp")

SETTING = "DMR_LLAMACPP_EXTRA_BUFFERS"
FORCE = "DMR_LLAMACPP_PROBE_FORCE"
CHOICES = ("auto", "on", "off")
#: A probe normally takes about a second; a hang is as bad as a crash.
PROBE_TIMEOUT = 120.0
#: CPU flags (``/proc/cpuinfo``) under which ggml builds its AMX buffer type.
AMX_FLAGS = frozenset({"amx_tile", "amx_int8"})


@dataclass(frozen=True)
class Verdict:
    """Whether models load with the extra buffer types, and why (for the worker's log)."""

    use_extra_buffers: bool
    reason: str


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    try:
        text = cpuinfo.read_text()
    except OSError:  # not Linux: no AMX buffer is built there either way
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def decide(setting: str | None = None, flags: frozenset[str] | None = None, cache_dir: Path | None = None) -> Verdict:
    """The verdict for this process's CPU: the operator's setting, else the probe's answer (kept in
    ``cache_dir``, when given, for the next worker: :mod:`dmr_llamacpp.probe_cache`)."""
    setting = (setting if setting is not None else os.environ.get(SETTING, "auto")).strip().lower() or "auto"
    if setting not in CHOICES:
        raise ValueError(f"{SETTING} must be one of {', '.join(CHOICES)}, not {setting!r}")
    if setting != "auto":
        return Verdict(setting == "on", f"{SETTING}={setting}")
    flags = cpu_flags() if flags is None else flags
    if not AMX_FLAGS <= flags and not os.environ.get(FORCE):  # a forced answer is probed anywhere
        return Verdict(True, "the CPU reports no AMX; extra buffers (weight repacking) need no probe")
    return run_probe() if cache_dir is None else cached_probe(cache_dir / probe_cache.FILE_NAME)


def cached_probe(path: Path) -> Verdict:
    """The probe's verdict kept in ``path`` for this CPU and build, else a probe's (then kept)."""
    key = probe_cache.probe_key(os.environ.get(FORCE, ""))
    kept = probe_cache.load(path, key)
    if kept is not None:
        return Verdict(kept[0], f"{kept[1]} (kept from an earlier probe in {path.name})")
    verdict = run_probe()
    probe_cache.save(path, key, verdict.use_extra_buffers, verdict.reason)
    return verdict


def run_probe(timeout: float = PROBE_TIMEOUT) -> Verdict:
    """Run the tiny model with the extra buffers on, in a child; its death decides."""
    command = [sys.executable, "-m", "dmr_llamacpp.extra_buffers"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Verdict(False, f"AMX probe hung for {timeout:.0f}s; extra buffers off")
    if done.returncode == 0:
        return Verdict(True, "AMX probe passed; extra buffers (AMX) on")
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        return Verdict(False, f"AMX probe died with {name}; extra buffers off (plain CPU buffers)")
    tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
    return Verdict(False, f"AMX probe failed (exit {done.returncode}: {tail[0]}); extra buffers off")


class CachedVerdict:
    """One probe per process, started early (the worker's start hook) and awaited at load; its
    verdict is kept in ``cache_dir`` (the pool directory) for the workers that start after it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._verdict: Verdict | None = None
        self._thread: threading.Thread | None = None
        self._cache_dir: Path | None = None

    def start(self, cache_dir: Path | None = None) -> None:
        with self._lock:
            if self._thread is None and self._verdict is None:
                self._cache_dir = cache_dir
                self._thread = threading.Thread(target=self._settle, name="cpu-probe", daemon=True)
                self._thread.start()

    def get(self) -> Verdict:
        self.start()
        self._thread.join()
        return self._verdict

    def _settle(self) -> None:
        try:
            verdict = decide(cache_dir=self._cache_dir)
        except ValueError as exc:  # a bad setting: say so, and stay on the safe side
            verdict = Verdict(False, f"{exc}; extra buffers off")
        self._verdict = verdict
        log.info("llama.cpp CPU path: %s", verdict.reason)


verdict = CachedVerdict()
_defaults_lock = threading.Lock()


@contextlib.contextmanager
def model_defaults(use_extra_buffers: bool):
    """Build a ``Llama`` inside this to set ``use_extra_bufts``.

    llama-cpp-python's ``Llama`` has no argument for it: it starts from the C library's
    ``llama_model_default_params()``, so while it is built that function answers with ours.
    """
    if use_extra_buffers:  # llama.cpp's default
        yield
        return
    import llama_cpp.llama_cpp as native

    with _defaults_lock:
        original = native.llama_model_default_params

        def defaults():
            params = original()
            params.use_extra_bufts = False
            return params

        native.llama_model_default_params = defaults
        try:
            yield
        finally:
            native.llama_model_default_params = original


# -- the child ------------------------------------------------------------------------------------

#: Shapes that ggml's AMX buffer takes (rows a multiple of 32, quantized Q8_0 blocks).
N_EMBD, N_FF, N_HEAD, N_LAYER = 256, 512, 4, 1


def write_probe_model(path: Path) -> Path:
    """A one-layer llama with Q8_0 weights and a byte-level SentencePiece vocabulary."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(0)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["▁a", "▁b"]
    types = [2, 3, 3] + [6] * 256 + [1, 1]  # gguf TokenType: unknown, control, byte, normal
    writer = gguf.GGUFWriter(str(path), "llama")
    for add, value in ((writer.add_context_length, 256), (writer.add_embedding_length, N_EMBD),
                       (writer.add_block_count, N_LAYER), (writer.add_feed_forward_length, N_FF),
                       (writer.add_head_count, N_HEAD), (writer.add_head_count_kv, N_HEAD),
                       (writer.add_rope_dimension_count, N_EMBD // N_HEAD), (writer.add_layer_norm_rms_eps, 1e-5),
                       (writer.add_tokenizer_model, "llama"), (writer.add_token_list, tokens),
                       (writer.add_token_scores, [0.0] * len(tokens)), (writer.add_token_types, types),
                       (writer.add_bos_token_id, 1), (writer.add_eos_token_id, 2)):  # fmt: skip
        add(value)

    def add(name: str, *shape: int) -> None:
        data = (rng.standard_normal(shape) * 0.1).astype(np.float32)
        if len(shape) == 2 and name != "token_embd.weight":
            q8 = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(name, gguf.quants.quantize(data, q8), raw_dtype=q8)
        else:
            writer.add_tensor(name, data)

    add("token_embd.weight", len(tokens), N_EMBD)
    for part, shape in (("attn_norm", (N_EMBD,)), ("attn_q", (N_EMBD, N_EMBD)), ("attn_k", (N_EMBD, N_EMBD)),
                        ("attn_v", (N_EMBD, N_EMBD)), ("attn_output", (N_EMBD, N_EMBD)), ("ffn_norm", (N_EMBD,)),
                        ("ffn_gate", (N_FF, N_EMBD)), ("ffn_up", (N_FF, N_EMBD)), ("ffn_down", (N_EMBD, N_FF))):  # fmt: skip
        add(f"blk.0.{part}.weight", *shape)
    add("output_norm.weight", N_EMBD)
    add("output.weight", len(tokens), N_EMBD)
    for write in (writer.write_header_to_file, writer.write_kv_data_to_file, writer.write_tensors_to_file):
        write()
    writer.close()
    return path


def probe() -> None:
    """Load the probe model with the extra buffers on and evaluate a batch and a token."""
    if os.environ.get(FORCE) == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)  # what a faulting AMX kernel does to us
    import llama_cpp

    with tempfile.TemporaryDirectory(prefix="dmr-probe-") as tmp:
        model = write_probe_model(Path(tmp) / "probe.gguf")
        llama = llama_cpp.Llama(str(model), n_ctx=256, n_batch=64, n_threads=1, n_gpu_layers=0, verbose=False)
        llama.eval(list(range(3, 3 + 40)))  # a batch: the AMX GEMM path
        llama.eval([4])  # one token: the GEMV path
        llama.close()


if __name__ == "__main__":
    probe()
