"""Several generations merged as they arrive (:mod:`dmr_core.choices`), on plain iterators."""

from __future__ import annotations

import threading

import pytest

from dmr_core.choices import MergedChoices
from dmr_core.errors import EngineError
from dmr_core.generation import FinishReason, GenerationChunk, Usage

WAIT = 5.0


def job(*texts: str):
    yield from (GenerationChunk(t) for t in texts)
    yield GenerationChunk("", FinishReason.STOP, Usage(1, len(texts)))


def merged(*jobs) -> MergedChoices:
    choices = MergedChoices()
    for chunks in jobs:
        choices.add(chunks)
    return choices


def test_every_chunk_comes_once_stamped_with_its_choice_each_job_in_order():
    out = list(merged(job("a", "b"), job("c"), job()).chunks())
    by_choice = {i: [c.text for c in out if c.choice == i] for i in range(3)}
    assert by_choice == {0: ["a", "b", ""], 1: ["c", ""], 2: [""]}
    assert sorted(c.choice for c in out if c.finish_reason) == [0, 1, 2]


def test_a_job_not_read_does_not_hold_up_the_others():
    # Choice 0 yields nothing until choice 1 has been read to its end: read one job after the
    # other, this would never finish (as a choice stalled in its slot would block one queued).
    released = threading.Event()

    def blocked():
        assert released.wait(WAIT), "choice 1 was never read while choice 0 waited"
        yield from job("late")

    def other():
        yield from job("early")
        released.set()

    out = [c.text for c in merged(blocked(), other()).chunks()]
    assert out.index("early") < out.index("late")


def test_a_failing_job_fails_the_merged_stream():
    def failing():
        yield GenerationChunk("x")
        raise EngineError("the worker crashed")

    with pytest.raises(EngineError, match="crashed"):
        list(merged(failing(), job("a")).chunks())


def test_closing_the_merged_stream_closes_every_job_at_its_next_chunk():
    closed = [threading.Event(), threading.Event()]
    go_on = threading.Event()

    def endless(index: int):
        try:
            while True:
                yield GenerationChunk("t")
                go_on.wait(WAIT)
        finally:
            closed[index].set()

    stream = merged(endless(0), endless(1)).chunks()
    next(stream)
    stream.close()
    go_on.set()  # each job's next chunk: its reader sees the stream closed
    assert all(event.wait(WAIT) for event in closed)
