"""``/engines/status|ps|df|unload`` and ``/engines[/{engine}]/_configure``, with DMR's field names.

The pool's supervisor knows what is loaded; these routes ask it (``runners``, ``unload``,
``configure``, ``configs``) and format. Errors are DMR's plain text (see ``native/errors.py``).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import re
import shlex
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from dmr_core.bytesize import parse_size
from dmr_core.dialects.wire import json_body
from dmr_core.errors import InvalidRequest
from dmr_core.generation import Mode
from dmr_core.pool.scheduler import format_keep_alive, parse_keep_alive

blueprint = Blueprint("engines", __name__)
PREFIXES = ("/engines/status", "/engines/ps", "/engines/df", "/engines/unload", "/engines/_configure")
PATTERNS = (r"/engines/[^/]+/_configure$",)
#: What ``last_used`` says while a runner is in use (Go's zero time, as DMR).
ZERO_TIME = "0001-01-01T00:00:00Z"
#: llama-server flags a client may set through ``runtime-flags`` (DMR's allow-list, abridged).
ALLOWED_FLAGS = frozenset({
    "--threads", "-t", "--threads-batch", "-tb", "--batch-size", "-b", "--ubatch-size", "-ub",
    "--ctx-size", "-c", "--n-gpu-layers", "-ngl", "--gpu-layers", "--flash-attn", "-fa", "--mlock",
    "--no-mmap", "--temp", "--top-k", "--top-p", "--min-p", "--repeat-penalty", "--seed", "-s",
    "--cache-type-k", "-ctk", "--cache-type-v", "-ctv", "--rope-scaling", "--rope-freq-base",
    "--rope-freq-scale", "--parallel", "-np", "--cont-batching", "--no-cont-batching", "--jinja",
    "--reasoning-budget", "--reasoning-format", "--split-mode", "-sm", "--main-gpu", "-mg",
    "--tensor-split", "-ts", "--defrag-thold", "--keep", "--n-predict", "-n", "--verbose", "-v",
    "--no-kv-offload", "-nkvo",
})  # fmt: skip


def runtime():
    return current_app.extensions["dmr"]


def supervisor(op: str, **fields: Any) -> Any:
    return runtime().pool.call_supervisor({"op": op, **fields})


def _body() -> dict:
    try:
        return json_body() if request.get_data(cache=True).strip() else {}
    except InvalidRequest:
        raise InvalidRequest("invalid request") from None


# -- status, ps, df ------------------------------------------------------------------------------


@blueprint.get("/engines/status")
def status():
    engines = runtime().engines
    return jsonify({name: _status_line(engines.get(name)) for name in engines.names()})


def _status_line(engine_cls) -> str:
    availability = engine_cls.availability()
    if not availability.installed:
        return availability.detail if availability.detail.startswith("Not Installed") else "Not Installed"
    detail = availability.detail
    if detail == f"Running: {engine_cls.name}":
        version = _version(engine_cls)
        return f"{detail} {version}" if version else detail
    return detail


@functools.cache  # scanning every installed distribution took ~80 ms an engine, on each /engines/status
def _version(engine_cls) -> str | None:
    distributions = importlib.metadata.packages_distributions()
    for module in getattr(engine_cls, "requires", ()):
        for dist in distributions.get(module.split(".")[0], ()):
            try:
                return importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
    return None


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def ps_row(runner: dict[str, Any]) -> dict[str, Any]:
    """One ``/engines/ps`` row; ``context_size`` is dmr's addition (the size actually loaded)."""
    in_use = runner["refs"] > 0
    row = {"backend_name": runner["engine"], "model_name": runner["model_name"], "mode": runner["mode"],
           "last_used": ZERO_TIME if in_use else _rfc3339(runner["last_used"])}  # fmt: skip
    if in_use:
        row["in_use"] = True
    if runner["loading"]:
        row["loading"] = True
    row["keep_alive"] = format_keep_alive(runner["keep_alive"])
    row["context_size"] = runner["context_size"]
    return row


@blueprint.get("/engines/ps")
def ps():
    return jsonify([ps_row(r) for r in supervisor("runners")])


def _tree_size(*roots: Path) -> int:
    seen, total = set(), 0
    for directory, _, files in (walked for root in roots for walked in os.walk(root)):
        for name in files:
            try:
                info = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            if (info.st_dev, info.st_ino) not in seen:  # bundles hard-link blobs: count once
                seen.add((info.st_dev, info.st_ino))
                total += info.st_size
    return total


def _engine_dir(name: str) -> Path | None:
    engine_cls = runtime().engines.get(name)
    for module in getattr(engine_cls, "requires", ()):
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.submodule_search_locations:
            return Path(list(spec.submodule_search_locations)[0])
    return None


@blueprint.get("/engines/df")
def df():
    store = runtime().store
    engine_dir = _engine_dir(runtime().settings.default_engine)
    # Bundles count for what is not a link to a blob: a DDUF model's unpacked entries.
    return jsonify({"models_disk_usage": _tree_size(store.root / "blobs", store.root / "bundles"),
                    "default_backend_disk_usage": _tree_size(engine_dir) if engine_dir else 0})  # fmt: skip


# -- unload --------------------------------------------------------------------------------------


@blueprint.post("/engines/unload")
def unload():
    body = _body()
    models = body.get("models") or []
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise InvalidRequest("invalid request: models must be a list of names")
    ids = [runtime().store.resolve(name).id for name in models]
    count = supervisor("unload", all=bool(body.get("all")), backend=str(body.get("backend") or ""), model_ids=ids)
    return jsonify({"unloaded_runners": count})


# -- _configure ----------------------------------------------------------------------------------


@blueprint.post("/engines/_configure")
@blueprint.post("/engines/<engine>/_configure")
def configure(engine: str | None = None):
    body = _body()
    name = body.get("model")
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("model is required")
    rt = runtime()
    model = rt.store.resolve(name)
    backend = rt.engine_for(model, engine)
    mode = str(body.get("mode") or "completion")
    if mode not in {m.value for m in Mode}:
        raise InvalidRequest(f"unsupported mode {mode!r}")
    flags = _runtime_flags(body)
    rt.engines.get(backend).check_runtime_flags(tuple(flags))  # 400 for flags it cannot apply
    # The context-size field wins over a --ctx-size flag; the flag alone sets the configured size.
    context = _context_size(body.get("context-size")) if "context-size" in body else _flag_context_size(flags)
    keep_alive = parse_keep_alive(body.get("keep_alive"))
    config = {"backend": backend, "model": name, "model_id": model.id, "mode": mode, "context_size": context,
              "runtime_flags": flags, "keep_alive": keep_alive,
              "memory_estimate": _memory_estimate(body.get("memory-estimate"))}  # fmt: skip
    spec = rt.placement(name, model, backend, mode)
    supervisor("configure", config=config, spec=spec)
    return Response(status=202)


def _context_size(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < -1:
        raise InvalidRequest("invalid context-size")
    return value if value > 0 else None  # -1: back to the model's own


def _memory_estimate(value: Any) -> int | None:
    """Bytes to count for the model instead of its own estimate; -1 (or null) goes back to that."""
    return None if value is None or value == -1 else parse_size(value, "memory-estimate")


def _flag_context_size(flags: list[str]) -> int | None:
    """The last ``--ctx-size``/``-c`` value among ``flags`` (the engine has checked it is a number)."""
    size = None
    for i, flag in enumerate(flags):
        name, inline, value = flag.partition("=")
        if name in ("--ctx-size", "-c") and (inline or i + 1 < len(flags)):
            size = _context_size(int(value if inline else flags[i + 1]))
    return size


def _runtime_flags(body: dict) -> list[str]:
    flags = body.get("runtime-flags")
    raw = body.get("raw-runtime-flags")
    if raw is not None and not isinstance(raw, str):
        raise InvalidRequest("raw-runtime-flags must be a string")
    if flags is None and raw is not None:
        try:
            flags = shlex.split(raw)  # DMR's raw form: one command-line string, quoting allowed
        except ValueError as exc:
            raise InvalidRequest(f"invalid raw-runtime-flags: {exc}") from None
    if flags is None:
        return []
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise InvalidRequest("runtime-flags must be a list of strings")
    for flag in flags:
        if "/" in flag or "\\" in flag:
            raise InvalidRequest(f"runtime flag {flag!r} may not contain a path")
        if flag.startswith("-") and flag.split("=", 1)[0] not in ALLOWED_FLAGS:
            raise InvalidRequest(f"runtime flag {flag.split('=', 1)[0]!r} is not allowed")
        if not flag.startswith("-") and not re.fullmatch(r"[\w.:,+-]+", flag):
            raise InvalidRequest(f"runtime flag value {flag!r} is not allowed")
    return flags


@blueprint.get("/engines/_configure")
@blueprint.get("/engines/<engine>/_configure")
def configs(engine: str | None = None):
    name = request.args.get("model")
    model_id = runtime().store.resolve(name).id if name else None
    rows = supervisor("configs", model_id=model_id)
    return jsonify([r for r in rows if engine is None or r["Backend"] == engine])
