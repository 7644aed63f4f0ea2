"""Which devices get an inference worker, and how a worker is pinned to its device."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Device:
    """``name`` is ``cpu`` or ``cuda:N``; ``cuda_visible`` is what the worker's
    ``CUDA_VISIBLE_DEVICES`` is set to (empty for the CPU, which hides every GPU)."""

    name: str
    #: CPU threads for this worker's engines (0 = the engine's default); see :func:`share_cpu_threads`.
    threads: int = 0

    @property
    def cuda_visible(self) -> str:
        return self.name.split(":", 1)[1] if self.name.startswith("cuda:") else ""

    @property
    def is_gpu(self) -> bool:
        return self.name.startswith("cuda:")

    def pinned_environ(self, base: dict[str, str]) -> dict[str, str]:
        """The environment a worker for this device starts with: pinned before Python starts."""
        env = dict(base)
        env["CUDA_VISIBLE_DEVICES"] = self.cuda_visible
        if self.threads:
            env["DMR_THREADS"] = str(self.threads)
        return env


def _detect_gpus() -> list[Device]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    count = sum(1 for line in out.splitlines() if line.startswith("GPU "))
    return [Device(f"cuda:{i}") for i in range(count)]


def parse_devices(spec: str) -> list[Device]:
    """``cpu``, ``cuda:0,cuda:1`` or ``auto`` (every NVIDIA GPU, else the CPU)."""
    spec = spec.strip().lower()
    if spec == "auto":
        return _detect_gpus() or [Device("cpu")]
    devices = [Device(part.strip()) for part in spec.split(",") if part.strip()]
    for device in devices:
        if device.name != "cpu" and not (device.name.startswith("cuda:") and device.cuda_visible.isdigit()):
            raise ValueError(f"unknown device {device.name!r} (use cpu, cuda:N or auto)")
    if not devices:
        raise ValueError("no devices configured")
    return devices


def share_cpu_threads(devices: list[Device], threads: int, cores: int) -> list[Device]:
    """Split the physical cores between CPU workers so they never oversubscribe.

    ggml's threads spin at barriers: measured on a 2-core machine, one process with 2 threads
    decodes 91 tok/s, two such processes side by side 0.3 tok/s each, two with 1 thread 54 tok/s
    each. So with several ``cpu`` workers each gets ``cores // n`` threads (at least 1), unless
    ``threads`` was set explicitly.
    """
    cpu_workers = sum(1 for d in devices if not d.is_gpu)
    if threads or cpu_workers < 2:
        return devices
    share = max(1, cores // cpu_workers)
    return [d if d.is_gpu else Device(d.name, share) for d in devices]


def physical_cores() -> int:
    """Physical CPU cores available to this process: ggml's spinning threads collapse when they
    share a core, so this (not the hyper-thread count) is the default thread count."""
    allowed = len(os.sched_getaffinity(0))
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return allowed
    cores = set()
    physical = core = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            physical = value.strip()
        elif key == "core id":
            core = value.strip()
            cores.add((physical, core))
    return max(1, min(allowed, len(cores) or allowed))
