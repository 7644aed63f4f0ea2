"""dmr's llama.cpp engine plugin. Importing this module is cheap: llama_cpp loads in ``load()``."""

from dmr_core import hookimpl


@hookimpl
def dmr_register_engines(registry):
    from dmr_llamacpp.engine import LlamaCppEngine

    registry.add(LlamaCppEngine)


@hookimpl
def dmr_worker_started(worker):
    # The CPU probe (a second or less, in a child process) runs while the worker waits for its
    # first job, so the first model load does not wait for it; its verdict is kept beside the
    # worker's socket (the pool directory), so a respawned worker does not probe again.
    from pathlib import Path

    from dmr_llamacpp import extra_buffers

    extra_buffers.verdict.start(Path(worker.socket_path).parent)
