"""llama-server's runtime flags (``_configure``'s ``runtime-flags``) as llama-cpp-python settings.

llama-cpp-python takes no command line, so each flag a client may set is translated here into
something the engine applies: a ``Llama(...)`` keyword argument, a sampling default for requests
that leave the parameter unset, or a :class:`~dmr_core.engines.base.RunnerConfig` field. A flag
with no such equivalent is refused when it is configured (:func:`check`), never silently dropped.

Imports nothing heavy: the web side checks flags with it; only the worker's ``load()`` applies them.
The ggml / llama enum values are llama.cpp's C ABI numbers (``test_flags.py`` checks them against
``llama_cpp``, which does not export ``GGML_TYPE_BF16``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dmr_core.engines.base import RunnerConfig
from dmr_core.errors import InvalidRequest
from dmr_core.generation import GenerationRequest

#: ``--cache-type-k/-v`` names (llama-server's choices) → ``ggml_type``.
CACHE_TYPES = {"f32": 0, "f16": 1, "bf16": 30, "q8_0": 8, "q4_0": 2, "q4_1": 3, "iq4_nl": 20, "q5_0": 6, "q5_1": 7}
#: ``--split-mode`` names → ``llama_split_mode``.
SPLIT_MODES = {"none": 0, "layer": 1, "row": 2}
#: ``--rope-scaling`` names → ``llama_rope_scaling_type``.
ROPE_SCALINGS = {"none": 0, "linear": 1, "yarn": 2, "longrope": 3}
#: Words ``--flash-attn`` takes (llama-server: ``on|off|auto``; older builds: a bare switch).
FLASH_ATTN = {"on": True, "true": True, "1": True, "enabled": True,
              "off": False, "false": False, "0": False, "disabled": False, "auto": None}  # fmt: skip
#: Allowed flags that have no llama-cpp-python equivalent, and why (the 400's message).
UNSUPPORTED = {
    "--cont-batching": "llama-cpp-python has no continuous-batching switch",
    "--no-cont-batching": "llama-cpp-python has no continuous-batching switch",
    "--reasoning-budget": "llama-cpp-python has no reasoning budget",
    "--reasoning-format": "llama-cpp-python has no reasoning format setting",
    "--defrag-thold": "llama-cpp-python has no KV-cache defragmentation threshold",
    "--keep": "dmr never shifts the context, so there are no tokens to keep",
}


def _refuse(name: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"runtime flag {name}: {why}", param="runtime-flags")


def _number(kind: type, low: float | None = None, high: float | None = None) -> Callable[[str, str], Any]:
    def parse(name: str, text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise _refuse(name, f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise _refuse(name, f"{text!r} is out of range")
        return value

    return parse


def _choice(table: dict[str, Any]) -> Callable[[str, str], Any]:
    def parse(name: str, text: str) -> Any:
        if text.lower() not in table:
            raise _refuse(name, f"{text!r} is not one of {', '.join(table)}")
        return table[text.lower()]

    return parse


def _layers(name: str, text: str) -> int:
    """``-ngl``: a count, or ``all``/``auto`` (every layer, as dmr loads by default)."""
    return -1 if text.lower() in ("all", "auto", "-1") else _number(int, 0)(name, text)


def _tensor_split(name: str, text: str) -> list[float]:
    return [_number(float, 0)(name, part) for part in text.split(",")]


def _count_or_auto(name: str, text: str) -> int | None:
    """llama-server's ``-1`` (``--threads``, ``--seed``, ``--n-predict``): its automatic value."""
    value = _number(int, -2)(name, text)
    return None if value < 0 else value


@dataclass(frozen=True)
class Flag:
    """One flag: where its value goes (``target``: ``llama``, ``sampling``, ``runner``,
    ``context`` or ``none``), under which name, and how its text is read (None: a switch, whose
    value is ``switched``; ``optional``: a switch that may also take one of its words)."""

    names: tuple[str, ...]
    target: str
    key: str = ""
    parse: Callable[[str, str], Any] | None = None
    switched: Any = True
    optional: bool = False


FLAGS = (
    Flag(("--threads", "-t"), "llama", "n_threads", _count_or_auto),
    Flag(("--threads-batch", "-tb"), "llama", "n_threads_batch", _count_or_auto),
    Flag(("--batch-size", "-b"), "llama", "n_batch", _number(int, 1)),
    Flag(("--ubatch-size", "-ub"), "llama", "n_ubatch", _number(int, 1)),
    Flag(("--n-gpu-layers", "-ngl", "--gpu-layers"), "llama", "n_gpu_layers", _layers),
    Flag(("--flash-attn", "-fa"), "llama", "flash_attn", _choice(FLASH_ATTN), optional=True),
    Flag(("--no-mmap",), "llama", "use_mmap", switched=False),
    Flag(("--mlock",), "llama", "use_mlock"),
    Flag(("--no-kv-offload", "-nkvo"), "llama", "offload_kqv", switched=False),
    Flag(("--rope-scaling",), "llama", "rope_scaling_type", _choice(ROPE_SCALINGS)),
    Flag(("--rope-freq-base",), "llama", "rope_freq_base", _number(float, 0)),
    Flag(("--rope-freq-scale",), "llama", "rope_freq_scale", _number(float, 0)),
    Flag(("--cache-type-k", "-ctk"), "llama", "type_k", _choice(CACHE_TYPES)),
    Flag(("--cache-type-v", "-ctv"), "llama", "type_v", _choice(CACHE_TYPES)),
    Flag(("--split-mode", "-sm"), "llama", "split_mode", _choice(SPLIT_MODES)),
    Flag(("--main-gpu", "-mg"), "llama", "main_gpu", _number(int, 0)),
    Flag(("--tensor-split", "-ts"), "llama", "tensor_split", _tensor_split),
    Flag(("--verbose", "-v"), "llama", "verbose"),
    Flag(("--seed", "-s"), "sampling", "seed", _count_or_auto),
    Flag(("--temp",), "sampling", "temperature", _number(float, 0)),
    Flag(("--top-k",), "sampling", "top_k", _number(int, 0)),
    Flag(("--top-p",), "sampling", "top_p", _number(float, 0, 1)),
    Flag(("--min-p",), "sampling", "min_p", _number(float, 0, 1)),
    Flag(("--repeat-penalty",), "sampling", "repeat_penalty", _number(float, 0)),
    Flag(("--n-predict", "-n"), "sampling", "max_tokens", _count_or_auto),
    Flag(("--parallel", "-np"), "runner", "parallel", _number(int, 1)),
    # The pool loads the model at its configured context size; the route reads this flag into it.
    Flag(("--ctx-size", "-c"), "context", "context_size", _number(int, 0)),
    Flag(("--jinja",), "none"),  # dmr always renders the model's own Jinja chat template
)
BY_NAME = {name: flag for flag in FLAGS for name in flag.names}


@dataclass
class FlagSettings:
    """What a list of flags sets, by destination."""

    llama: dict[str, Any] = field(default_factory=dict)
    sampling: dict[str, Any] = field(default_factory=dict)
    runner: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)

    def put(self, flag: Flag, value: Any) -> None:
        if flag.target != "none" and value is not None:  # None: "llama.cpp's automatic choice"
            getattr(self, flag.target)[flag.key] = value


def parse(flags: Iterable[str]) -> FlagSettings:
    """Read ``--name value``, ``--name=value`` and switches; a later flag overrides an earlier one.

    :raises InvalidRequest: for a flag without an equivalent, a missing or malformed value.
    """
    tokens, settings, i = list(flags), FlagSettings(), 0
    while i < len(tokens):
        name, has_inline, inline = tokens[i].partition("=")
        flag = _known(name)
        i += 1
        if flag.parse is None or (flag.optional and not has_inline and not _is_word(tokens, i)):
            settings.put(flag, flag.switched)
            continue
        if not has_inline:
            if i >= len(tokens) or tokens[i].startswith("--"):
                raise _refuse(name, "needs a value")
            inline, i = tokens[i], i + 1
        settings.put(flag, flag.parse(name, inline))
    return settings


def _known(name: str) -> Flag:
    if not name.startswith("-"):
        raise InvalidRequest(f"runtime flag value {name!r} follows no flag that takes it", param="runtime-flags")
    if name in UNSUPPORTED:
        raise _refuse(name, f"not supported by the llama.cpp engine ({UNSUPPORTED[name]})")
    if name not in BY_NAME:
        raise _refuse(name, "not supported by the llama.cpp engine")
    return BY_NAME[name]


def _is_word(tokens: list[str], i: int) -> bool:
    return i < len(tokens) and tokens[i].lower() in FLASH_ATTN


def check(flags: Iterable[str]) -> None:
    """Refuse (400) what :func:`parse` refuses, and fields this build's RunnerConfig lacks."""
    fields = {f.name for f in dataclasses.fields(RunnerConfig)}
    for key in parse(flags).runner:
        if key not in fields:
            raise _refuse(f"--{key}", "not supported by this dmr version")


def llama_kwargs(flags: Iterable[str], **own: Any) -> dict[str, Any]:
    """``Llama(...)`` keyword arguments: the engine's ``own``, overridden by those the flags set."""
    return {**own, **parse(flags).llama}


def runner_config(config: RunnerConfig) -> RunnerConfig:
    """``config`` with the RunnerConfig fields its own runtime flags set (``--parallel``)."""
    fields = {f.name for f in dataclasses.fields(RunnerConfig)}
    changes = {k: v for k, v in parse(config.runtime_flags).runner.items() if k in fields}
    return dataclasses.replace(config, **changes) if changes else config


def sampling_defaults(flags: Iterable[str]) -> dict[str, Any]:
    """SamplingParams values the flags set, applied where a request leaves them unset."""
    return parse(flags).sampling


def with_sampling_defaults(request: GenerationRequest, defaults: dict[str, Any]) -> GenerationRequest:
    """``request`` with each unset (None) sampling parameter taken from ``defaults``."""
    unset = {k: v for k, v in defaults.items() if getattr(request.sampling, k) is None}
    if not unset:
        return request
    return dataclasses.replace(request, sampling=dataclasses.replace(request.sampling, **unset))
