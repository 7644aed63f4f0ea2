"""The inference pool's part of ``GET /metrics``, asked of its supervisor at scrape time.

The supervisor is the one place that knows what is loaded where, so one ``status`` call per
scrape (a few hundred microseconds over its Unix socket) gives values every web worker agrees on,
with nothing counted on the request path. If the pool does not answer, ``dmr_pool_up`` is 0 and
the pool's other metrics are left out of that scrape.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from dmr_core.errors import DmrError
from dmr_core.pool.client import PoolClient
from dmr_core.pool.protocol import ProtocolError

_RUNNER_LABELS = ["engine", "model", "mode"]
_WORKER_LABELS = ["worker", "device"]


class PoolCollector:
    """:param pool_dir: the pool's socket directory. :param timeout: how long a scrape waits for
    the pool to answer (it answers at once unless it is down)."""

    def __init__(self, pool_dir: Path, timeout: float = 1.0) -> None:
        self._pool = PoolClient(pool_dir, connect_timeout=timeout)

    def collect(self) -> Iterator:
        try:
            status = self._pool.status()
        except (DmrError, OSError, ProtocolError):
            status = None
        yield GaugeMetricFamily("dmr_pool_up", "1 when the inference pool's supervisor answered this scrape",
                                value=0 if status is None else 1)  # fmt: skip
        if status is not None:
            yield from runner_metrics(status["runners"])
            yield from worker_metrics(status["workers"])


def waiting(runner: dict[str, Any]) -> int:
    """Requests holding ``runner`` that no slot of it runs yet: all of them while it loads."""
    if runner["loading"]:
        return runner["refs"]
    return max(0, runner["refs"] - runner.get("slots", 1))


def runner_metrics(runners: list[dict[str, Any]]) -> Iterator[GaugeMetricFamily]:
    loaded = GaugeMetricFamily("dmr_runners_loaded", "Loaded runners (model instances)", labels=_RUNNER_LABELS)
    memory = GaugeMetricFamily("dmr_runner_memory_bytes", "Memory counted for runners, loaded or loading "
                               "(file size + KV cache, or the model's _configure'd estimate)",
                               labels=_RUNNER_LABELS)  # fmt: skip
    queued = GaugeMetricFamily("dmr_queue_depth", "Requests waiting for a slot of a model's runners",
                               labels=["model"])  # fmt: skip
    for key, (count, size) in _per_model(runners).items():
        loaded.add_metric(list(key), count)
        memory.add_metric(list(key), size)
    for model, count in _waiting_per_model(runners).items():
        queued.add_metric([model], count)
    return iter((loaded, memory, queued))


def _per_model(runners: list[dict[str, Any]]) -> dict[tuple[str, str, str], tuple[int, int]]:
    """(engine, model, mode) → (loaded runners, their memory with that of loading ones)."""
    sums: dict[tuple[str, str, str], tuple[int, int]] = {}
    for runner in runners:
        key = (runner["engine"], runner["model_name"], runner["mode"])
        count, size = sums.get(key, (0, 0))
        sums[key] = (count + (0 if runner["loading"] else 1), size + runner["memory"])
    return sums


def _waiting_per_model(runners: list[dict[str, Any]]) -> dict[str, int]:
    waits: dict[str, int] = defaultdict(int)
    for runner in runners:
        waits[runner["model_name"]] += waiting(runner)
    return waits


def worker_metrics(workers: list[dict[str, Any]]) -> Iterator:
    up = GaugeMetricFamily("dmr_inference_worker_up", "1 while an inference worker process runs",
                           labels=_WORKER_LABELS)  # fmt: skip
    budget = GaugeMetricFamily("dmr_memory_budget_bytes", "Memory an inference worker's models may fill",
                               labels=_WORKER_LABELS)  # fmt: skip
    restarts = CounterMetricFamily("dmr_inference_worker_restarts", "Times an inference worker was respawned "
                                   "since the pool supervisor started", labels=_WORKER_LABELS)  # fmt: skip
    for worker in workers:
        labels = [str(worker["index"]), worker["device"]]
        up.add_metric(labels, 1 if worker["alive"] else 0)
        budget.add_metric(labels, worker["memory_budget"])
        restarts.add_metric(labels, worker["restarts"])
    return iter((up, budget, restarts))
