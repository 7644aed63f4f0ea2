"""The model ``bench/gpu_check.sh`` measures with (``bench/random_llama.py``): no GPU runs it in CI,
so this keeps its model step honest. The ``--small`` size must load in llama.cpp with SmolLM2's
exact vocabulary, and greedy decoding must run the full length, every token bringing text."""

from __future__ import annotations

import pytest

from bench import random_llama

N_TOKENS = 96
SAMPLE = "<|im_start|>user\nHello, wörld! 日本語 — def f():\n        return 1<|im_end|>\n"
#: Ids the writer must silence: <|endoftext|>, <|im_start|>, <|im_end|> (EOS), "âĢ" (bytes e2 80:
#: the start of a 3-byte character), "Ã" (byte c3 alone), 18864 (a newline and 39 spaces).
MUST_BE_SILENT = (0, 1, 2, 321, 142, 18864)
#: " the", eight spaces.
MUST_SPEAK = (260, 353)


@pytest.fixture(scope="module")
def small_model(smollm2_gguf, tmp_path_factory):
    return random_llama.write(tmp_path_factory.mktemp("random-llama") / "small.gguf", random_llama.SMALL, smollm2_gguf)


@pytest.fixture(scope="module")
def llamas(small_model, smollm2_gguf):
    """(the random model, SmolLM2's vocabulary), loaded by llama.cpp in this process."""
    import llama_cpp
    from dmr_llamacpp import extra_buffers

    # Plain CPU buffers: this tests the model file, not this CPU's AMX path (it faults on some VMs).
    with extra_buffers.model_defaults(False):
        random = llama_cpp.Llama(str(small_model), n_ctx=256, n_threads=1, verbose=False)
        smollm2 = llama_cpp.Llama(str(smollm2_gguf), vocab_only=True, verbose=False)
    yield random, smollm2
    random.close()
    smollm2.close()


def test_llama_cpp_reads_smollm2s_vocabulary_and_template(llamas):
    random, smollm2 = llamas
    assert random.n_vocab() == smollm2.n_vocab() == 49152
    assert random.tokenize(SAMPLE.encode(), add_bos=False, special=True) == smollm2.tokenize(
        SAMPLE.encode(), add_bos=False, special=True
    )
    assert random.token_eos() == smollm2.token_eos() == 2
    assert random.metadata["tokenizer.chat_template"] == smollm2.metadata["tokenizer.chat_template"]


def test_greedy_decoding_runs_the_full_length_with_text_in_every_token(llamas):
    import llama_cpp

    random, _ = llamas
    prompt = random.tokenize(SAMPLE.encode(), add_bos=False, special=True)
    generated = []
    for token in random.generate(prompt, temp=0.0):
        generated.append(token)
        if len(generated) == N_TOKENS:
            break
    assert not [t for t in generated if llama_cpp.llama_vocab_is_eog(random._model.vocab, t)]
    pieces = [random.detokenize([t]) for t in generated]
    assert all(piece and piece.decode("utf-8") for piece in pieces), pieces


def test_tokens_that_end_or_blur_a_measurement_get_a_zero_logit(llamas):
    """Their output rows are zero, so llama.cpp's logit for them is exactly 0 whatever the input."""
    import llama_cpp
    import numpy as np

    random, _ = llamas
    random.reset()
    random.eval(random.tokenize(SAMPLE.encode(), add_bos=False, special=True))
    last = llama_cpp.llama_get_logits_ith(random._ctx.ctx, -1)  # (Llama.scores: only with logits_all)
    logits = np.ctypeslib.as_array(last, shape=(random.n_vocab(),)).copy()
    assert not logits[list(MUST_BE_SILENT)].any()
    assert logits[list(MUST_SPEAK)].all()
    silent = np.flatnonzero(logits == 0)
    assert 17 <= len(silent) < 1000  # every control token, and not much of the vocabulary besides
