"""The scheduler's rules alone (no processes): keep-alive parsing, LRU eviction, refs, queue."""

import pytest

from dmr_core.errors import Conflict, EngineUnavailable, InsufficientMemory, InvalidRequest, QueueFull
from dmr_core.pool.scheduler import (
    ModelConfig,
    RunnerSpec,
    Scheduler,
    format_keep_alive,
    parse_keep_alive,
)


@pytest.mark.parametrize("text, seconds", [
    ("5m", 300.0), ("1h30m", 5400.0), ("2s", 2.0), ("-1", -1.0), ("0", 0.0), (0, 0.0), (-1, -1.0),
    (30, 30.0), ("1.5h", 5400.0), ("500ms", 0.5), (None, None), ("-1m", -60.0),
])  # fmt: skip
def test_keep_alive_forms(text, seconds):
    assert parse_keep_alive(text) == seconds


@pytest.mark.parametrize("text", ["5x", "m", "12 minutes", True])
def test_bad_keep_alive_is_400(text):
    with pytest.raises(InvalidRequest):
        parse_keep_alive(text)


def test_keep_alive_spelling():
    assert [format_keep_alive(s) for s in (300, 2, -1, 0, 3725)] == ["5m0s", "2s", "-1", "0s", "1h2m5s"]


def spec(path, ctx=100, **extra):
    return RunnerSpec("llama.cpp", path, "completion", path, "id-" + path, file_size=100, kv_per_token=1,
                      default_context=ctx, **extra)  # fmt: skip


def scheduler(budget=1000, max_queue=1):
    unloaded = []
    sched = Scheduler([budget], max_queue, 300.0, lambda slot, key: unloaded.append(key[1]))
    for name in ("acquire", "release", "configure", "expire"):  # as the supervisor does after each
        setattr(sched, name, flushing(sched, getattr(sched, name)))
    return sched, unloaded


def flushing(sched, method):
    def call(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        finally:
            sched.flush()

    return call


def test_lru_idle_runner_is_evicted_and_busy_ones_kept():
    sched, unloaded = scheduler(budget=450)
    runners = {}
    for path in ("a", "b"):
        runners[path], fresh = sched.acquire(spec(path))
        assert fresh
        sched.loaded(runners[path])
    sched.release(runners["a"])  # a idle, b busy
    c, _ = sched.acquire(spec("c"))
    assert unloaded == ["a"]
    sched.loaded(c)
    with pytest.raises(EngineUnavailable, match="busy"):
        sched.acquire(spec("d"))
    with pytest.raises(InsufficientMemory):
        sched.acquire(spec("huge", ctx=5000))


def test_queue_bound_and_keep_alive_zero():
    sched, unloaded = scheduler(max_queue=1)
    first, _ = sched.acquire(spec("a", keep_alive=0))
    sched.loaded(first)
    sched.acquire(spec("a", keep_alive=0))
    with pytest.raises(QueueFull):
        sched.acquire(spec("a"))
    sched.release(first)
    assert unloaded == []  # still one job in it
    sched.release(first)
    assert unloaded == ["a"]


def test_configured_context_and_conflict():
    sched, unloaded = scheduler()
    runner, _ = sched.acquire(spec("a"))
    sched.loaded(runner)
    config = ModelConfig("llama.cpp", "a", "id-a", context_size=200)
    with pytest.raises(Conflict):
        sched.configure(config)
    sched.release(runner)
    sched.configure(config)
    assert unloaded == ["a"]
    assert sched.acquire(spec("a"))[0].context_size == 200
    assert sched.acquire(spec("a", context_size=50))[0].context_size == 50  # the request's own wins


def test_expiry():
    sched, unloaded = scheduler()
    runner, _ = sched.acquire(spec("a", keep_alive=2))
    sched.loaded(runner)
    sched.release(runner)
    assert sched.expire(runner.last_used + 1) == 0
    assert sched.expire(runner.last_used + 2.1) == 1 and unloaded == ["a"]


def test_the_queue_bound_counts_jobs_past_the_parallel_slots():
    sched, _ = scheduler(max_queue=1)
    first, _ = sched.acquire(spec("a"))
    sched.loaded(first, slots=3)  # the worker answered the load: its engine runs 3 jobs at once
    for _ in range(3):  # two more running (3 slots) and one waiting (max_queue 1)
        sched.acquire(spec("a"))
    with pytest.raises(QueueFull):
        sched.acquire(spec("a"))
    sched.release(first)
    sched.acquire(spec("a"))  # one finished: room for one again


def test_each_parallel_slot_counts_a_full_context_of_kv_cache():
    sched = Scheduler([10_000], 1, 300.0, lambda slot, key: None, parallel=4)
    assert sched.memory_need(spec("a", ctx=100), 100) == 100 + 1 * 100 * 4
