"""The vision path (mtmd + a projector beside the weights), run with a tiny random projector."""

import pytest

from dmr_core.engines.base import RunnerConfig
from dmr_core.errors import InvalidRequest
from dmr_core.generation import FinishReason, GenerationRequest, Message, Mode, SamplingParams
from dmr_llamacpp.engine import LlamaCppEngine
from tests.support.vision import data_url, png, write_tiny_projector

RED, BLUE = data_url(png((255, 0, 0))), data_url(png((0, 0, 255), stripes=True))
GREEDY = SamplingParams(max_tokens=4, temperature=0)


@pytest.fixture(scope="module")
def engine(smollm2_gguf, tmp_path_factory):
    bundle = tmp_path_factory.mktemp("bundle")  # DMR's bundle layout: weights and projector side by side
    (bundle / "model.gguf").symlink_to(smollm2_gguf)
    write_tiny_projector(bundle / "model.mmproj", text_embedding=576)
    loaded = LlamaCppEngine(str(bundle / "model.gguf"), Mode.COMPLETION, RunnerConfig(context_size=512, threads=2))
    loaded.load()
    yield loaded
    loaded.close()


def ask(engine, *images, text="What is in the picture?", **kwargs):
    kwargs.setdefault("sampling", GREEDY)
    return GenerationRequest(engine.model_path, messages=(Message("user", text, images=images),), **kwargs)


def run(engine, request):
    chunks = list(engine.generate(request, lambda: False))
    return "".join(c.text for c in chunks), chunks[-1], [lp for c in chunks for lp in c.logprobs]


def test_an_image_takes_its_tokens_in_the_prompt(engine):
    plain, one, two = engine.count_tokens(ask(engine)), engine.count_tokens(ask(engine, RED)), engine.count_tokens(ask(engine, RED, BLUE))
    assert one > plain and two - one == one - plain  # every 32x32 image costs the same


def test_generation_with_an_image_runs_and_counts_the_image(engine):
    request = ask(engine, RED)
    _, last, _ = run(engine, request)
    assert last.finish_reason in (FinishReason.LENGTH, FinishReason.STOP)
    assert last.usage.prompt_tokens == engine.count_tokens(request)


def test_different_images_reach_the_model_differently(engine):
    _, _, red = run(engine, ask(engine, RED, logprobs=5))
    _, _, blue = run(engine, ask(engine, BLUE, logprobs=5))
    _, _, red_again = run(engine, ask(engine, RED, logprobs=5))
    first = lambda lps: [(t.token, round(t.logprob, 3)) for t in lps[0].top]  # noqa: E731
    assert first(red) == first(red_again)
    assert first(red) != first(blue)


def test_a_text_prompt_after_an_image_prompt_is_not_served_from_the_image_cache(engine):
    text_only = ask(engine, logprobs=3)
    before = run(engine, text_only)
    run(engine, ask(engine, RED))
    after = run(engine, text_only)
    assert before[0] == after[0]
    assert [round(lp.logprob, 4) for lp in before[2]] == [round(lp.logprob, 4) for lp in after[2]]


@pytest.mark.parametrize("url", ["data:image/png;base64,not*base64", data_url(b"not an image at all")])
def test_undecodable_images_are_a_400(engine, url):
    with pytest.raises(InvalidRequest) as caught:
        engine.count_tokens(ask(engine, url))
    assert caught.value.param == "messages"
