"""The AMX probe's verdict kept on disk, so that a restarted inference worker does not probe again.

A probe is a child process that imports llama.cpp, writes a tiny model, loads it and runs a batch:
0.4–2 s on a busy 2-core machine, spent again by every worker that starts, so also in the path of
a crashed worker's recovery, and taking a core from the decoding of every other stream meanwhile.
Its answer depends only on the CPU, the kernel and the llama.cpp build, so it is kept (a small JSON
file in the pool directory, beside the workers' sockets) under a key made of exactly those: the
CPU's identity from ``/proc/cpuinfo`` (vendor, family, model, stepping, microcode, flags), the
kernel release (it grants AMX's state to processes), llama-cpp-python's version and its native
libraries' sizes and modification times (a rebuild with other CMake flags changes them), and a
forced answer (``DMR_LLAMACPP_PROBE_FORCE``). Any change makes another key, and the probe runs again.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
from pathlib import Path

FILE_NAME = "llamacpp-cpu-verdict.json"
#: The ``/proc/cpuinfo`` fields that tell one CPU (and its microcode) from another.
CPU_FIELDS = ("vendor_id", "cpu family", "model", "model name", "stepping", "microcode", "flags", "Features",
              "CPU implementer", "CPU part")  # fmt: skip


def probe_key(forced: str, cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """A digest of everything the probe's answer depends on."""
    parts = {"cpu": cpu_identity(cpuinfo), "kernel": os.uname().release, "llama_cpp": build_identity(),
             "forced": forced}  # fmt: skip
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def cpu_identity(cpuinfo: Path) -> dict[str, str]:
    """The first processor's identifying fields (every core of a host is the same model)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        name, _, value = line.partition(":")
        if name.strip() in CPU_FIELDS:
            fields[name.strip()] = value.strip()
    return fields


def build_identity() -> list:
    """llama-cpp-python's version and its shared libraries (name, size, mtime), without importing it."""
    try:
        version = importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        version = ""
    spec = importlib.util.find_spec("llama_cpp")
    package = Path(spec.origin).parent if spec is not None and spec.origin else None
    libraries = sorted(package.glob("**/*.so*")) if package is not None else []
    return [version, *[[lib.name, lib.stat().st_size, lib.stat().st_mtime_ns] for lib in libraries if lib.is_file()]]


def load(path: Path, key: str) -> tuple[bool, str] | None:
    """``(use_extra_buffers, reason)`` kept under ``key``; None if there is none (or another key's)."""
    try:
        data = json.loads(path.read_text())
        if data.get("key") == key:
            return bool(data["use_extra_buffers"]), str(data["reason"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # unreadable or not ours: the probe runs and the file is written again
    return None


def save(path: Path, key: str, use_extra_buffers: bool, reason: str) -> None:
    """Keep a verdict (written whole, then renamed: a reader never sees half a file)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        temporary.write_text(json.dumps({"key": key, "use_extra_buffers": use_extra_buffers, "reason": reason}))
        os.replace(temporary, path)
    except OSError:  # a read-only or full disk costs the next worker a probe, nothing else
        temporary.unlink(missing_ok=True)
