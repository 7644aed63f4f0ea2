"""The batch decoder called through the engine (no server): sequences sharing decode steps give
each the tokens it would get alone, with its own sampler, grammar and log probabilities.

Two generators consumed in turn on one thread are two requests in flight: whichever asks for a
token runs the step for both, so the interleaving (and so the test) is deterministic.
"""

import json

import jsonschema
import pytest

from dmr_core.engines.base import RunnerConfig
from dmr_core.errors import InvalidRequest
from dmr_core.generation import FinishReason, GenerationRequest, Message, Mode, ResponseFormat, SamplingParams
from dmr_llamacpp.engine import LlamaCppEngine

GREEDY = SamplingParams(max_tokens=16, temperature=0, seed=7)
#: Batched and lone outputs are compared over their first tokens: a batch of several rows takes
#: another matrix-multiply path in ggml than one row, so logits differ in the last bits and a
#: near-tie much later can flip (measured: "The capital of France is" alone and batched agree on
#: 15 tokens and differ at the 16th, "...approximately 311" vs "321").
SHORT = SamplingParams(max_tokens=10, temperature=0, seed=7)


def load(gguf, parallel, prompt_cache=0):
    config = RunnerConfig(context_size=512, threads=2, parallel=parallel, prompt_cache=prompt_cache)
    engine = LlamaCppEngine(str(gguf), Mode.COMPLETION, config)
    engine.load()
    return engine


@pytest.fixture(scope="module")
def engine(smollm2_gguf):
    loaded = load(smollm2_gguf, parallel=2)
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def single(smollm2_gguf):
    loaded = load(smollm2_gguf, parallel=1)
    yield loaded
    loaded.close()


def request(engine, prompt, sampling=GREEDY, **extra):
    return GenerationRequest(engine.model_path, prompt=prompt, sampling=sampling, **extra)


def alone(engine, req):
    return list(engine.generate(req, lambda: False))


def together(engine, *requests, cancel_first_after=None):
    """Run ``requests`` interleaved, one chunk each in turn; the chunks of each."""
    streams = [engine.generate(r, lambda: False) for r in requests]
    chunks = [[] for _ in streams]
    live = set(range(len(streams)))
    while live:
        for i in sorted(live):
            chunk = next(streams[i], None)
            if chunk is None or (i == 0 and cancel_first_after is not None and len(chunks[0]) >= cancel_first_after):
                streams[i].close()  # a closed generator is a client that went away
                live.discard(i)
            else:
                chunks[i].append(chunk)
    return chunks


def text(chunks):
    return "".join(c.text for c in chunks)


def test_two_requests_share_decode_steps(engine):
    first, second = request(engine, "The capital of France is"), request(engine, "def fibonacci(n):")
    before = engine._decoder.steps
    a, b = together(engine, first, second)
    steps = engine._decoder.steps - before
    assert a[-1].usage.completion_tokens == 16 and b[-1].usage.completion_tokens == 16
    # 32 tokens sampled; alone they would take 2 × 16 decodes (prompt included)
    assert steps <= 17, steps


def test_batched_greedy_output_equals_each_request_alone(engine, single):
    prompts = ["The capital of France is", "Once upon a time, in a land"]
    batched = together(engine, *(request(engine, p, SHORT) for p in prompts))
    for prompt, chunks in zip(prompts, batched):
        expected = alone(single, request(single, prompt, SHORT))
        assert text(chunks) == text(expected)
        got, want = chunks[-1].usage, expected[-1].usage  # what each slot had cached may differ
        assert (got.prompt_tokens, got.completion_tokens) == (want.prompt_tokens, want.completion_tokens)
        assert chunks[-1].finish_reason is expected[-1].finish_reason is FinishReason.LENGTH


def test_a_third_request_waits_for_a_slot_and_completes(engine, single):
    prompts = ["One, two,", "Red, green,", "Monday, Tuesday,"]
    batched = together(engine, *(request(engine, p, SHORT) for p in prompts))
    for prompt, chunks in zip(prompts, batched):
        assert text(chunks) == text(alone(single, request(single, prompt, SHORT)))
        assert chunks[-1].usage.completion_tokens == 10


def test_a_request_leaving_mid_stream_leaves_the_other_untouched(engine, single):
    long = request(engine, "Once upon a time", SamplingParams(max_tokens=40, temperature=0))
    other = request(engine, "The capital of France is", SHORT)
    cancelled, kept = together(engine, long, other, cancel_first_after=4)
    assert len(cancelled) == 4 and all(c.finish_reason is None for c in cancelled)
    assert text(kept) == text(alone(single, request(single, "The capital of France is", SHORT)))
    # its slot is free again: two more requests still run side by side
    again = together(engine, request(engine, "One, two,"), request(engine, "Red, green,"))
    assert [c[-1].usage.completion_tokens for c in again] == [16, 16]


def test_a_stepper_that_stops_asking_does_not_hold_the_others_up(engine, single):
    # The first request's thread ran the first step, so it runs the steps; then its client stops
    # reading (the generator is left suspended), as one reading slowly would.
    stalled = engine.generate(request(engine, "Once upon a time", SamplingParams(max_tokens=40, temperature=0)), lambda: False)
    assert next(stalled).usage.completion_tokens == 0 and next(stalled).text
    other = alone(engine, request(engine, "The capital of France is", SHORT))  # would wait forever
    assert text(other) == text(alone(single, request(single, "The capital of France is", SHORT)))
    assert other[-1].usage.completion_tokens == 10
    rest = list(stalled)  # the steps of the other sampled for it meanwhile: it goes on where it stopped
    assert rest[-1].usage.completion_tokens == 40 and rest[-1].finish_reason is FinishReason.LENGTH


def test_each_sequence_keeps_its_own_grammar(engine):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}  # fmt: skip
    constrained = GenerationRequest(engine.model_path, messages=(Message("user", "Describe a cat."),),
                                    response_format=ResponseFormat("json_schema", schema),
                                    sampling=SamplingParams(max_tokens=80, temperature=0))  # fmt: skip
    free = request(engine, "1, 2, 3,", SamplingParams(max_tokens=30, temperature=0))
    structured, plain = together(engine, constrained, free)
    assert structured[-1].finish_reason is FinishReason.STOP
    jsonschema.validate(json.loads(text(structured)), schema)
    assert not text(plain).lstrip().startswith("{")  # the grammar did not leak into its neighbour


def test_log_probabilities_read_each_sequences_own_row(engine, single):
    prompts = ["The capital of France is", "def fibonacci(n):"]
    batched = together(engine, *(request(engine, p, SHORT, logprobs=3) for p in prompts))
    for prompt, chunks in zip(prompts, batched):
        got = [lp for c in chunks for lp in c.logprobs]
        want = [lp for c in alone(single, request(single, prompt, SHORT, logprobs=3)) for lp in c.logprobs]
        assert [lp.token for lp in got] == [lp.token for lp in want] and len(got) == 10
        # Greedy: each step's most likely token is the one chosen (another row would break this);
        # the runners-up can swap on near-ties, as the last bits of the logits differ (see SHORT).
        assert all(lp.top[0].token == lp.token and len(lp.top) == 3 for lp in got)
        # measured: batched values are within 0.07 nats of the lone ones; a neighbour's row would be
        # off by whole nats (its most likely token is another one)
        assert max(abs(g.logprob - w.logprob) for g, w in zip(got, want)) < 0.15


def test_a_repeated_prompt_reuses_its_cached_prefix(engine):
    prompt = "A long shared preamble about the sea, the ships and the sailors who crossed it. Then:"
    first = alone(engine, request(engine, prompt))
    before = engine._decoder.evaluated
    chunks = alone(engine, request(engine, prompt))
    # only the prompt's last token is evaluated again (its logits are needed), then 15 sampled ones
    assert engine._decoder.evaluated - before == 16
    usage = chunks[-1].usage
    assert usage.completion_tokens == 16
    # the usage says so: all but that last token came from the KV cache, and the first run's
    # prompt did not (no slot held it)
    assert usage.cached_tokens == usage.prompt_tokens - 1 and first[-1].usage.cached_tokens < usage.cached_tokens
    assert chunks[0].usage.cached_tokens == 0  # unknown before the job has its slot


def test_an_empty_prompt_is_refused_before_anything_is_sent(engine):
    # SmolLM2 adds no BOS: "" has no token, so there would be no logits to sample from
    stream = engine.generate(request(engine, ""), lambda: False)
    with pytest.raises(InvalidRequest, match="prompt is empty"):
        next(stream)


# -- prompt reuse across interleaved conversations --------------------------------------------------

#: Every conversation opens the same way, as chats share their template's first tokens and system prompt.
OPENING = "System: answer in one short sentence.\n"
TOPICS = {"A": ("lighthouse", "keeper", "lamp"), "B": ("orchard", "farmer", "ladder"),
          "C": ("observatory", "astronomer", "comet")}  # fmt: skip


class Conversation:
    """A chat as raw completion prompts: each turn appends the reply and a new question (~150 tokens to start)."""

    def __init__(self, name):
        place, person, thing = TOPICS[name]
        lines = [f"Note {i}: the {person} of the {place} checked the {thing} at hour {i}." for i in range(10)]
        self.prompt, self.prompts = OPENING + " ".join(lines) + "\nQ: What is this about?\nA:", []

    def turn(self, engine):
        if self.prompts:
            self.prompt += "\nQ: Say more.\nA:"
        chunks = alone(engine, request(engine, self.prompt, SHORT))
        self.prompts.append(chunks[-1].usage.prompt_tokens)
        self.prompt += text(chunks)
        return chunks


def test_a_conversation_keeps_its_slot_while_another_runs_in_between(engine):
    a, b = Conversation("A"), Conversation("B")
    a.turn(engine), b.turn(engine)  # B shares only the opening with A's slot: it takes the other slot
    usage = a.turn(engine)[-1].usage
    assert usage.cached_tokens >= a.prompts[0] - 3, (usage, a.prompts)
    assert b.turn(engine)[-1].usage.cached_tokens >= b.prompts[0] - 3


def test_an_evicted_conversation_resumes_from_the_prompt_cache(smollm2_gguf):
    cached = load(smollm2_gguf, parallel=2, prompt_cache=64 * 2**20)
    try:
        a, b, c = Conversation("A"), Conversation("B"), Conversation("C")
        for conversation in (a, b, c):  # C takes the least recently used slot: A's
            assert conversation.turn(cached)[-1].usage.cached_tokens < 15  # the opening at most
        cache = cached._decoder.prompt_cache
        assert len(cache.entries) == 1 and 0 < cache.used <= cache.limit
        usage = a.turn(cached)[-1].usage
        assert usage.cached_tokens >= a.prompts[0] - 3, (usage, a.prompts)
        assert usage.cached_tokens < usage.prompt_tokens
    finally:
        cached.close()


def test_greedy_output_is_the_same_with_a_restored_prefix(smollm2_gguf, single):
    cached = load(smollm2_gguf, parallel=1, prompt_cache=64 * 2**20)
    try:
        a, b = Conversation("A"), Conversation("B")
        a.turn(cached), b.turn(cached)  # one slot: B evicts A, whose state goes to the cache
        a.prompt += "\nQ: Say more.\nA:"
        restored = alone(cached, request(cached, a.prompt, SHORT))
        assert restored[-1].usage.cached_tokens >= a.prompts[0] - 3
        alone(single, request(single, Conversation("C").prompt, SHORT))  # the other engine's slot: unrelated
        cold = alone(single, request(single, a.prompt, SHORT))
        assert cold[-1].usage.cached_tokens < 15
        assert text(restored) == text(cold) and len(text(cold)) > 0
    finally:
        cached.close()


def test_a_turn_that_waits_for_a_slot_gets_its_prefix_back_when_one_frees(smollm2_gguf):
    cached = load(smollm2_gguf, parallel=2, prompt_cache=64 * 2**20)
    try:
        a, b = Conversation("A"), Conversation("B")
        a.turn(cached)
        a.prompt += "\nQ: Say more.\nA:"
        long = request(cached, "Once upon a time", SamplingParams(max_tokens=30, temperature=0))
        # the long job takes the empty slot, B the one holding A (saved first); A's turn waits for a slot
        _, _, waited = together(cached, long, request(cached, b.prompt, SHORT), request(cached, a.prompt, SHORT))
        assert waited[-1].usage.cached_tokens >= a.prompts[0] - 3, (waited[-1].usage, a.prompts)
    finally:
        cached.close()


@pytest.mark.parametrize("asked, per_sequence", [(4096, 4096), (4100, 4352), (300, 512)])
def test_each_slot_gets_the_configured_context_rounded_as_llama_cpp_rounds_it(smollm2_gguf, asked, per_sequence):
    config = RunnerConfig(context_size=asked, threads=2, parallel=2, runtime_flags=("--batch-size", "256"))
    engine = LlamaCppEngine(str(smollm2_gguf), Mode.COMPLETION, config)
    engine.load()
    try:
        settings = engine.effective_settings()
        # The first context Llama() makes is cut to a batch's size (it is replaced at once), but
        # neither the batch size nor the sizes of the context that replaces it are.
        assert settings["n_ctx"] == 2 * per_sequence and engine._n_ctx == per_sequence
        assert settings["n_batch"] == min(256, asked)
    finally:
        engine.close()


def test_the_first_context_is_cut_only_where_it_is_replaced():
    from dmr_llamacpp.batch import first_context_size

    assert first_context_size(8192, 2, 512) == 512
    assert first_context_size(8192, 2, 2048) == 2048  # Llama() cuts n_batch to the context: keep it whole
    assert first_context_size(8192, 1, 512) == 8192  # one slot: that context is the one used
    assert first_context_size(0, 2, 512) == 0  # the model's own size: known only once loaded
    assert first_context_size(100, 2, 512) == 100
