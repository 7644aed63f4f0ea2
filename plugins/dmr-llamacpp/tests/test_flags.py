"""llama-server runtime flags → llama-cpp-python settings (no model loaded)."""

import llama_cpp
import pytest

from dmr_core.engines.base import RunnerConfig
from dmr_core.errors import InvalidRequest
from dmr_core.generation import GenerationRequest, SamplingParams
from dmr_llamacpp import flags
from dmr_llamacpp.engine import LlamaCppEngine


def test_flags_become_llama_keyword_arguments():
    given = ["--threads", "3", "-tb=5", "-b", "64", "-ub", "32", "-ngl", "0", "--no-mmap", "--mlock",
             "-ctk", "q8_0", "--cache-type-v=F16", "--rope-freq-base", "10000", "--rope-freq-scale", "0.5",
             "-nkvo", "-sm", "row", "-mg", "1", "-ts", "3,1", "--rope-scaling", "yarn", "--jinja"]  # fmt: skip
    assert flags.llama_kwargs(given) == {
        "n_threads": 3, "n_threads_batch": 5, "n_batch": 64, "n_ubatch": 32, "n_gpu_layers": 0,
        "use_mmap": False, "use_mlock": True, "type_k": llama_cpp.GGML_TYPE_Q8_0, "type_v": llama_cpp.GGML_TYPE_F16,
        "rope_freq_base": 10000.0, "rope_freq_scale": 0.5, "offload_kqv": False,
        "split_mode": llama_cpp.LLAMA_SPLIT_MODE_ROW, "main_gpu": 1, "tensor_split": [3.0, 1.0],
        "rope_scaling_type": llama_cpp.LLAMA_ROPE_SCALING_TYPE_YARN,
    }  # fmt: skip


def test_flags_override_the_engines_own_arguments_and_later_flags_win():
    kwargs = flags.llama_kwargs(["-t", "2", "--threads", "4", "-ngl", "all"], n_threads=8, n_gpu_layers=0, verbose=False)
    assert kwargs == {"n_threads": 4, "n_gpu_layers": -1, "verbose": False}
    assert flags.llama_kwargs(["--threads", "-1"], n_threads=8) == {"n_threads": 8}  # -1: llama.cpp's own choice


@pytest.mark.parametrize(("given", "expected"), [
    (["-fa"], True), (["--flash-attn", "on"], True), (["-fa=off"], False), (["-fa", "-b", "8"], True),
])  # fmt: skip
def test_flash_attention_is_a_switch_or_takes_a_word(given, expected):
    assert flags.llama_kwargs(given)["flash_attn"] is expected


def test_flash_attention_auto_leaves_the_engine_default():
    assert "flash_attn" not in flags.llama_kwargs(["--flash-attn", "auto"])


def test_cache_type_and_enum_numbers_match_llama_cpp():
    for name, number in flags.CACHE_TYPES.items():
        exported = getattr(llama_cpp, f"GGML_TYPE_{name.upper()}", None)
        assert exported in (None, number), name  # bf16 (30) is not exported by llama_cpp
    for name, number in flags.SPLIT_MODES.items():
        assert getattr(llama_cpp, f"LLAMA_SPLIT_MODE_{name.upper()}") == number
    for name, number in flags.ROPE_SCALINGS.items():
        assert getattr(llama_cpp, f"LLAMA_ROPE_SCALING_TYPE_{name.upper()}") == number


def test_every_llama_keyword_is_one_llama_takes():
    import inspect

    accepted = set(inspect.signature(llama_cpp.Llama.__init__).parameters)  # it also swallows **kwargs
    assert {f.key for f in flags.FLAGS if f.target == "llama"} <= accepted


def test_sampling_flags_are_defaults_a_request_can_override():
    defaults = flags.sampling_defaults(["--temp", "0.3", "--top-k", "7", "--top-p", "0.9", "--min-p", "0.1",
                                        "--repeat-penalty", "1.1", "-s", "42", "-n", "16"])  # fmt: skip
    assert defaults == {"temperature": 0.3, "top_k": 7, "top_p": 0.9, "min_p": 0.1, "repeat_penalty": 1.1,
                        "seed": 42, "max_tokens": 16}  # fmt: skip
    request = GenerationRequest(model_path="m", prompt="hi", sampling=SamplingParams(temperature=1.0))
    applied = flags.with_sampling_defaults(request, defaults).sampling
    assert applied.temperature == 1.0 and applied.seed == 42 and applied.top_k == 7 and applied.max_tokens == 16
    assert flags.sampling_defaults(["--seed", "-1"]) == {}  # llama-server's "random seed"


def test_parallel_goes_to_the_runner_config_when_it_has_the_field():
    config = RunnerConfig(runtime_flags=("-np", "3"))
    if "parallel" in RunnerConfig.__dataclass_fields__:
        flags.check(config.runtime_flags)
        assert flags.runner_config(config).parallel == 3
    else:
        with pytest.raises(InvalidRequest, match="--parallel"):
            flags.check(config.runtime_flags)


def test_the_context_size_flag_is_read_but_left_to_the_pool():
    assert flags.llama_kwargs(["-c", "8192"]) == {}
    with pytest.raises(InvalidRequest, match="-c"):
        flags.check(["-c", "lots"])


@pytest.mark.parametrize(("given", "message"), [
    (["--cont-batching"], "--cont-batching: not supported by the llama.cpp engine (llama-cpp-python has no"),
    (["--keep", "4"], "--keep: not supported"),
    (["--reasoning-budget", "0"], "--reasoning-budget: not supported"),
    (["--defrag-thold", "0.1"], "--defrag-thold: not supported"),
    (["--threads"], "--threads: needs a value"),
    (["--threads", "--mlock"], "--threads: needs a value"),
    (["-b", "many"], "-b: 'many' is not an integer"),
    (["-b", "0"], "-b: '0' is out of range"),
    (["--top-p", "2"], "--top-p: '2' is out of range"),
    (["-ctk", "q9"], "-ctk: 'q9' is not one of"),
    (["-sm", "diagonal"], "-sm: 'diagonal' is not one of"),
    (["-fa", "maybe"], "value 'maybe' follows no flag"),  # a bare -fa, then a stray word
])  # fmt: skip
def test_flags_without_an_equivalent_or_a_good_value_are_refused(given, message):
    with pytest.raises(InvalidRequest) as refused:
        LlamaCppEngine.check_runtime_flags(tuple(given))
    assert message in refused.value.message and refused.value.status == 400
