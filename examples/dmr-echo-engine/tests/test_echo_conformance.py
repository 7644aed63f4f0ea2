"""The echo engine passes dmr's engine conformance suite, plus a few checks of its own."""

import sys
from pathlib import Path

import pytest

try:
    import dmr_echo  # noqa: F401  (installed: pip install examples/dmr-echo-engine)
except ImportError:  # run from a dmr checkout without installing the example
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dmr_core.conformance import EngineConformance  # noqa: E402
from dmr_core.engines.base import RunnerConfig  # noqa: E402
from dmr_core.errors import ModelLoadFailed  # noqa: E402
from dmr_core.generation import GenerationRequest, Mode, SamplingParams  # noqa: E402
from dmr_echo.engine import EchoEngine  # noqa: E402
from dmr_echo.model import write_echo_model  # noqa: E402

pytest_plugins = ["dmr_core.testing"]


class TestEchoConformance(EngineConformance):
    prompt = "the quick brown fox jumps over the lazy dog"
    plugin_module = "dmr_echo"  # the entry point's module (works whether or not the example is installed)
    supports_token_ids = False  # its tokens are words
    supports_logit_bias = False  # (which have no ids to bias)

    @pytest.fixture(scope="class")
    @classmethod
    def engine_class(cls):
        return EchoEngine

    @pytest.fixture(scope="class")
    @classmethod
    def model_path(cls, tmp_path_factory):
        return write_echo_model(tmp_path_factory.mktemp("echo") / "echo.gguf")


@pytest.fixture
def echo(tmp_path):
    engine = EchoEngine(str(write_echo_model(tmp_path / "echo.gguf", context_length=64)), Mode.COMPLETION,
                        RunnerConfig())  # fmt: skip
    engine.load()
    return engine


def test_replays_the_prompt_word_by_word(echo):
    sampling = SamplingParams(max_tokens=5, temperature=0)
    request = GenerationRequest(echo.model_path, prompt="one two three", sampling=sampling)
    chunks = list(echo.generate(request, lambda: False))
    assert [c.text for c in chunks[1:-1]] == [" one", " two", " three", " one", " two"]


def test_stop_string_spanning_tokens_is_held_back(echo):
    request = GenerationRequest(echo.model_path, prompt="one two three",
                                sampling=SamplingParams(max_tokens=9, temperature=0, stop=("o thr",)))  # fmt: skip
    chunks = list(echo.generate(request, lambda: False))
    assert "".join(c.text for c in chunks) == " one tw"
    assert chunks[-1].stop_sequence == "o thr"


def test_context_window_comes_from_the_model(echo):
    assert echo.count_tokens(GenerationRequest(echo.model_path, prompt="a " * 63)) == 63
    last = list(echo.generate(GenerationRequest(echo.model_path, prompt="a " * 60), lambda: False))[-1]
    assert last.usage.completion_tokens == 4  # the 64-word window is full


def test_other_gguf_files_are_refused(smollm2_gguf):
    with pytest.raises(ModelLoadFailed):
        EchoEngine(str(smollm2_gguf), Mode.COMPLETION, RunnerConfig()).load()
