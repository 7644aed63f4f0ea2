"""The ctransformers engine called directly (no server), on a tiny random SentencePiece GGUF."""

import struct

import pytest

from dmr_core.engines.base import RunnerConfig
from dmr_core.errors import ContextLengthExceeded, ModelLoadFailed, UnsupportedParameter
from dmr_core.generation import FinishReason, GenerationRequest, Message, Mode, SamplingParams
from dmr_ctransformers import modelfile
from dmr_ctransformers.engine import CTransformersEngine


@pytest.fixture(scope="module")
def engine(tiny_spm_gguf):
    loaded = CTransformersEngine(str(tiny_spm_gguf), Mode.COMPLETION, RunnerConfig(context_size=128, threads=1))
    loaded.load()
    yield loaded
    loaded.close()


def run(engine, cancelled=lambda: False, **kwargs):
    chunks = list(engine.generate(GenerationRequest(engine.model_path, **kwargs), cancelled))
    assert chunks[0].usage is not None and chunks[0].usage.completion_tokens == 0 and not chunks[0].text
    assert chunks[-1].finish_reason is not None and chunks[-1].usage is not None
    assert all(c.finish_reason is None for c in chunks[:-1])
    return "".join(c.text for c in chunks), chunks[-1]


GREEDY = dict(prompt="the cat", sampling=SamplingParams(max_tokens=12, temperature=0))


def test_greedy_generation_is_deterministic_and_counts_tokens(engine):
    first, last = run(engine, **GREEDY)
    second, _ = run(engine, **GREEDY)
    assert first == second and first.strip()
    assert last.finish_reason is FinishReason.LENGTH
    assert last.usage.completion_tokens == 12
    assert last.usage.prompt_tokens == len(engine.prompt_tokens(GenerationRequest(engine.model_path, prompt="the cat")))
    assert engine._llm.context_length == 128


def test_prompt_tokens_survive_ctransformers_short_buffer(engine):
    # SentencePiece pieces one character each, plus BOS and the leading space: more tokens than
    # characters, which LLM.tokenize()'s buffer of len(text) + 1 would overflow.
    tokens = engine.prompt_tokens(GenerationRequest(engine.model_path, prompt="the hat"))
    assert tokens[0] == engine._llm.bos_token_id and len(tokens) > len("the hat") + 1


def test_stop_string_cuts_output(engine):
    text, _ = run(engine, **GREEDY)
    stop = text.strip().split()[1]
    at = text.index(stop)
    stopped, last = run(engine, prompt="the cat", sampling=SamplingParams(max_tokens=12, temperature=0, stop=(stop,)))
    assert last.finish_reason is FinishReason.STOP and last.stop_sequence == stop
    assert stopped == text[:at]
    assert last.usage.completion_tokens < 12


def test_cancellation_stops_within_one_token(engine):
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) >= 3

    _, last = run(engine, cancelled=cancelled, prompt="the", sampling=SamplingParams(max_tokens=50, temperature=0))
    assert last.finish_reason is FinishReason.CANCELLED
    assert last.usage.completion_tokens == 3


def test_sampling_with_a_seed_is_reproducible(engine):
    args = dict(prompt="a dog", sampling=SamplingParams(max_tokens=8, temperature=0.9, top_k=20, top_p=0.9,
                                                         repeat_penalty=1.2, seed=42))  # fmt: skip
    assert run(engine, **args)[0] == run(engine, **args)[0]


def test_chat_without_a_template_uses_the_plain_prompt(engine):
    request = GenerationRequest(engine.model_path, messages=(Message("system", "be brief"), Message("user", "hi")))
    assert engine._render(request) == "System: be brief\nUser: hi\nAssistant:"
    _, last = run(engine, messages=request.messages, sampling=SamplingParams(max_tokens=3, temperature=0))
    assert last.usage.completion_tokens == 3


def test_unsupported_parameters_are_refused(engine):
    with pytest.raises(UnsupportedParameter) as info:
        run(engine, prompt="x", sampling=SamplingParams(presence_penalty=0.5))
    assert info.value.param == "presence_penalty"


def test_prompt_longer_than_context_is_refused(engine):
    with pytest.raises(ContextLengthExceeded):
        run(engine, prompt="the " * 100, sampling=SamplingParams(max_tokens=4))


def test_bpe_gguf_is_refused_before_native_code(smollm2_gguf):
    engine = CTransformersEngine(str(smollm2_gguf), Mode.COMPLETION, RunnerConfig(threads=1))
    with pytest.raises(ModelLoadFailed, match="tokenizer is 'gpt2'.*SentencePiece"):
        engine.load()
    assert not hasattr(engine, "_llm")


@pytest.mark.parametrize("version", [1, 4])
def test_gguf_versions_other_than_2_and_3_are_refused(tiny_spm_gguf, tmp_path, version):
    data = bytearray(tiny_spm_gguf.read_bytes())
    data[4:8] = struct.pack("<I", version)
    path = tmp_path / "other.gguf"
    path.write_bytes(data)
    with pytest.raises(ModelLoadFailed, match=f"version {version}"):
        modelfile.inspect(path)


def test_ggml_model_type_comes_from_the_bundle_config(tmp_path):
    model = tmp_path / "model" / "model.bin"
    model.parent.mkdir()
    model.write_bytes(struct.pack("<I", 0x67676A74) + b"\0" * 60)  # 'ggjt'
    with pytest.raises(ModelLoadFailed, match="no known architecture"):
        modelfile.inspect(model)
    (tmp_path / "config.json").write_text('{"format": "ggml", "architecture": "gpt-neox"}')
    assert modelfile.inspect(model).model_type == "gpt_neox"
