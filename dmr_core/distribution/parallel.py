"""Running several blob downloads at once and merging their byte counts into one stream.

Each blob's :func:`~dmr_core.distribution.download.download_blob` generator runs in a worker
thread (the work is socket reads, file writes and hashing, all of which release the GIL); the
counts they yield come back through one bounded queue, so the caller's generator stays the only
producer of progress events and a paused consumer (a slow client) soon pauses the workers too.
The first failure stops the others between chunks and is raised; closing the generator (the client
went away) stops them the same way. Either way every partial file keeps what it got, for resuming.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from dmr_core.store.artifact import Descriptor

#: Counts a worker may run ahead of the consumer before it waits.
QUEUE_DEPTH = 16
_PUT_POLL_SECONDS = 0.1
_DONE = object()

Fetch = Callable[[Descriptor], Iterator[int]]


def download_concurrently(fetch: Fetch, blobs: list[Descriptor], concurrency: int) -> Iterator[tuple[Descriptor, int]]:
    """``(blob, bytes done)`` from ``fetch(blob)`` for every blob, up to ``concurrency`` blobs at once."""
    results: queue.Queue = queue.Queue(QUEUE_DEPTH)
    stop = threading.Event()
    with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="dmr-pull") as pool:
        try:
            for blob in blobs:
                pool.submit(_run, fetch, blob, results, stop)
            yield from _merged(results, len(blobs))
        finally:
            stop.set()  # on failure or close: the other workers end between chunks


def _merged(results: queue.Queue, workers: int) -> Iterator[tuple[Descriptor, int]]:
    while workers:
        item = results.get()
        if item is _DONE:
            workers -= 1
        elif isinstance(item, BaseException):
            raise item
        else:
            yield item


def _run(fetch: Fetch, blob: Descriptor, results: queue.Queue, stop: threading.Event) -> None:
    """One worker: stream ``blob``'s counts into ``results`` until done, failed or stopped."""
    if stop.is_set():
        return
    counts = fetch(blob)
    try:
        for count in counts:
            if stop.is_set() or not _put(results, (blob, count), stop):
                return
        _put(results, _DONE, stop)
    except BaseException as exc:  # handed to the consumer, which raises it
        _put(results, exc, stop)
    finally:
        counts.close()  # closes the registry stream and the partial file at once


def _put(results: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Queue ``item``, waiting while the consumer is behind; ``False`` once the pull is stopped."""
    while not stop.is_set():
        try:
            results.put(item, timeout=_PUT_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False
