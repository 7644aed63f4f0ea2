"""What the ``dmr_worker_started`` hook is told about its worker: a plain record, importing nothing,
so the hook contract (:mod:`dmr_core.hookspecs`) does not depend on the worker's machinery."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerInfo:
    """What a ``dmr_worker_started`` hook learns about the worker it runs in."""

    index: int
    device: str
    pid: int
    socket_path: str
