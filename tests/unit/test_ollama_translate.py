"""Ollama wire <-> internal representation, on bodies the official ``ollama`` client really sends.

Requests: ``ollama.Client`` (on an in-process httpx transport) sends a body, which goes through
``schema`` and ``translate.to_*`` as the routes do. Replies: hand-made chunk sequences go through
``stream_lines`` / ``whole_reply`` and are read back by the client itself.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import ollama
import pytest
from pydantic import BaseModel

from dmr_core.dialects.ollama import models, progress, schema, translate
from dmr_core.dialects.ollama.modelinfo import read_model_info
from dmr_core.distribution.progress import LayerProgress, ProgressEvent
from dmr_core.errors import EngineError, InvalidRequest
from dmr_core.generation import (
    FinishReason,
    GenerationChunk,
    TokenLogprob,
    ToolCallDelta,
    ToolChoice,
    TopLogprob,
    Usage,
)

MODEL = "ai/smollm2"
PLAIN = frozenset({"completion", "embedding"})
EVERYTHING = frozenset({"completion", "embedding", "tools", "vision", "insert", "thinking"})
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16

CANNED_CHAT = {"model": MODEL, "created_at": "2025-01-01T00:00:00.0Z", "message": {"role": "assistant", "content": "ok"},
               "done": True, "done_reason": "stop"}  # fmt: skip
CANNED_GENERATE = {"model": MODEL, "created_at": "2025-01-01T00:00:00.0Z", "response": "ok", "done": True}


class FakeOllama:
    """Records what the client sends; answers with ``responder(path, body) -> (content_type, text)``."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.responder: Callable[[str, dict], tuple[str, str]] = self.canned

    @staticmethod
    def canned(path: str, body: dict) -> tuple[str, str]:
        answer = CANNED_CHAT if path == "/api/chat" else CANNED_GENERATE
        return "application/json", json.dumps(answer) + "\n"

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        self.bodies.append(body)
        self.paths.append(request.url.path)
        content_type, text = self.responder(request.url.path, body)
        return httpx.Response(200, headers={"content-type": content_type}, content=text.encode())

    @property
    def last(self) -> dict[str, Any]:
        return self.bodies[-1]


@pytest.fixture
def fake() -> FakeOllama:
    return FakeOllama()


@pytest.fixture
def client(fake: FakeOllama) -> ollama.Client:
    return ollama.Client(host="http://test", transport=httpx.MockTransport(fake.handle))


def sent_chat(fake, client, **kwargs) -> schema.ChatRequest:
    kwargs.setdefault("messages", [{"role": "user", "content": "Hello"}])
    client.chat(model=MODEL, stream=False, **kwargs)
    assert fake.paths[-1] == "/api/chat"
    return schema.ChatRequest.model_validate(fake.last)


def sent_generate(fake, client, **kwargs) -> schema.GenerateRequest:
    kwargs.setdefault("prompt", "Once upon a time")
    client.generate(model=MODEL, stream=False, **kwargs)
    assert fake.paths[-1] == "/api/generate"
    return schema.GenerateRequest.model_validate(fake.last)


def chat_job(fake, client, capabilities=PLAIN, **kwargs):
    return translate.to_chat_request(sent_chat(fake, client, **kwargs), MODEL, capabilities)


def generate_job(fake, client, capabilities=PLAIN, **kwargs):
    return translate.to_generate_request(sent_generate(fake, client, **kwargs), MODEL, capabilities)


# -- requests: what the client sends -------------------------------------------------------------


def test_client_sends_stream_flag_and_empty_tools(fake, client):
    sent_chat(fake, client)
    assert fake.last["stream"] is False
    assert fake.last["tools"] == []  # always sent by ollama-python: must not count as tool use
    assert fake.last["model"] == MODEL


def test_chat_messages_and_defaults(fake, client):
    job = chat_job(fake, client, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert [(m.role, m.content) for m in job.messages] == [("system", "Be brief."), ("user", "Hi")]
    assert job.sampling.max_tokens is None and job.sampling.temperature is None
    assert job.response_format.kind == "text"
    assert job.tools == () and job.logprobs is None


def test_options_map_to_sampling(fake, client):
    options = {"temperature": 0, "top_p": 0.5, "top_k": 7, "min_p": 0.1, "num_predict": 12, "stop": ["\n\n", "END"],
               "seed": 1, "repeat_penalty": 1.1, "presence_penalty": 0.5, "frequency_penalty": 0.25}  # fmt: skip
    sampling = chat_job(fake, client, options=options).sampling
    assert (sampling.temperature, sampling.top_p, sampling.top_k, sampling.min_p) == (0, 0.5, 7, 0.1)
    assert sampling.max_tokens == 12 and sampling.stop == ("\n\n", "END") and sampling.seed == 1
    assert (sampling.repeat_penalty, sampling.presence_penalty, sampling.frequency_penalty) == (1.1, 0.5, 0.25)


def test_options_object_from_the_client(fake, client):
    sampling = chat_job(fake, client, options=ollama.Options(temperature=0.2, num_predict=-1, seed=-1)).sampling
    assert sampling.temperature == 0.2
    assert sampling.max_tokens is None  # -1: until a stop or the end of the context
    assert sampling.seed is None  # -1: random


def test_unknown_and_runner_options_are_ignored(fake, client):
    options = {"num_ctx": 2048, "mirostat": 2, "tfs_z": 1.0, "numa": True, "typical_p": 0.9, "made_up": "x"}
    job = chat_job(fake, client, options=options, keep_alive="10m")
    assert job.sampling.temperature is None and job.messages


def test_wrong_option_type_is_a_400_naming_it():
    from dmr_core.dialects.wire import describe
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        schema.ChatRequest.model_validate({"model": MODEL, "options": {"temperature": "hot"}})
    assert "options.temperature" in describe(info.value).message


def test_format_json_and_schema(fake, client):
    assert chat_job(fake, client, format="json").response_format.kind == "json_object"

    class Answer(BaseModel):
        city: str
        population: int

    fmt = chat_job(fake, client, format=Answer.model_json_schema()).response_format
    assert fmt.kind == "json_schema" and fmt.schema["properties"]["population"]["type"] == "integer"


def test_images_become_data_urls_with_sniffed_type(fake, client):
    messages = [{"role": "user", "content": "What is this?", "images": [PNG, JPEG]}]
    job = chat_job(fake, client, EVERYTHING, messages=messages)
    png_url, jpeg_url = job.messages[0].images
    assert png_url == "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert jpeg_url.startswith("data:image/jpeg;base64,")


def test_images_need_a_vision_model(fake, client):
    with pytest.raises(InvalidRequest, match='"ai/smollm2" does not support vision'):
        chat_job(fake, client, messages=[{"role": "user", "content": "?", "images": [PNG]}])


def test_bad_base64_image_is_a_400():
    req = schema.GenerateRequest.model_validate({"model": MODEL, "prompt": "?", "images": ["not base64!"]})
    with pytest.raises(InvalidRequest, match="base64"):
        translate.to_generate_request(req, MODEL, EVERYTHING)


def test_tools_and_tool_turns(fake, client):
    def get_weather(city: str) -> str:
        """Get the weather.

        Args:
          city: The city
        """
        return "sunny"

    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
    ]  # fmt: skip
    job = chat_job(fake, client, EVERYTHING, messages=messages, tools=[get_weather])
    (tool,) = job.tools
    assert tool.name == "get_weather" and "city" in tool.parameters["properties"]
    assert job.tool_choice == ToolChoice("auto", parallel=True)  # Ollama returns every call the model makes
    call = job.messages[1].tool_calls[0]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    answer = job.messages[2]
    assert (answer.role, answer.name, answer.tool_call_id) == ("tool", "get_weather", call.id)


def test_tools_need_a_tools_model(fake, client):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    with pytest.raises(InvalidRequest, match='"ai/smollm2" does not support tools'):
        chat_job(fake, client, tools=tools)


def test_think(fake, client):
    with pytest.raises(InvalidRequest, match='"ai/smollm2" does not support thinking'):
        chat_job(fake, client, think=True)
    assert chat_job(fake, client, think=False).think is None  # "don't think" is what this model does
    assert chat_job(fake, client, EVERYTHING, think="high").think is True  # levels turn it on
    assert chat_job(fake, client, EVERYTHING, think=False).think is False
    assert chat_job(fake, client, EVERYTHING).think is None  # the model's default
    assert generate_job(fake, client, EVERYTHING, think=True).think is True
    with pytest.raises(InvalidRequest, match='"ai/smollm2" does not support thinking'):
        generate_job(fake, client, think=True)


def test_logprobs(fake, client):
    assert chat_job(fake, client, logprobs=True, top_logprobs=3).logprobs == 3
    assert chat_job(fake, client, logprobs=True).logprobs == 0
    with pytest.raises(InvalidRequest, match="top_logprobs must be between 0 and 20"):
        chat_job(fake, client, logprobs=True, top_logprobs=21)


def test_empty_messages_is_load_only(fake, client):
    assert chat_job(fake, client, messages=[]) is None
    assert generate_job(fake, client, prompt="") is None
    assert translate.load_job().sampling.max_tokens == 0


def test_generate_wraps_prompt_with_system(fake, client):
    job = generate_job(fake, client, system="You are terse.", prompt="Say hi")
    assert [(m.role, m.content) for m in job.messages] == [("system", "You are terse."), ("user", "Say hi")]


def test_generate_raw_is_a_bare_prompt(fake, client):
    job = generate_job(fake, client, prompt="<|im_start|>user\nHi", raw=True, options={"num_predict": 5})
    assert job.messages is None and job.prompt == "<|im_start|>user\nHi" and job.sampling.max_tokens == 5


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"raw": True, "system": "s"}, "raw mode does not support template, system, or context"),
        ({"template": "{{ .Prompt }}"}, "'template' is not supported"),
        ({"context": [1, 2, 3]}, "'context' is not supported"),
        ({"suffix": "return x"}, '"ai/smollm2" does not support insert'),
        ({"images": [PNG]}, '"ai/smollm2" does not support vision'),
    ],
)
def test_generate_rejects_what_it_cannot_honour(fake, client, kwargs, error):
    with pytest.raises(InvalidRequest, match=error):
        generate_job(fake, client, **kwargs)


def test_model_or_legacy_name_is_required():
    assert schema.ChatRequest.model_validate({"name": "x"}).model_name == "x"
    with pytest.raises(InvalidRequest, match="model is required"):
        schema.ChatRequest.model_validate({}).model_name


# -- replies: what the client reads --------------------------------------------------------------


def fake_clock(step: int = 1000) -> Callable[[], int]:
    ticks = iter(range(0, 10**9, step))
    return lambda: next(ticks)


def meta(chat: bool = True, logprobs: bool = False) -> translate.ReplyMeta:
    timer = translate.Timer(clock=fake_clock())
    timer.submit()
    timer.first_chunk()
    return translate.ReplyMeta(MODEL, chat, timer, logprobs)


def chunks(*texts: str, finish=FinishReason.STOP, usage=Usage(11, 3)) -> list[GenerationChunk]:
    return [GenerationChunk(t) for t in texts] + [GenerationChunk("", finish, usage)]


def read_back(fake, client, body: str, chat: bool = True) -> list:
    """The client's own parse of ``body`` as a streamed reply."""
    fake.responder = lambda path, req: ("application/x-ndjson", body)
    if chat:
        return list(client.chat(model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True))
    return list(client.generate(model=MODEL, prompt="x", stream=True))


def test_chat_stream_lines(fake, client):
    body = "".join(translate.stream_lines(meta(), chunks("Hel", "lo", "\u2028!")))
    assert body.endswith("\n") and "\n\n" not in body and "\u2028" not in body
    parts = read_back(fake, client, body)
    assert "".join(p.message.content for p in parts) == "Hello\u2028!"
    assert [p.done for p in parts] == [False, False, False, True]
    final = parts[-1]
    assert final.done_reason == "stop" and final.message.role == "assistant" and final.message.content == ""
    assert (final.prompt_eval_count, final.eval_count) == (11, 3)
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(getattr(final, key), int) and getattr(final, key) >= 0
    assert final.created_at.endswith("Z") and "." in final.created_at


def test_generate_stream_lines_and_length(fake, client):
    body = "".join(translate.stream_lines(meta(chat=False), chunks("a", "b", finish=FinishReason.LENGTH)))
    parts = read_back(fake, client, body, chat=False)
    assert "".join(p.response for p in parts) == "ab"
    assert parts[-1].done_reason == "length" and parts[-1].response == ""
    assert "context" not in json.loads(body.splitlines()[-1])  # no token ids to give


def test_whole_reply_equals_stream(fake, client):
    reply = translate.whole_reply(meta(), chunks("Hel", "lo"))
    fake.responder = lambda path, req: ("application/json", json.dumps(reply))
    parsed = client.chat(model=MODEL, messages=[{"role": "user", "content": "x"}], stream=False)
    assert parsed.message.content == "Hello" and parsed.done and parsed.done_reason == "stop"
    assert parsed.eval_count == 3


def thinking_chunks() -> list[GenerationChunk]:
    return [GenerationChunk(reasoning="Hmm, "), GenerationChunk(reasoning="2+2.", text="It is"), *chunks(" 4.")]


def test_thinking_streams_in_its_own_field(fake, client):
    parts = read_back(fake, client, "".join(translate.stream_lines(meta(), thinking_chunks())))
    assert "".join(p.message.thinking or "" for p in parts) == "Hmm, 2+2."
    assert "".join(p.message.content for p in parts) == "It is 4."
    assert parts[0].message.thinking and not parts[0].message.content  # reasoning comes first
    parts = read_back(fake, client, "".join(translate.stream_lines(meta(chat=False), thinking_chunks())), chat=False)
    assert "".join(p.thinking or "" for p in parts) == "Hmm, 2+2." and "".join(p.response for p in parts) == "It is 4."


def test_thinking_in_whole_replies(fake, client):
    reply = translate.whole_reply(meta(), thinking_chunks())
    fake.responder = lambda path, req: ("application/json", json.dumps(reply))
    parsed = client.chat(model=MODEL, messages=[{"role": "user", "content": "x"}], stream=False)
    assert (parsed.message.thinking, parsed.message.content) == ("Hmm, 2+2.", "It is 4.")
    assert "thinking" not in translate.whole_reply(meta(), chunks("Hi"))["message"]  # none: no field
    reply = translate.whole_reply(meta(chat=False), thinking_chunks())
    assert (reply["thinking"], reply["response"]) == ("Hmm, 2+2.", "It is 4.")


def test_tool_calls_are_whole_objects(fake, client):
    pieces = [
        GenerationChunk(tool_calls=(ToolCallDelta(0, "call_a", "get_weather", '{"ci'),)),
        GenerationChunk(tool_calls=(ToolCallDelta(0, arguments='ty": "Paris"}'),)),
        GenerationChunk(tool_calls=(ToolCallDelta(1, "call_b", "get_time", ""),)),
        GenerationChunk("", FinishReason.TOOL_CALLS, Usage(5, 9)),
    ]
    body = "".join(translate.stream_lines(meta(), pieces))
    parts = read_back(fake, client, body)
    calls = [c for p in parts for c in (p.message.tool_calls or [])]
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [("get_weather", {"city": "Paris"}), ("get_time", {})]
    raw = [json.loads(line) for line in body.splitlines()]
    assert raw[0]["message"]["tool_calls"][0]["id"] == "call_a"  # the first call closes when call 1 starts
    assert parts[-1].done_reason == "stop"  # Ollama reports a tool turn as stop
    whole = translate.whole_reply(meta(), pieces)
    assert [c["function"]["arguments"] for c in whole["message"]["tool_calls"]] == [{"city": "Paris"}, {}]


def test_tool_call_arguments_must_be_an_object():
    pieces = [GenerationChunk(tool_calls=(ToolCallDelta(0, "c", "f", "[1, 2"),)), GenerationChunk("", FinishReason.STOP)]
    with pytest.raises(EngineError, match="not a JSON object"):
        list(translate.stream_lines(meta(), pieces))


def test_logprobs_in_lines(fake, client):
    lp = TokenLogprob("Hi", -0.5, (72, 105), (TopLogprob("Hi", -0.5, (72, 105)), TopLogprob("Yo", -1.5, (89, 111))))
    body = "".join(translate.stream_lines(meta(logprobs=True), [GenerationChunk("Hi", logprobs=(lp,)), *chunks()]))
    parts = read_back(fake, client, body)
    assert parts[0].logprobs[0].token == "Hi" and parts[0].logprobs[0].top_logprobs[1].token == "Yo"
    whole = translate.whole_reply(meta(logprobs=True), [GenerationChunk("Hi", logprobs=(lp,)), *chunks()])
    assert whole["logprobs"][0]["logprob"] == -0.5


def test_load_reply(fake, client):
    body = translate.line(translate.load_reply(meta(chat=False)))
    (part,) = read_back(fake, client, body, chat=False)
    assert part.done and part.done_reason == "load" and part.response == ""


def test_timer_metrics_are_nanoseconds():
    timer = translate.Timer(clock=fake_clock(10))  # received at 0
    timer.submit()  # 10
    timer.first_chunk()  # 20
    metrics = timer.metrics(Usage(4, 2))  # end at 30
    assert metrics == {"total_duration": 30, "load_duration": 0, "prompt_eval_count": 4, "prompt_eval_duration": 10,
                       "eval_count": 2, "eval_duration": 10}  # fmt: skip


def test_prompt_eval_count_is_the_tokens_evaluated_not_those_read_from_the_kv_cache(fake, client):
    body = "".join(translate.stream_lines(meta(), chunks("Hi", usage=Usage(120, 3, cached_tokens=100))))
    final = read_back(fake, client, body)[-1]
    assert (final.prompt_eval_count, final.eval_count) == (20, 3)


def test_error_after_the_stream_started_is_a_final_error_line(fake, client):
    from dmr_core.dialects.ollama.errors import stream_error
    from dmr_core.streaming import guarded

    def failing():
        yield GenerationChunk("Hel")
        raise EngineError("the worker died")

    body = b"".join(guarded(translate.stream_lines(meta(), failing()), stream_error)).decode()
    assert body.splitlines()[-1] == '{"error": "the worker died"}' and "\n\n" not in body
    with pytest.raises(ollama.ResponseError, match="the worker died") as info:
        read_back(fake, client, body)
    assert info.value.status_code == -1  # ollama-python's mark for an in-stream error


# -- embeddings ----------------------------------------------------------------------------------


def test_embed_inputs_and_normalisation():
    req = schema.EmbedRequest.model_validate({"model": MODEL, "input": ["a", "b"], "dimensions": 2})
    assert translate.embed_inputs(req) == ("a", "b")
    assert translate.embed_inputs(schema.EmbedRequest.model_validate({"model": MODEL, "input": ""})) == ()
    reply = translate.embed_reply(MODEL, [(3.0, 4.0, 12.0)], 7, req, translate.Timer(clock=fake_clock()))
    assert reply["embeddings"] == [[0.6, 0.8]]  # cut to 2, then re-normalised
    assert reply["prompt_eval_count"] == 7 and reply["model"] == MODEL
    assert ollama.EmbedResponse(**reply).embeddings[0] == [0.6, 0.8]
    assert translate.normalised([3.0, 4.0], dimensions=10) == [0.6, 0.8]


# -- pull and push -------------------------------------------------------------------------------


def test_pull_statuses():
    digest = "sha256:" + "ab" * 32
    events = [
        ProgressEvent("progress", "Downloaded: 0.00 MB", 100, LayerProgress(digest, 100, 0)),
        ProgressEvent("progress", "Downloaded: 0.00 MB", 100, LayerProgress(digest, 100, 100)),
        ProgressEvent("success", "Model pulled successfully"),
    ]
    out = list(progress.statuses(events, "pull"))
    assert [o["status"] for o in out] == ["pulling manifest", "pulling abababababab", "pulling abababababab",
                                          "verifying sha256 digest", "writing manifest", "success"]  # fmt: skip
    assert out[2] == {"status": "pulling abababababab", "digest": digest, "total": 100, "completed": 100}
    for obj in out:
        ollama.ProgressResponse(**obj)
    pushed = list(progress.statuses([ProgressEvent("success", "ok", mode="push")], "push"))
    assert [o["status"] for o in pushed] == ["retrieving manifest", "pushing manifest", "success"]


def test_pull_error_event_raises():
    with pytest.raises(EngineError, match="manifest unknown"):
        list(progress.statuses([ProgressEvent("error", "Error: manifest unknown")], "pull"))


# -- models --------------------------------------------------------------------------------------


def test_ollama_names():
    assert models.ollama_name("docker.io/ai/smollm2:latest") == "ai/smollm2:latest"
    assert models.ollama_name("huggingface.co/org/repo:Q4_K_M") == "hf.co/org/repo:Q4_K_M"
    assert models.ollama_name("registry.local:5000/x/y:1") == "registry.local:5000/x/y:1"


def test_model_info_types(tmp_path):
    import gguf

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(2048)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_bool("tokenizer.ggml.add_bos_token", True)
    writer.add_array("general.languages", ["en", "fr"])
    writer.add_array("tokenizer.ggml.tokens", [f"t{i}" for i in range(100)])
    writer.add_array("tokenizer.ggml.scores", [0.5] * 100)
    writer.add_tensor("a", np.zeros((4, 8), dtype=np.float32))
    writer.add_tensor("b", np.zeros((3,), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    info = read_model_info(path)
    assert info["general.architecture"] == "llama"
    assert info["llama.context_length"] == 2048 and isinstance(info["llama.context_length"], int)
    assert info["llama.rope.freq_base"] == 10000.0
    assert info["llama.attention.layer_norm_rms_epsilon"] == 1e-05  # the float32, written shortest
    assert info["tokenizer.ggml.add_bos_token"] is True
    assert info["general.languages"] == ["en", "fr"]
    assert info["tokenizer.ggml.tokens"] is None and info["tokenizer.ggml.scores"] is None  # too long
    assert info["general.parameter_count"] == 35
    verbose = read_model_info(path, verbose=True)
    assert verbose["tokenizer.ggml.tokens"][99] == "t99" and len(verbose["tokenizer.ggml.scores"]) == 100
    json.dumps(info)
    assert struct.pack("<f", 1e-05) == struct.pack("<f", np.float32(1e-5))


def test_model_info_rejects_non_gguf(tmp_path):
    path = tmp_path / "x.gguf"
    path.write_bytes(b"NOPE" + b"\x00" * 32)
    with pytest.raises(InvalidRequest, match="GGUF"):
        read_model_info(path)
