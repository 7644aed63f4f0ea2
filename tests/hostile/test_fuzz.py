"""Every dialect's main endpoints, fuzzed from their own schemas against a real server: no 5xx,
every error in the dialect's shape (see ``fuzzing.py``). 50 fixed cases per dialect here; ``slow``
runs 1,000 new ones per dialect."""

from __future__ import annotations

import pytest
import requests
from hypothesis import strategies as st

from dmr_core import openapi
from dmr_core.dialects.anthropic import schema as anthropic
from dmr_core.dialects.ollama import schema as ollama
from dmr_core.dialects.openai import schema as openai
from tests.hostile.conftest import TINY
from tests.hostile.fuzzing import JSON_SCHEMAS, JSON_VALUES, Target, fuzz

TOOLS = st.lists(st.builds(
    lambda name, schema: {"type": "function", "function": {"name": name, "parameters": schema}},
    st.text(max_size=8), JSON_SCHEMAS), max_size=2)  # fmt: skip
OPENAI_CHAT = (
    ("response_format", st.one_of(st.just({"type": "json_object"}), JSON_VALUES, st.builds(
        lambda schema, strict: {"type": "json_schema",
                                "json_schema": {"name": "x", "schema": schema, "strict": strict}},
        JSON_SCHEMAS, st.booleans()))),
    ("tools", TOOLS),
    ("tool_choice", st.one_of(st.sampled_from(["auto", "none", "required", "bogus"]), st.builds(
        lambda name: {"type": "function", "function": {"name": name}}, st.text(max_size=8)))),
    ("logprobs", st.booleans()), ("top_logprobs", st.integers(0, 20)), ("stream", st.booleans()),
    ("stream_options", st.just({"include_usage": True})),
    ("messages", st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant", "tool"]),
        "content": st.one_of(st.text(max_size=30), st.lists(st.one_of(
            st.builds(lambda t: {"type": "text", "text": t}, st.text(max_size=20)),
            st.builds(lambda u: {"type": "image_url", "image_url": {"url": u}}, st.text(max_size=30)),
            st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=2)), max_size=3))}), min_size=1, max_size=4)),
)  # fmt: skip
OPENAI_COMPLETION = (("logprobs", st.integers(0, 5)), ("echo", st.booleans()), ("stream", st.booleans()),
                     ("prompt", st.one_of(st.lists(st.integers(-5, 400), max_size=8), st.text(max_size=40))),
                     ("suffix", st.text(max_size=10)))  # fmt: skip
OPENAI_EMBEDDING = (("input", st.one_of(st.lists(st.integers(-5, 400), max_size=8), st.lists(st.text(max_size=20),
                    max_size=4))), ("encoding_format", st.sampled_from(["float", "base64"])),
                    ("dimensions", st.integers(1, 100)))  # fmt: skip
ANTHROPIC = (
    ("tools", st.lists(st.builds(lambda name, schema: {"name": name, "input_schema": schema},
                                 st.text(max_size=8), JSON_SCHEMAS), max_size=2)),
    ("tool_choice", st.builds(lambda kind, name: {"type": kind, "name": name},
                              st.sampled_from(["auto", "any", "tool", "none"]), st.text(max_size=8))),
    ("output_config", st.builds(lambda schema: {"format": {"type": "json_schema", "schema": schema}}, JSON_SCHEMAS)),
    ("thinking", st.builds(lambda kind, budget: {"type": kind, "budget_tokens": budget},
                           st.sampled_from(["enabled", "disabled", "adaptive", "x"]), st.integers(-5, 5000))),
    ("stream", st.booleans()), ("stop_sequences", st.lists(st.text(max_size=5), max_size=3)),
    ("system", st.one_of(st.text(max_size=20), st.lists(st.builds(lambda t: {"type": "text", "text": t},
                                                                   st.text(max_size=10)), max_size=2))),
)  # fmt: skip
OLLAMA = (
    ("format", st.one_of(st.just("json"), JSON_SCHEMAS, st.text(max_size=5))), ("tools", TOOLS),
    ("think", st.one_of(st.booleans(), st.sampled_from(["low", "high", "max", "x"]))),
    ("stream", st.booleans()), ("logprobs", st.booleans()), ("top_logprobs", st.integers(-2, 30)),
    ("images", st.lists(st.text(max_size=30), max_size=2)), ("raw", st.booleans()),
    ("keep_alive", st.one_of(st.sampled_from(["5m", "-1", "0", "1h", "x", "10s"]), st.integers(-5, 600))),
    ("context", st.lists(st.integers(-5, 400), max_size=5)), ("template", st.text(max_size=30)),
    ("truncate", st.booleans()), ("input", st.one_of(st.text(max_size=20), st.lists(st.text(max_size=10), max_size=3))),
)  # fmt: skip
#: A registry that cannot be reached is a 502, and rightly so.
REGISTRY = frozenset({502})
TARGETS = {
    "openai": [Target("POST", "/engines/v1/chat/completions", openai.ChatCompletionRequest, overlay=OPENAI_CHAT),
               Target("POST", "/engines/v1/completions", openai.CompletionRequest, overlay=OPENAI_COMPLETION),
               Target("POST", "/v1/embeddings", openai.EmbeddingRequest, overlay=OPENAI_EMBEDDING)],
    "anthropic": [Target("POST", "/v1/messages", anthropic.MessagesRequest, overlay=ANTHROPIC),
                  Target("POST", "/v1/messages/count_tokens", anthropic.CountTokensRequest, overlay=ANTHROPIC)],
    "ollama": [Target("POST", "/api/chat", ollama.ChatRequest, overlay=OLLAMA),
               Target("POST", "/api/generate", ollama.GenerateRequest, overlay=OLLAMA),
               Target("POST", "/api/embed", ollama.EmbedRequest, overlay=OLLAMA),
               Target("POST", "/api/show", ollama.ShowRequest)],
    "native": [Target("POST", "/models/create", openapi.CreateModelRequest, name_field="from", allowed_5xx=REGISTRY),
               Target("POST", "/engines/unload", openapi.UnloadRequest, name_field="backend"),
               Target("POST", "/engines/_configure", openapi.ConfigureRequest),
               Target("GET", "/models/{name}", openapi.CreateModelRequest),
               Target("DELETE", "/models/{name}", openapi.CreateModelRequest)],
}  # fmt: skip
#: Mostly the served model (to reach generation), sometimes a name that is not there.
MODEL_NAMES = st.one_of(st.just(TINY), st.just(TINY), st.just(TINY), st.text(max_size=30))
#: create pulls: a local registry that refuses at once, or names that do not parse (never the
#: served model: DELETE /models/{name} would remove it).
PULL_NAMES = st.one_of(st.just("127.0.0.1:1/nothing/here"), st.text(max_size=30)).filter(
    lambda name: "tiny" not in name.lower())


def _run(hostile, dialect: str, examples: int, derandomize: bool) -> None:
    names = PULL_NAMES if dialect == "native" else MODEL_NAMES
    statuses, problems = fuzz(hostile.server.url, TARGETS[dialect], dialect, names, examples, derandomize)
    print(f"{dialect}: {examples} cases, statuses {dict(statuses)}")
    assert sum(statuses.values()) == examples
    assert not problems, f"{len(problems)} of {examples} cases failed:\n" + "\n".join(problems[:20])
    # The valid bodies got through to the model (or, for pulls, to the registry), not only the broken ones.
    assert sum(n for s, n in statuses.items() if s in (200, 202, 502)) >= examples // 20, statuses
    assert hostile.sentinel.read_text() == "must survive\n"
    assert requests.post(hostile.server.url + "/api/show", json={"model": TINY}, timeout=30).status_code == 200


@pytest.mark.parametrize("dialect", sorted(TARGETS))
def test_fuzz_small(hostile, dialect):
    _run(hostile, dialect, 50, derandomize=True)  # the same cases every run: the default suite never flakes


@pytest.mark.slow
@pytest.mark.parametrize("dialect", sorted(TARGETS))
def test_fuzz_thousand(hostile, dialect):
    _run(hostile, dialect, 1000, derandomize=False)  # new cases each run
