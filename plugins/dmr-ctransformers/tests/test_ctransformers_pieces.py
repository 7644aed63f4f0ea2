"""Pieces longer than 32 bytes come out whole from the ctransformers engine too.

llama-cpp-python drops them (a 32-byte buffer, see dmr_llamacpp/pieces.py); ctransformers'
``ctransformers_llm_detokenize`` returns the piece string itself (its bundled llama.cpp retries
with the size it needs), so the engine needs no fix: this keeps it so.
"""

import re

import pytest

from dmr_core.engines.base import RunnerConfig
from dmr_core.generation import GenerationRequest, Mode, SamplingParams
from dmr_ctransformers.engine import CTransformersEngine
from tests.support import tiny_spm_llama

#: The model's only plain pieces, 34 to 79 bytes each: greedy decoding can only pick among them.
LONG_WORDS = tuple("▁" + letter * (33 + 3 * i) for i, letter in enumerate("abcdefghijklmnop"))


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tiny_spm_llama, "WORDS", LONG_WORDS)
        path = tiny_spm_llama.write_tiny_llama_gguf(tmp_path_factory.mktemp("ct-long") / "long-words.gguf")
    loaded = CTransformersEngine(str(path), Mode.COMPLETION, RunnerConfig(context_size=128, threads=1))
    loaded.load()
    yield loaded
    loaded.close()


def test_each_long_piece_detokenizes_in_full(engine):
    first = engine._llm.vocab_size - len(LONG_WORDS)
    for token, word in enumerate(LONG_WORDS, start=first):
        assert engine._llm.ctransformers_llm_detokenize(token) == word.replace("▁", " ").encode(), token


def test_a_generation_of_long_pieces_keeps_them(engine):
    request = GenerationRequest(engine.model_path, prompt="a", sampling=SamplingParams(max_tokens=6, temperature=0))
    chunks = list(engine.generate(request, lambda: False))
    text = "".join(c.text for c in chunks)
    assert chunks[-1].usage.completion_tokens == 6
    assert re.fullmatch(r"( ([a-p])\2{32,})+", text), repr(text)
    assert len(re.findall(r" [a-p]+", text)) == 6  # six tokens, none of them empty
