"""What is loaded where: runners, their reference counts, memory budgets, keep-alive and configs.

Owned by the supervisor (the one place that knows what each worker holds). A *runner* is one
loaded instance, keyed like the worker keys it: (engine, model file, mode, context size). A job
takes a reference on its runner for as long as it runs or waits; a runner with references is never
evicted. Loading a runner that does not fit its device's memory budget evicts idle runners, least
recently used first; if it still does not fit the job is refused with a clear error instead of
running the machine out of memory (DMR's issue #1014). Idle runners unload after their keep-alive.

No I/O happens here except through the ``unload`` callback, so the rules are testable alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from dmr_core.errors import Conflict, EngineUnavailable, InsufficientMemory, InvalidRequest, QueueFull

RunnerKey = tuple[str, str, str, int]
#: Fraction of MemAvailable (CPU) or of the GPU's memory used when ``memory_budget`` is 0.
AUTO_BUDGET_FRACTION = 0.8


def parse_keep_alive(value: Any) -> float | None:
    """Seconds from Ollama/DMR's forms: a number of seconds, ``"5m"``, ``"1h30m"``, ``"-1"``,
    ``"0"``; a negative value means forever. None when not given."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidRequest(f"invalid keep_alive {value!r}", param="keep_alive")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    total, number, sign, rest = 0.0, "", 1.0, text
    if rest.startswith("-"):
        sign, rest = -1.0, rest[1:]
    i = 0
    while i < len(rest):
        if rest[i].isdigit() or rest[i] == ".":
            number += rest[i]
            i += 1
            continue
        unit = next((u for u in ("ns", "us", "µs", "ms", "h", "m", "s") if rest.startswith(u, i)), None)
        if unit is None or not number:
            raise InvalidRequest(f"invalid keep_alive {value!r}", param="keep_alive")
        total += float(number) * units[unit]
        number, i = "", i + len(unit)
    if number:
        raise InvalidRequest(f"invalid keep_alive {value!r} (missing unit)", param="keep_alive")
    return sign * total


def format_keep_alive(seconds: float) -> str:
    """Go's duration spelling (``5m0s``, ``2s``), ``-1`` for forever."""
    if seconds < 0:
        return "-1"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    frac = seconds - whole
    secs_text = f"{secs + frac:g}s"
    if hours:
        return f"{hours}h{minutes}m{secs_text}"
    if minutes:
        return f"{minutes}m{secs_text}"
    return secs_text


def kv_bytes_per_token(config: dict[str, Any]) -> int:
    """n_layers × (n_embd_k_gqa + n_embd_v_gqa) × 2 bytes (f16 cache), from the config's ``gguf`` map."""
    gguf = config.get("gguf") or {}
    arch = str(gguf.get("general.architecture") or config.get("architecture") or "")

    def number(key: str) -> int:
        try:
            return int(float(str(gguf.get(f"{arch}.{key}", 0) or 0)))
        except ValueError:
            return 0

    layers, embd = number("block_count"), number("embedding_length")
    heads = number("attention.head_count") or 1
    kv_heads = number("attention.head_count_kv") or heads
    head_k = number("attention.key_length") or embd // heads
    head_v = number("attention.value_length") or embd // heads
    return layers * kv_heads * (head_k + head_v) * 2


@dataclass
class RunnerSpec:
    """What an ``acquire`` asks for (built by the web side from the store)."""

    engine: str
    model_path: str
    mode: str
    model_name: str
    model_id: str
    file_size: int = 0
    kv_per_token: int = 0
    context_size: int | None = None  # asked for explicitly by the request (Ollama's num_ctx)
    default_context: int = 0  # the settings' / model's own, used when nothing else says
    keep_alive: float | None = None  # the request's, in seconds

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> RunnerSpec:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class ModelConfig:
    """A model's ``_configure`` settings (in memory only, as in DMR)."""

    backend: str
    model: str
    model_id: str
    mode: str = "completion"
    context_size: int | None = None
    runtime_flags: list[str] = field(default_factory=list)
    keep_alive: float | None = None
    #: Bytes the scheduler counts for each of the model's runners instead of its own estimate
    #: (file size + KV cache), for models the estimate gets wrong (dmr's addition).
    memory_estimate: int | None = None

    def as_go(self) -> dict[str, Any]:
        """DMR's ``GET /engines/_configure`` row, with its Go field names (``MemoryEstimate``: dmr's)."""
        keep = None if self.keep_alive is None else format_keep_alive(self.keep_alive)
        return {"Backend": self.backend, "Model": self.model, "ModelID": self.model_id, "Mode": self.mode,
                "Config": {"ContextSize": self.context_size, "RuntimeFlags": self.runtime_flags,
                           "KeepAlive": keep, "MemoryEstimate": self.memory_estimate}}  # fmt: skip


@dataclass
class Runner:
    key: RunnerKey
    slot: int
    model_name: str
    model_id: str
    need: int
    keep_alive: float
    refs: int = 0
    slots: int = 1  # jobs it runs at once (the engine's ``parallel``, known once loaded)
    loading: bool = True
    last_used: float = field(default_factory=time.time)
    loaded_event: threading.Event = field(default_factory=threading.Event)
    #: What it was placed for: enough to place it again (after its worker died) or to rebuild it
    #: (a supervisor adopting the worker that holds it).
    spec: RunnerSpec | None = None

    @property
    def engine(self) -> str:
        return self.key[0]

    @property
    def mode(self) -> str:
        return self.key[2]

    @property
    def context_size(self) -> int:
        return self.key[3]

    def expired(self, now: float) -> bool:
        return self.refs == 0 and not self.loading and 0 <= self.keep_alive and self.last_used + self.keep_alive <= now

    def placement(self) -> dict[str, Any]:
        """What a worker keeps of it for a supervisor that may adopt the worker (see :meth:`Scheduler.adopt`)."""
        spec = None if self.spec is None else asdict(self.spec)
        return {"spec": spec, "need": self.need, "keep_alive": self.keep_alive}

    def row(self) -> dict[str, Any]:
        return {"engine": self.engine, "model_path": self.key[1], "mode": self.mode,
                "context_size": self.context_size, "model_name": self.model_name, "model_id": self.model_id,
                "slot": self.slot, "refs": self.refs, "loading": self.loading, "last_used": self.last_used,
                "keep_alive": self.keep_alive, "memory": self.need, "slots": self.slots}  # fmt: skip


class Scheduler:
    """:param budgets: memory budget in bytes for each worker slot (index = slot).
    :param unload: called (with the scheduler's lock held) to make a slot's worker drop a runner."""

    def __init__(self, budgets: list[int], max_queue: int, default_keep_alive: float,
                 unload: Callable[[int, RunnerKey], None], parallel: int = 1) -> None:  # fmt: skip
        self.budgets = budgets
        self.max_queue = max_queue
        self.parallel = max(1, parallel)  # the settings' slots per model: each holds a full context of KV
        self.default_keep_alive = default_keep_alive
        self._unload = unload
        self._runners: dict[RunnerKey, Runner] = {}
        self.configs: dict[str, ModelConfig] = {}
        self._lock = threading.RLock()
        self._pending: list[Runner] = []

    # -- placing jobs ------------------------------------------------------------------------------

    def effective_context(self, spec: RunnerSpec) -> int:
        """The request's own size, else ``_configure``'s (always applied), else the default."""
        config = self.configs.get(spec.model_id)
        if spec.context_size:
            return spec.context_size
        if config is not None and config.context_size:
            return config.context_size
        return spec.default_context

    def _keep_alive(self, spec: RunnerSpec) -> float:
        if spec.keep_alive is not None:
            return spec.keep_alive
        config = self.configs.get(spec.model_id)
        if config is not None and config.keep_alive is not None:
            return config.keep_alive
        return self.default_keep_alive

    def memory_need(self, spec: RunnerSpec, context_size: int) -> int:
        """The model's ``_configure``d ``memory-estimate``, else file size + KV cache for ``context_size``."""
        config = self.configs.get(spec.model_id)
        if config is not None and config.memory_estimate is not None:
            return config.memory_estimate
        return spec.file_size + spec.kv_per_token * context_size * self.parallel

    def runtime_flags(self, model_id: str) -> list[str]:
        """The model's ``_configure``d runtime flags, sent with each load of its runners."""
        config = self.configs.get(model_id)
        return list(config.runtime_flags) if config is not None else []

    def acquire(self, spec: RunnerSpec) -> tuple[Runner, bool]:
        """Take a reference on the runner for ``spec``; True when it must be loaded now."""
        key = (spec.engine, spec.model_path, spec.mode, self.effective_context(spec))
        with self._lock:
            runner = self._runners.get(key)
            if runner is not None:
                if runner.refs >= runner.slots + self.max_queue:  # the queue counts jobs past the slots
                    raise QueueFull(f"too many requests queued for model {spec.model_name} "
                                    f"({self.max_queue} waiting); try again later")  # fmt: skip
                runner.refs += 1
                runner.keep_alive = self._keep_alive(spec)
                return runner, False
            need = self.memory_need(spec, key[3])
            slot = self._make_room(need, spec.model_name)
            runner = Runner(key, slot, spec.model_name, spec.model_id, need, self._keep_alive(spec), refs=1, spec=spec)
            self._runners[key] = runner
            return runner, True

    def _used(self, slot: int) -> int:
        return sum(r.need for r in self._runners.values() if r.slot == slot)

    def _make_room(self, need: int, name: str) -> int:
        """The slot to load on, after evicting idle runners there (LRU) until ``need`` fits."""
        slot = max(range(len(self.budgets)), key=lambda s: self.budgets[s] - self._used(s))
        budget = self.budgets[slot]
        if need > budget:
            raise InsufficientMemory(f"model {name} needs about {_mib(need)} of memory, more than the "
                                     f"memory budget of {_mib(budget)}; lower its context size or raise "
                                     f"memory_budget")  # fmt: skip
        while self._used(slot) + need > budget:
            idle = [r for r in self._runners.values() if r.slot == slot and r.refs == 0 and not r.loading]
            if not idle:
                raise EngineUnavailable(f"not enough memory to load model {name} ({_mib(need)}): the models "
                                        f"using the memory budget ({_mib(budget)}) are busy; try again later")
            self._evict(min(idle, key=lambda r: r.last_used))
        return slot

    def loaded(self, runner: Runner, slots: int = 1) -> None:
        with self._lock:
            runner.slots = max(1, slots)
            runner.loading = False
            runner.loaded_event.set()

    def failed(self, runner: Runner) -> None:
        """The load failed: forget the runner (the worker holds nothing)."""
        with self._lock:
            if self._runners.get(runner.key) is runner:
                del self._runners[runner.key]
            runner.loaded_event.set()

    def release(self, runner: Runner) -> None:
        with self._lock:
            runner.refs -= 1
            runner.last_used = time.time()
            if runner.refs == 0 and runner.keep_alive == 0 and self._runners.get(runner.key) is runner:
                self._evict(runner)

    # -- unloading ---------------------------------------------------------------------------------

    def _evict(self, runner: Runner) -> None:
        """Forget ``runner`` now; its worker is told by :meth:`flush`, outside the lock, so a slow
        unload never holds up the placing of other jobs."""
        del self._runners[runner.key]
        self._pending.append(runner)

    def evictions_pending(self) -> bool:
        """Runners evicted that :meth:`flush` has not told their workers of yet."""
        return bool(self._pending)

    def flush(self) -> None:
        """Tell workers to drop the runners evicted so far (the supervisor calls this after each
        operation; a load waits for it, so evicted memory is free before new memory is taken)."""
        with self._lock:
            pending, self._pending = self._pending, []
        for runner in pending:
            self._unload(runner.slot, runner.key)

    def expire(self, now: float | None = None) -> int:
        """Unload every idle runner whose keep-alive has run out; how many."""
        now = time.time() if now is None else now
        with self._lock:
            expired = [r for r in self._runners.values() if r.expired(now)]
            for runner in expired:
                self._evict(runner)
            return len(expired)

    def unload(self, everything: bool, backend: str, model_ids: set[str]) -> int:
        """``POST /engines/unload``: idle runners only."""
        with self._lock:
            chosen = [r for r in self._runners.values() if r.refs == 0 and not r.loading
                      and (everything or ((not backend or r.engine == backend)
                                          and (not model_ids or r.model_id in model_ids)))]  # fmt: skip
            if not everything and not backend and not model_ids:
                chosen = []
            for runner in chosen:
                self._evict(runner)
            return len(chosen)

    def forget_slot(self, slot: int) -> list[Runner]:
        """The slot's worker died: it holds nothing any more. The runners it held."""
        with self._lock:
            lost = [r for r in self._runners.values() if r.slot == slot]
            for runner in lost:
                del self._runners[runner.key]
            return lost

    def adopt(self, slot: int, held: list[dict[str, Any]]) -> None:
        """Take the runners an adopted worker holds (``Worker.held_runners``) as loaded on ``slot``."""
        with self._lock:
            for row in held:
                key = tuple(row["key"])
                if key in self._runners or not row.get("spec"):  # unknown to the supervisor that died: not counted
                    continue
                spec = RunnerSpec.from_wire(row["spec"])
                runner = Runner(key, slot, spec.model_name, spec.model_id, int(row["need"]), float(row["keep_alive"]),
                                slots=max(1, int(row["slots"])), loading=False, spec=spec)  # fmt: skip
                runner.loaded_event.set()
                self._runners[key] = runner

    # -- configuration -----------------------------------------------------------------------------

    def configure(self, config: ModelConfig) -> None:
        """Store ``config``; idle runners of the model unload so the next load applies it."""
        with self._lock:
            mine = [r for r in self._runners.values() if r.model_id == config.model_id]
            if any(r.refs or r.loading for r in mine):
                raise Conflict("runner already active")
            for runner in mine:
                self._evict(runner)
            self.configs[config.model_id] = config

    def runners(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.row() for r in self._runners.values()]


def reload_specs(lost: list[Runner]) -> list[RunnerSpec]:
    """What to load again after a worker died: the runners it had loaded, with their context size and
    keep-alive. Not one it was loading (a model that kills the worker as it loads must not kill the
    next one too), nor one that unloads as soon as it is idle (keep-alive 0)."""
    return [replace(r.spec, context_size=r.context_size, keep_alive=r.keep_alive)
            for r in lost if r.spec is not None and not r.loading and r.keep_alive != 0]  # fmt: skip


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"
