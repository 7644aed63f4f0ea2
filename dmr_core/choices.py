"""Several generations of one request, read at once and merged as their chunks arrive.

OpenAI's ``n`` (and a completions request with several prompts) makes one pool job per choice;
the model's parallel slots run them together and the rest wait for a slot. Each job is read by a
thread of its own (a greenlet under gunicorn's gevent workers), so one choice read slowly never
holds up another: a job left unread fills its socket and stalls in its slot, and a job queued
behind that slot would then never start. Every chunk comes out stamped with its job's place
(:attr:`~dmr_core.generation.GenerationChunk.choice`).

Closing the merged stream stops each reader at its job's next chunk, which closes the job's
socket: the inference worker then stops the job, as it does for any client that went away.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Iterator

from dmr_core.generation import GenerationChunk

_END = object()


class MergedChoices:
    """Chunks of the jobs :meth:`add`-ed, in the order they arrive (each job's in its own order)."""

    def __init__(self) -> None:
        self._arrived: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._running = 0

    def add(self, chunks: Iterator[GenerationChunk]) -> None:
        """Start reading ``chunks`` as the next choice."""
        reader = threading.Thread(target=self._read, args=(self._running, chunks), daemon=True)
        self._running += 1
        reader.start()

    def chunks(self) -> Iterator[GenerationChunk]:
        """Every job's chunks until all have ended; a job's failure is raised as it comes."""
        try:
            while self._running:
                item = self._arrived.get()
                if item is _END:
                    self._running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()

    def _read(self, index: int, chunks: Iterator[GenerationChunk]) -> None:
        try:
            for chunk in chunks:
                self._arrived.put(dataclasses.replace(chunk, choice=index))
                if self._stop.is_set():
                    break
        except BaseException as exc:  # handed to the reader of the merged stream, which raises it
            self._arrived.put(exc)
        finally:
            _close(chunks)
            self._arrived.put(_END)


def _close(chunks: Iterator[GenerationChunk]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()
