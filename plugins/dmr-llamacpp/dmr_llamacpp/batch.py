"""Continuous batching: the generations of one loaded model decode together in one context.

Like llama-server's ``--parallel N``: the llama.cpp context holds N sequences (*slots*). Each
*step* gathers, from every active sequence, its last sampled token or its next prompt chunk,
evaluates them all with one ``llama_decode``, and samples each sequence's next token with the
sequence's own sampler chain at its row of the logits. One slot is the single-stream case: the
same loop, so there is one way text is generated.

There is no decoder thread: a job that wants its next token and finds none runs a step for
everyone. A lone request thus decodes on its own thread, as a direct ``Llama.generate()`` loop
does; a separate thread would add a third busy thread beside llama.cpp's compute threads, and on
a 2-core machine that halved single-stream speed (measured). Everything per job (stop strings,
tool calls, usage, cancellation) stays in the engine, which reads ``(token, logprob)``.

With several jobs, one of them is the *stepper*: its thread runs every step while its job lasts,
and the others sleep until a step brought them a token. Why: libgomp keeps worker threads for
every thread that ever ran a step, and past one such thread per core it stops spinning at
barriers; when job threads took turns at stepping, a step for 2 sequences took 31 ms instead of
17 on 2 cores (see :func:`release_openmp_threads`). With one stepper (engine level, SmolLM2-135M,
128 greedy tokens a stream) 2 streams went from 63 to 114 tokens/s in all and 4 from 85 to 145;
1 stream is unchanged (bench/parallel.py measures it served). Running every job's output work on
the stepper too (so the others only relay chunks) measured no better, so it stays per job. A
stepper whose client reads slowly does not hold the others up: a job that saw no step for
:data:`CANCEL_POLL` runs the next one and becomes the stepper.

A step ends a sequence at an end-of-generation token or its token budget. A slot keeps what its
last sequence left in the KV cache, so a chat's next turn evaluates only what is new. A new prompt
goes, as in llama-server, to the free slot sharing the longest prefix with it if that prefix is a
real match (over :data:`SIMILARITY` of the prompt: every chat shares the template's first tokens,
which must not pull another conversation's turn into this one's slot), else to the least recently
used free slot. A slot about to lose most of what it holds is saved first to the host-memory
:class:`~dmr_llamacpp.prompt_cache.PromptCache`, and a prompt whose longest match is there rather
than in its slot is restored from it, so interleaved conversations beyond the slot count still
reuse their prefixes. A job that waits for a slot is placed by the same rule when one frees.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dmr_core.errors import EngineError, InvalidRequest
from dmr_core.generation import TokenLogprob
from dmr_llamacpp.prompt_cache import PromptCache, common_prefix
from dmr_llamacpp.vision import MediaPrompt

#: How often a job waiting for a step checks whether its client went away, and how long no step
#: may run before it runs one itself, taking over from a stepper that is away (seconds).
CANCEL_POLL = 0.1
#: The part of a prompt a free slot must already hold for the prompt to go there rather than to the
#: least recently used slot (llama-server's ``--slot-prompt-similarity``, default 0.1 since it has a
#: prompt cache; 0.5 before). A chat template's opening tokens alone are a few percent of a prompt.
SIMILARITY = 0.1
_END = object()


#: llama.cpp rounds a context's size up to a multiple of this (``llama_context``: ``GGML_PAD(n_ctx, 256)``).
CONTEXT_PAD = 256


def first_context_size(context_size: int, slots: int, n_batch: int) -> int:
    """The context ``Llama()`` should make for a runner of ``slots`` sequences of ``context_size``.

    With several slots :func:`widen_context` replaces it at once, so it need only be large enough
    for ``Llama()``'s own batch (``n_batch`` is cut to the context): made at full size, it cost about
    as much again as the widened one (~100 ms of a 300 ms load of SmolLM2 at 4096 a slot)."""
    if slots < 2 or not context_size:
        return context_size
    return min(context_size, max(n_batch, CONTEXT_PAD))


def widen_context(llama: Any, slots: int, context_size: int = 0) -> int:
    """Give ``llama`` a context for ``slots`` sequences of ``context_size`` tokens (0: the size of
    the context it has); returns the context each one gets.

    ``Llama()`` takes no ``n_seq_max``, so the context it made is replaced. The KV cache is
    ``slots`` times the configured size, one stream of cells per sequence: every sequence can use
    the full configured context whatever the others hold, so a request never fails for lack of
    cells, at the price of ``slots`` times the KV memory. Not unified: in one shared pool a
    sequence's attention spans the cells the other slots keep cached, and a lone request then
    decoded 10-15% slower after a few concurrent ones (measured on SmolLM2-135M, 2048 a slot).
    """
    from llama_cpp import _internals

    if slots < 2:
        return llama.n_ctx()  # the context Llama() made is the one used
    per_sequence = -(-context_size // CONTEXT_PAD) * CONTEXT_PAD if context_size else llama.n_ctx()
    params = llama.context_params
    params.n_ctx, params.n_seq_max, params.kv_unified = per_sequence * slots, slots, False
    llama._ctx.close()
    llama._ctx = llama._stack.enter_context(
        contextlib.closing(_internals.LlamaContext(model=llama._model, params=params, verbose=False))
    )
    return llama.n_ctx() // slots  # as llama.cpp made it


@dataclass
class SequenceJob:
    """What a generation asks of the decoder. ``chain``: its own sampler (``sample(ctx, row)``
    draws a token from a logits row and accepts it: see sampler.py). ``logprobs``: how many top alternatives to report, None for none.
    ``reused`` is the decoder's answer, set when the job gets its slot: how many prompt tokens
    the slot's KV cache already held, which are not evaluated again (usage's cached tokens)."""

    prompt: list[int] | MediaPrompt
    chain: Any
    budget: int
    logprobs: int | None = None
    reused: int = 0


@dataclass
class Slot:
    """One of the context's sequences, and the tokens its KV cells hold (positions 0..)."""

    seq_id: int
    cached: list[int] = field(default_factory=list)
    busy: bool = False
    used: float = 0.0  # when its last sequence ended (monotonic): the least recently used is taken first


class Sequence:
    """One job inside the decoder: what it still has to evaluate, and the tokens sampled for it."""

    def __init__(self, job: SequenceJob) -> None:
        self.job = job
        self.media = job.prompt if isinstance(job.prompt, MediaPrompt) else None
        self.pending: list[int] = [] if self.media else list(job.prompt)
        self.sampled_queue: deque = deque()  # (token, logprob) pairs, then _END or an exception
        self.slot: Slot | None = None
        self.released = False
        self.row: int | None = None  # its row of logits in the step just decoded
        self.sampled = 0
        self.bell: threading.Condition | None = None  # its thread waits on it (the decoder's mutex)


class BatchDecoder:
    """The decode loop of one loaded model. :param slots: sequences decoded together.
    :param logprobs: a :class:`~dmr_llamacpp.sampler.LogprobReader` for the same model."""

    def __init__(self, llama: Any, slots: int, is_eog: Callable[[int], bool], logprobs: Any, projector=None,
                 prompt_cache: int = 0) -> None:  # fmt: skip
        import llama_cpp

        self._lib, self._llama, self._ctx = llama_cpp, llama, llama._ctx.ctx
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._capacity = llama.n_batch
        self._batch = llama_cpp.llama_batch_init(self._capacity, 0, 1)
        self._is_eog, self._logprobs, self._projector = is_eog, logprobs, projector
        self._slots = [Slot(i) for i in range(slots)]
        #: States of prompts the slots gave up, at most ``prompt_cache`` bytes (0: none kept).
        self.prompt_cache = PromptCache(llama_cpp, self._ctx, prompt_cache)
        self._waiting: deque[Sequence] = deque()  # appended by jobs; everything else under the lock
        self._active: list[Sequence] = []
        self._step_lock = threading.Lock()
        #: Guards ``_stepper`` and ``_live``; each sequence's ``bell`` is a condition on it, so a step
        #: wakes only the threads whose sequence it brought something (not every job's thread).
        self._mutex = threading.Lock()
        #: The job whose thread runs the steps (see the module's docstring); the others wait on their bell.
        self._stepper: Sequence | None = None
        self._live: set[Sequence] = set()
        self._news: list[Sequence] = []  # sequences the current step gave a token or an end
        #: ``llama_decode`` calls made (fewer than the tokens sampled when sequences share steps),
        #: and the tokens they evaluated (a cached prompt prefix is not evaluated again).
        self.steps = self.evaluated = 0

    # -- the job side --------------------------------------------------------------------------

    @contextlib.contextmanager
    def sequence(self, job: SequenceJob) -> Iterator[Sequence]:
        """Run ``job``; leaving the block ends it (the next step drops it and frees its slot)."""
        sequence = Sequence(job)
        if self._batch is None:
            raise EngineError("the model was unloaded")
        if sequence.media is None and not sequence.pending:  # nothing to evaluate: no logits to sample
            raise InvalidRequest("the prompt is empty (it has no tokens)", param="prompt")
        sequence.bell = threading.Condition(self._mutex)
        with self._mutex:
            self._live.add(sequence)
        self._waiting.append(sequence)
        try:
            yield sequence
        finally:
            with self._mutex:
                self._live.discard(sequence)
            sequence.released = True
            if sequence.media is not None:
                with self._step_lock:  # the caller frees the image prompt next: not while mtmd reads it
                    pass

    def tokens(self, sequence: Sequence, cancelled: Callable[[], bool]) -> Iterator[tuple[int, TokenLogprob | None]]:
        """``sequence``'s sampled tokens until a step ends it, or until ``cancelled()`` while waiting."""
        sampled = sequence.sampled_queue
        try:
            while True:
                if not sampled and not self._wait(sequence, cancelled):
                    return
                if not sampled:
                    continue
                item = sampled.popleft()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._resign(sequence)

    def _wait(self, sequence: Sequence, cancelled: Callable[[], bool]) -> bool:
        """Until a step brought ``sequence`` something, running steps if its thread is the stepper;
        False if ``cancelled()`` meanwhile."""
        if self._stepper is not sequence:
            release_openmp_threads()  # replaced as the stepper, if it was: see the function
        if self._takes_turn(sequence, cancelled):
            with self._step_lock:
                if not sequence.sampled_queue:  # else a step brought its token while we waited for the lock
                    _OPENMP.started = True
                    self._step()
                news, self._news = self._news, []
            with self._mutex:
                for other in news:
                    other.bell.notify()
        return bool(sequence.sampled_queue) or not cancelled()

    def _takes_turn(self, sequence: Sequence, cancelled: Callable[[], bool]) -> bool:
        """Waits (up to :data:`CANCEL_POLL`) for a step to bring ``sequence`` a token; True if it is to run
        the next step: nobody steps, it does, or the stepper ran none for CANCEL_POLL (its client
        reads slowly, so it is away sending)."""
        sampled = sequence.sampled_queue
        with self._mutex:
            steps = self.steps
            ready = sequence.bell.wait_for(lambda: sampled or self._stepper in (None, sequence), CANCEL_POLL)
            if sampled or (not ready and (self.steps != steps or self._step_lock.locked() or cancelled())):
                return False
            self._stepper = sequence
            return True

    def _resign(self, sequence: Sequence) -> None:
        with self._mutex:
            if self._stepper is sequence:
                self._stepper = None
                for other in self._live:  # a waiting job takes over the steps
                    other.bell.notify()
        release_openmp_threads()

    def close(self) -> None:
        """Free the batch (the worker closes a model only once its jobs are over)."""
        with self._step_lock:
            if self._batch is not None:
                self._lib.llama_batch_free(self._batch)
                self._batch = None
            self.prompt_cache.clear()

    # -- a step (under the step lock) ----------------------------------------------------------

    def _step(self) -> None:
        self._active = [s for s in self._active if not self._dropped(s)]
        self._admit()
        try:
            self._decode_step()
        except Exception as exc:  # hand the failure to every job in the step; the next step goes on
            for sequence in list(self._active):
                self._end(sequence, EngineError(f"llama.cpp decoding failed: {exc}"), forget=True)

    def _dropped(self, sequence: Sequence) -> bool:
        if sequence.released:
            self._free(sequence)
        return sequence.released

    def _admit(self) -> None:
        while self._waiting:
            head = self._waiting[0]
            if head.released:
                self._waiting.popleft()
                continue
            free = [slot for slot in self._slots if not slot.busy]
            if not free:
                return
            self._waiting.popleft()
            slot = _choose(free, head.pending)
            self._swap_in(slot, head.pending)
            self._place(head, slot)
            self._active.append(head)

    def _swap_in(self, slot: Slot, prompt: list[int]) -> None:
        """Save what ``slot`` holds if ``prompt`` would discard most of it, then load into it the
        saved state that shares more of ``prompt`` than the slot does, if there is one."""
        held = common_prefix(slot.cached, prompt)
        if held < len(slot.cached) / 2:
            self.prompt_cache.save(slot.seq_id, slot.cached)
        restored = self.prompt_cache.restore(slot.seq_id, prompt, held) if prompt else None
        if restored is not None:
            slot.cached = restored

    def _place(self, sequence: Sequence, slot: Slot) -> None:
        """Put ``sequence`` in ``slot``, keeping the cached prefix (all but the prompt's last token,
        whose logits are needed) when llama.cpp can cut the sequence there."""
        keep = min(common_prefix(slot.cached, sequence.pending), len(sequence.pending) - 1)
        keep = max(keep, 0)
        if not self._lib.llama_memory_seq_rm(self._memory, slot.seq_id, keep, -1):
            self._lib.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
            keep = 0
        del slot.cached[keep:]
        sequence.pending = sequence.pending[keep:]
        sequence.slot, slot.busy = slot, True
        sequence.job.reused = keep

    def _decode_step(self) -> None:
        # mtmd evaluates an image prompt with decode calls of its own, for its sequence only: the
        # others wait (their last logits are already sampled) and go on in the same step.
        for sequence in [s for s in self._active if s.media is not None]:
            try:
                self._evaluate_media(sequence)
            except Exception as exc:  # this prompt's fault (a bad image): only this job fails
                self._end(sequence, exc, forget=True)
        count = self._fill_batch()
        if count:
            status = self._lib.llama_decode(self._ctx, self._batch)
            self.steps, self.evaluated = self.steps + 1, self.evaluated + count
            if status != 0:
                raise EngineError(f"llama_decode returned {status}")
            for sequence in [s for s in self._active if s.row is not None]:
                self._sample(sequence, sequence.row)

    def _fill_batch(self) -> int:
        """Generating sequences first (one token each), then prompt chunks in the room left."""
        batch, count = self._batch, 0
        for sequence in sorted(self._active, key=lambda s: len(s.pending)):
            take = sequence.pending[: self._capacity - count]
            sequence.row = None
            if not take:
                continue
            slot = sequence.slot
            for i, token in enumerate(take):
                batch.token[count + i], batch.pos[count + i] = token, len(slot.cached) + i
                batch.seq_id[count + i][0], batch.n_seq_id[count + i], batch.logits[count + i] = slot.seq_id, 1, 0
            count += len(take)
            slot.cached.extend(take)
            del sequence.pending[: len(take)]
            if not sequence.pending:
                batch.logits[count - 1], sequence.row = 1, count - 1
        batch.n_tokens = count
        return count

    def _sample(self, sequence: Sequence, row: int) -> None:
        token = sequence.job.chain.sample(self._ctx, row)
        top = sequence.job.logprobs
        sequence.sampled_queue.append((token, None if top is None else self._logprobs.read(token, top, row)))
        self._news.append(sequence)
        sequence.sampled += 1
        if sequence.released or self._is_eog(token) or sequence.sampled >= sequence.job.budget:
            self._end(sequence, _END)
        else:
            sequence.pending.append(token)

    def _evaluate_media(self, sequence: Sequence) -> None:
        if sequence.released:  # its job is gone and frees the prompt: never touch it
            self._end(sequence, _END)
        else:
            self._evaluate_media_now(sequence)

    def _evaluate_media_now(self, sequence: Sequence) -> None:
        slot = sequence.slot
        self._lib.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
        slot.cached.clear()
        size = self._projector.evaluate(sequence.media, slot.seq_id)
        # Image positions hold no token id: -1 keeps a later prompt from matching them as cached.
        slot.cached.extend([-1] * size)
        sequence.media = None
        self._sample(sequence, -1)  # mtmd's last decode kept the last position's logits

    def _end(self, sequence: Sequence, item: object, forget: bool = False) -> None:
        sequence.sampled_queue.append(item)
        self._news.append(sequence)
        if forget and sequence.slot is not None:  # after a failed step its cells are unknown
            self._lib.llama_memory_seq_rm(self._memory, sequence.slot.seq_id, -1, -1)
            sequence.slot.cached.clear()
        self._free(sequence)
        sequence.released = True
        self._active.remove(sequence)

    @staticmethod
    def _free(sequence: Sequence) -> None:
        if sequence.slot is not None:
            sequence.slot.busy, sequence.slot.used = False, time.monotonic()
            sequence.slot = None


def release_openmp_threads() -> None:
    """Free the OpenMP worker threads the calling thread's decode steps started, if it ran any.

    llama.cpp's CPU backend runs each graph in an OpenMP parallel region, and libgomp keeps, for
    every thread that ever started one, a pool of workers. Once a process has more of those
    threads than cores, libgomp spins only briefly at each barrier before sleeping, and a step
    (hundreds of barriers) slows down by almost half (measured: 17 → 31 ms a step for 2 sequences
    on 2 cores while another live thread had decoded once). So only the stepper's thread keeps a
    pool: a thread frees its own when it stops being the stepper. A no-op without libgomp.
    """
    if getattr(_OPENMP, "started", False):
        _OPENMP.started = False
        pause = _omp_pause_resource_all()
        if pause is not None:
            pause(_OMP_PAUSE_SOFT)


#: Per thread: ``started`` once it ran a decode step (libgomp then holds a pool for it).
_OPENMP = threading.local()
_OMP_PAUSE_SOFT = 1


@functools.cache
def _omp_pause_resource_all():
    try:  # only if llama.cpp loaded it: never load an OpenMP runtime it does not use
        return ctypes.CDLL("libgomp.so.1", mode=os.RTLD_NOLOAD).omp_pause_resource_all
    except (OSError, AttributeError):
        return None


def _choose(free: list[Slot], prompt: list[int]) -> Slot:
    """The free slot holding the longest prefix of ``prompt`` if it holds over :data:`SIMILARITY`
    of it, else the least recently used free slot (llama-server's choice)."""
    best = max(free, key=lambda slot: common_prefix(slot.cached, prompt))
    if prompt and common_prefix(best.cached, prompt) > SIMILARITY * len(prompt):
        return best
    return min(free, key=lambda slot: slot.used)
