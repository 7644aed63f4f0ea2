"""OpenAI wire <-> internal representation, on bodies the official ``openai`` SDK really sends.

Requests: the SDK (wired to an in-process transport, see ``conftest.py``) sends a body, which goes
through ``schema`` and ``translate.to_*`` exactly as the routes do. Responses: hand-made
:class:`GenerationChunk` sequences go through the ``*_response`` / ``*_events`` functions and the
result is validated with the SDK's own pydantic types in strict mode, and read back by the SDK.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

import pytest
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter

from dmr_core.dialects.openai import schema, translate
from dmr_core.errors import InvalidRequest, UnsupportedParameter
from dmr_core.generation import (
    EmbeddingResult,
    FinishReason,
    GenerationChunk,
    Message,
    ResponseFormat,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
    TopLogprob,
    Usage,
)

MODEL = "ai/smollm2"
USER = [{"role": "user", "content": "Hello"}]


def strict(type_: Any, value: Any) -> Any:
    """Validate ``value`` against one of the SDK's types, with no coercion at all."""
    return TypeAdapter(type_).validate_python(value, strict=True)


# -- capturing what the SDK sends ----------------------------------------------------------------


def sent_chat(server, sdk, **kwargs) -> dict:
    kwargs.setdefault("messages", USER)
    sdk.chat.completions.create(model=MODEL, **kwargs)
    assert server.paths[-1] == "/v1/chat/completions"
    return server.last


def sent_completion(server, sdk, **kwargs) -> dict:
    kwargs.setdefault("prompt", "Once upon a time")
    sdk.completions.create(model=MODEL, **kwargs)
    assert server.paths[-1] == "/v1/completions"
    return server.last


def sent_embedding(server, sdk, **kwargs) -> dict:
    kwargs.setdefault("input", "hello")
    sdk.embeddings.create(model=MODEL, **kwargs)
    assert server.paths[-1] == "/v1/embeddings"
    return server.last


def chat_job(server, sdk, **kwargs):
    return translate.to_chat_request(schema.ChatCompletionRequest.model_validate(sent_chat(server, sdk, **kwargs)))


def completion_jobs(server, sdk, **kwargs):
    body = sent_completion(server, sdk, **kwargs)
    return translate.to_completion_requests(schema.CompletionRequest.model_validate(body))


def completion_job(server, sdk, **kwargs):
    jobs = completion_jobs(server, sdk, **kwargs)
    assert len(jobs) == 1
    return jobs[0]


def rejected_chat(server, sdk, **kwargs) -> UnsupportedParameter:
    with pytest.raises(UnsupportedParameter) as info:
        chat_job(server, sdk, **kwargs)
    return info.value


def rejected_completion(server, sdk, **kwargs) -> UnsupportedParameter:
    with pytest.raises(UnsupportedParameter) as info:
        completion_job(server, sdk, **kwargs)
    return info.value


# -- chat requests: messages ---------------------------------------------------------------------


def test_chat_messages_keep_their_order_roles_and_text(server, sdk):
    job = chat_job(
        server,
        sdk,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Bye"},
        ],
    )
    assert job.is_chat and job.prompt is None
    assert job.messages == (
        Message("system", "Be brief."),
        Message("user", "Hi"),
        Message("assistant", "Hello!"),
        Message("user", "Bye"),
    )


def test_developer_role_becomes_system(server, sdk):
    job = chat_job(server, sdk, messages=[{"role": "developer", "content": "Rules"}, *USER])
    assert server.last["messages"][0]["role"] == "developer"
    assert job.messages[0] == Message("system", "Rules")


def test_content_given_as_text_parts_is_concatenated(server, sdk):
    parts = [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "world"}]
    job = chat_job(server, sdk, messages=[{"role": "user", "content": parts}])
    assert server.last["messages"][0]["content"] == parts
    assert job.messages == (Message("user", "Hello, world"),)


def test_system_content_as_text_parts_is_concatenated(server, sdk):
    job = chat_job(server, sdk, messages=[{"role": "system", "content": [{"type": "text", "text": "S"}]}, *USER])
    assert job.messages[0] == Message("system", "S")


def test_data_url_image_parts_become_message_images(server, sdk):
    url = "data:image/png;base64,iVBORw0KGgo="
    image = {"type": "image_url", "image_url": {"url": url, "detail": "low"}}
    job = chat_job(server, sdk, messages=[{"role": "user", "content": [{"type": "text", "text": "What is it?"}, image]}])
    assert job.messages == (Message("user", "What is it?", images=(url,)),)


@pytest.mark.parametrize("url", ["https://example.com/cat.png", "http://10.0.0.1/x.png", "file:///etc/passwd"])
def test_image_urls_other_than_data_are_refused_naming_that_content(server, sdk, url):
    image = {"type": "image_url", "image_url": {"url": url}}
    with pytest.raises(InvalidRequest) as info:
        chat_job(server, sdk, messages=[{"role": "system", "content": "S"}, {"role": "user", "content": [image]}])
    assert info.value.param == "messages[1].content"
    assert "data:" in info.value.message


def test_audio_parts_are_rejected_naming_that_content(server, sdk):
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    error = rejected_chat(server, sdk, messages=[{"role": "user", "content": [audio]}])
    assert error.param == "messages[0].content" and "input_audio" in error.message


CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def test_assistant_tool_calls_and_tool_results_are_carried_over(server, sdk):
    messages = [*USER, {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "18C"}]}]  # fmt: skip
    job = chat_job(server, sdk, messages=messages)
    assert job.messages[1] == Message("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Paris"}'),))
    # The tool result learns its function's name from the call it answers.
    assert job.messages[2] == Message("tool", "18C", tool_call_id="call_1", name="get_weather")


def test_tool_message_without_tool_call_id_is_invalid(server, sdk):
    with pytest.raises(InvalidRequest) as info:
        chat_job(server, sdk, messages=[*USER, {"role": "tool", "content": "42"}])
    assert info.value.param == "messages[1].tool_call_id"


def test_deprecated_function_role_is_rejected(server, sdk):
    messages = [*USER, {"role": "function", "name": "f", "content": "42"}]
    assert rejected_chat(server, sdk, messages=messages).param == "messages[1].role"


def test_assistant_message_without_content_becomes_empty_text(server, sdk):
    job = chat_job(server, sdk, messages=[*USER, {"role": "assistant", "content": None}, *USER])
    assert job.messages[1] == Message("assistant", "")


# -- chat requests: sampling ---------------------------------------------------------------------


def test_chat_without_options_leaves_sampling_to_the_engine(server, sdk):
    sampling = chat_job(server, sdk).sampling
    assert sampling.max_tokens is None
    assert sampling.temperature is None and sampling.top_p is None and sampling.seed is None
    assert sampling.stop == ()
    assert sampling.presence_penalty == 0.0 and sampling.frequency_penalty == 0.0


def test_sampling_parameters_are_carried_over(server, sdk):
    sampling = chat_job(
        server, sdk, temperature=0.3, top_p=0.9, presence_penalty=0.5, frequency_penalty=-0.5, seed=1234
    ).sampling
    assert (sampling.temperature, sampling.top_p) == (0.3, 0.9)
    assert (sampling.presence_penalty, sampling.frequency_penalty) == (0.5, -0.5)
    assert sampling.seed == 1234


def test_llama_cpp_extras_sent_through_extra_body_are_honoured(server, sdk):
    sampling = chat_job(server, sdk, extra_body={"top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1}).sampling
    assert (sampling.top_k, sampling.min_p, sampling.repeat_penalty) == (40, 0.05, 1.1)


def test_stop_as_a_string_becomes_one_stop(server, sdk):
    job = chat_job(server, sdk, stop="\n\n")
    assert server.last["stop"] == "\n\n"
    assert job.sampling.stop == ("\n\n",)


def test_stop_as_a_list_keeps_every_stop_in_order(server, sdk):
    job = chat_job(server, sdk, stop=["END", "###", "\n"])
    assert job.sampling.stop == ("END", "###", "\n")


def test_max_tokens_alone_is_the_limit(server, sdk):
    assert chat_job(server, sdk, max_tokens=12).sampling.max_tokens == 12


def test_max_completion_tokens_alone_is_the_limit(server, sdk):
    assert chat_job(server, sdk, max_completion_tokens=34).sampling.max_tokens == 34


def test_max_completion_tokens_wins_over_max_tokens(server, sdk):
    job = chat_job(server, sdk, max_tokens=5, max_completion_tokens=7)
    assert (server.last["max_tokens"], server.last["max_completion_tokens"]) == (5, 7)
    assert job.sampling.max_tokens == 7


def test_stream_and_include_usage_are_parsed(server, sdk):
    body = sent_chat(server, sdk, stream=True, stream_options={"include_usage": True})
    req = schema.ChatCompletionRequest.model_validate(body)
    assert req.stream is True and req.stream_options.include_usage is True
    assert translate.to_chat_request(req).messages == (Message("user", "Hello"),)


def test_stream_options_without_stream_are_invalid(server, sdk):
    body = sent_chat(server, sdk, stream_options={"include_usage": True})
    with pytest.raises(InvalidRequest) as info:
        translate.to_chat_request(schema.ChatCompletionRequest.model_validate(body))
    assert info.value.param == "stream_options"


def test_fields_we_have_no_use_for_are_ignored(server, sdk):
    job = chat_job(
        server, sdk, user="u1", metadata={"a": "b"}, store=False, service_tier="auto",
        reasoning_effort="low", prompt_cache_key="k", parallel_tool_calls=False,
    )  # fmt: skip
    assert job.messages == (Message("user", "Hello"),)


def test_n_of_one_is_accepted(server, sdk):
    assert chat_job(server, sdk, n=1).messages


def chat_jobs(server, sdk, **kwargs):
    return translate.to_chat_requests(schema.ChatCompletionRequest.model_validate(sent_chat(server, sdk, **kwargs)))


def test_n_makes_one_job_per_choice_each_drawing_its_own_seed(server, sdk):
    jobs = chat_jobs(server, sdk, n=3)
    assert server.last["n"] == 3
    assert len(jobs) == 3 and len({job.messages for job in jobs}) == 1
    assert {job.sampling.seed for job in jobs} == {None}  # each job's engine draws one


def test_n_with_a_seed_gives_choice_j_the_seed_plus_j(server, sdk):
    # llama.cpp's server seeds the copies of a task so: the choices differ, the reply repeats.
    assert [job.sampling.seed for job in chat_jobs(server, sdk, n=3, seed=41)] == [41, 42, 43]


def test_n_above_the_bound_is_a_400_naming_n(server, sdk):
    assert len(chat_jobs(server, sdk, n=translate.MAX_CHOICES)) == translate.MAX_CHOICES
    with pytest.raises(InvalidRequest) as info:
        chat_jobs(server, sdk, n=translate.MAX_CHOICES + 1)
    assert info.value.param == "n" and str(translate.MAX_CHOICES) in info.value.message


def test_text_response_format_is_accepted(server, sdk):
    job = chat_job(server, sdk, response_format={"type": "text"})
    assert job.response_format == ResponseFormat("text")


def test_json_object_response_format(server, sdk):
    assert chat_job(server, sdk, response_format={"type": "json_object"}).response_format == ResponseFormat("json_object")


def test_json_schema_response_format_keeps_the_schema(server, sdk):
    spec = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    job = chat_job(server, sdk, response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": spec, "strict": True}})
    assert job.response_format == ResponseFormat("json_schema", spec)


@pytest.mark.parametrize(
    "spec",
    [{"type": "integer", "minimum": 3}, {"type": "object", "properties": {"a": {"not": {"type": "string"}}}},
     {"type": "string", "format": "email"}, {"$ref": "https://example.com/schema.json"}, {"type": "tuple"},
     {"anyOf": []}, {"type": "object", "properties": {"a": {"oneOf": []}}}, {"enum": []}],  # match nothing
)  # fmt: skip
def test_schemas_a_grammar_cannot_enforce_are_rejected_naming_response_format(server, sdk, spec):
    error = rejected_chat(server, sdk, response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": spec}})
    assert error.param == "response_format"


def test_chat_logprobs_carry_the_number_of_alternatives(server, sdk):
    assert chat_job(server, sdk, logprobs=True, top_logprobs=2).logprobs == 2
    assert chat_job(server, sdk, logprobs=True).logprobs == 0
    assert chat_job(server, sdk).logprobs is None


def test_logprobs_false_is_accepted(server, sdk):
    assert chat_job(server, sdk, logprobs=False).logprobs is None


def test_top_logprobs_without_logprobs_is_invalid(server, sdk):
    with pytest.raises(InvalidRequest) as info:
        chat_job(server, sdk, top_logprobs=3)
    assert info.value.param == "top_logprobs"


def test_logit_bias_becomes_token_id_and_bias_pairs(server, sdk):
    job = chat_job(server, sdk, logit_bias={"50256": -100, "7": 2.5})
    assert job.sampling.logit_bias == ((50256, -100.0), (7, 2.5))


@pytest.mark.parametrize("bias", [{"the": 1}, {"-3": 1}, {"1.5": 1}, {"\u0661": 1}, {"5": 100.5}, {"5": -101}])
def test_a_logit_bias_openai_would_refuse_is_invalid(server, sdk, bias):
    with pytest.raises(InvalidRequest) as info:
        chat_job(server, sdk, logit_bias=bias)
    assert info.value.param == "logit_bias" and "logit_bias" in str(info.value)


TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}


def test_tools_become_tool_specs_with_auto_choice_by_default(server, sdk):
    job = chat_job(server, sdk, tools=[TOOL, {"type": "function", "function": {"name": "noop", "description": "d"}}])
    assert job.tools == (ToolSpec("get_weather", "", {"type": "object", "properties": {}}), ToolSpec("noop", "d"))
    assert job.tool_choice == ToolChoice("auto")


def test_tools_with_tool_choice_none_are_accepted(server, sdk):
    assert chat_job(server, sdk, tools=[TOOL], tool_choice="none").tool_choice.mode == "none"


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [("required", None, ToolChoice("required", parallel=False)),  # one call by default, as llama.cpp's server
     ("required", True, ToolChoice("required", parallel=True)), ("auto", False, ToolChoice("auto", parallel=False)),
     ({"type": "function", "function": {"name": "get_weather"}}, None, ToolChoice("function", "get_weather"))],
)  # fmt: skip
def test_tool_choice_and_parallel_tool_calls(server, sdk, choice, parallel, expected):
    extra = {} if parallel is None else {"parallel_tool_calls": parallel}
    assert chat_job(server, sdk, tools=[TOOL], tool_choice=choice, **extra).tool_choice == expected


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "nope"}}])
def test_forced_tool_choice_needs_a_matching_tool(server, sdk, choice):
    with pytest.raises(InvalidRequest) as info:
        chat_job(server, sdk, tools=[] if choice == "required" else [TOOL], tool_choice=choice)
    assert info.value.param == "tool_choice"


def test_custom_tools_are_rejected(server, sdk):
    custom = {"type": "custom", "custom": {"name": "grep"}}
    assert rejected_chat(server, sdk, tools=[custom]).param == "tools[0]"


def test_audio_output_is_rejected(server, sdk):
    error = rejected_chat(server, sdk, modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"})
    assert error.param == "modalities"


def test_text_modality_is_accepted(server, sdk):
    assert chat_job(server, sdk, modalities=["text"]).messages


def test_rejections_are_400_unsupported_parameter(server, sdk):
    error = rejected_chat(server, sdk, modalities=["text", "audio"])
    assert (error.status, error.code, error.kind) == (400, "unsupported_parameter", "invalid_request_error")


# -- legacy completions requests -----------------------------------------------------------------


def test_completion_prompt_is_the_raw_prompt(server, sdk):
    job = completion_job(server, sdk, prompt="Once upon a time")
    assert not job.is_chat and job.messages is None
    assert job.prompt == "Once upon a time"


def test_completion_max_tokens_defaults_to_16(server, sdk):
    job = completion_job(server, sdk)
    assert "max_tokens" not in server.last
    assert job.sampling.max_tokens == translate.COMPLETIONS_DEFAULT_MAX_TOKENS == 16


def test_completion_max_tokens_is_honoured(server, sdk):
    assert completion_job(server, sdk, max_tokens=100).sampling.max_tokens == 100


def test_completion_stop_and_sampling_are_carried_over(server, sdk):
    sampling = completion_job(server, sdk, stop=["\n", "."], temperature=0.0, seed=7, top_p=0.5).sampling
    assert sampling.stop == ("\n", ".")
    assert (sampling.temperature, sampling.seed, sampling.top_p) == (0.0, 7, 0.5)


def test_completion_stop_as_a_string(server, sdk):
    assert completion_job(server, sdk, stop="\n").sampling.stop == ("\n",)


def test_completion_prompt_list_of_one_string_is_that_string(server, sdk):
    assert completion_job(server, sdk, prompt=["only one"]).prompt == "only one"


def test_completion_prompt_of_token_ids_is_one_prompt_sent_as_ids(server, sdk):
    job = completion_job(server, sdk, prompt=[1, 2, 3])
    assert server.last["prompt"] == [1, 2, 3]
    assert (job.prompt, job.prompt_ids, job.is_chat) == (None, (1, 2, 3), False)


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [(["one", "two"], [("one", None), ("two", None)]),
     ([[1, 2], [3]], [(None, (1, 2)), (None, (3,))]),
     (["one", [7, 8]], [("one", None), (None, (7, 8))])],  # llama.cpp's mixed list: each item a prompt
)  # fmt: skip
def test_several_prompts_make_one_job_each_in_order(server, sdk, prompt, expected):
    jobs = completion_jobs(server, sdk, prompt=prompt)
    assert [(job.prompt, job.prompt_ids) for job in jobs] == expected


def test_several_prompts_with_n_make_n_jobs_per_prompt_prompt_by_prompt(server, sdk):
    jobs = completion_jobs(server, sdk, prompt=["a", "b"], n=2, seed=5)
    assert [(job.prompt, job.sampling.seed) for job in jobs] == [("a", 5), ("a", 6), ("b", 5), ("b", 6)]


def test_prompts_times_n_above_the_bound_is_a_400_naming_n(server, sdk):
    with pytest.raises(InvalidRequest) as info:
        completion_jobs(server, sdk, prompt=["a"] * 6, n=3)
    assert info.value.param == "n" and "prompts" in info.value.message


@pytest.mark.parametrize("prompt", [[], [[1], []]])
def test_empty_prompt_lists_are_invalid(server, sdk, prompt):
    body = sent_completion(server, sdk, prompt=prompt)
    with pytest.raises(InvalidRequest) as info:
        translate.to_completion_requests(schema.CompletionRequest.model_validate(body))
    assert info.value.param == "prompt"


def test_completion_echo_is_accepted(server, sdk):
    body = sent_completion(server, sdk, echo=True)
    req = schema.CompletionRequest.model_validate(body)
    assert req.echo is True
    assert translate.to_completion_requests(req)[0].prompt == "Once upon a time"
    assert translate.echoes(req) == ("Once upon a time",)


def test_echo_repeats_each_prompt_and_nothing_without_echo(server, sdk):
    req = schema.CompletionRequest.model_validate(sent_completion(server, sdk, prompt=["a", "b"], echo=True))
    assert translate.echoes(req) == ("a", "b")
    assert translate.echoes(schema.CompletionRequest.model_validate(sent_completion(server, sdk))) == ()


def test_echo_of_a_token_id_prompt_is_refused(server, sdk):
    # The text of those ids is the engine's to know; llama.cpp's server refuses echo altogether.
    assert rejected_completion(server, sdk, prompt=[1, 2], echo=True).param == "echo"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"suffix": "The end."}, "suffix"),
        ({"logprobs": 2, "echo": True}, "logprobs"),
        ({"best_of": 2}, "best_of"),
    ],
)
def test_completion_unsupported_parameters_are_named(server, sdk, kwargs, param):
    assert rejected_completion(server, sdk, **kwargs).param == param


def test_completion_stream_options_without_stream_are_invalid(server, sdk):
    body = sent_completion(server, sdk, stream_options={"include_usage": True})
    with pytest.raises(InvalidRequest) as info:
        translate.to_completion_requests(schema.CompletionRequest.model_validate(body))
    assert info.value.param == "stream_options"


# -- embeddings requests -------------------------------------------------------------------------


def embedding_request(server, sdk, **kwargs) -> schema.EmbeddingRequest:
    return schema.EmbeddingRequest.model_validate(sent_embedding(server, sdk, **kwargs))


def test_sdk_asks_for_base64_by_default(server, sdk):
    req = embedding_request(server, sdk)
    assert server.last["encoding_format"] == "base64"
    assert req.encoding_format == "base64"


def test_explicit_float_encoding_is_kept(server, sdk):
    assert embedding_request(server, sdk, encoding_format="float").encoding_format == "float"


def test_dimensions_are_parsed(server, sdk):
    assert embedding_request(server, sdk, dimensions=3).dimensions == 3


def test_single_input_becomes_one_text(server, sdk):
    assert translate.embedding_inputs(embedding_request(server, sdk, input="hello")) == ("hello",)


def test_list_input_keeps_its_order(server, sdk):
    assert translate.embedding_inputs(embedding_request(server, sdk, input=["b", "a", "c"])) == ("b", "a", "c")


@pytest.mark.parametrize(
    ("sent", "inputs"),
    [([1, 2, 3], ((1, 2, 3),)), ([[1, 2], [3]], ((1, 2), (3,))),
     (["a", [1, 2], "b"], ("a", (1, 2), "b"))],  # llama.cpp's mixed list of texts and token lists
)  # fmt: skip
def test_token_id_inputs_are_kept_as_ids(server, sdk, sent, inputs):
    assert translate.embedding_inputs(embedding_request(server, sdk, input=sent)) == inputs
    assert server.last["input"] == sent


@pytest.mark.parametrize("empty", ["", [], ["a", ""], [[1], []]])
def test_empty_inputs_are_invalid(server, sdk, empty):
    with pytest.raises(InvalidRequest) as info:
        translate.embedding_inputs(embedding_request(server, sdk, input=empty))
    assert info.value.param == "input"


# -- non-stream responses ------------------------------------------------------------------------

META_FIELDS = ("id", "object", "created", "model")


def meta(prefix: str = "chatcmpl") -> translate.ResponseMeta:
    return translate.ResponseMeta(MODEL, prefix, id=f"{prefix}-test", created=1700000000)


def chunks(*texts: str, finish: FinishReason = FinishReason.STOP, usage: Usage = Usage(5, 3)):
    return [GenerationChunk(t) for t in texts] + [GenerationChunk("", finish, usage)]


def test_prompt_tokens_read_from_the_kv_cache_are_cached_tokens():
    # llama.cpp's server shape: prompt_tokens counts them too; the details say how many were reused.
    body = translate.chat_response(meta(), chunks("Hi", usage=Usage(40, 2, 31)))
    usage = strict(ChatCompletion, json.loads(json.dumps(body))).usage
    assert (usage.prompt_tokens, usage.total_tokens, usage.prompt_tokens_details.cached_tokens) == (40, 42, 31)


def test_response_meta_makes_a_fresh_prefixed_id():
    a, b = translate.ResponseMeta(MODEL, "cmpl"), translate.ResponseMeta(MODEL, "cmpl")
    assert a.id.startswith("cmpl-") and len(a.id) > len("cmpl-") + 16
    assert a.id != b.id
    assert isinstance(a.created, int)


def test_chat_response_is_a_valid_sdk_chat_completion():
    body = translate.chat_response(meta(), chunks("Hel", "lo", "!"))
    completion = strict(ChatCompletion, json.loads(json.dumps(body)))
    assert (completion.id, completion.created, completion.model) == ("chatcmpl-test", 1700000000, MODEL)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Hello!"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"}) == {
        "prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("reason", "wire"),
    [(FinishReason.STOP, "stop"), (FinishReason.LENGTH, "length"), (FinishReason.CANCELLED, "length")],
)
def test_finish_reasons_map_to_openai_values(reason, wire):
    assert translate.chat_response(meta(), chunks("x", finish=reason))["choices"][0]["finish_reason"] == wire
    body = translate.completion_response(meta("cmpl"), chunks("x", finish=reason))
    assert body["choices"][0]["finish_reason"] == wire


def test_final_chunk_text_is_part_of_the_answer():
    body = translate.chat_response(meta(), [GenerationChunk("a"), GenerationChunk("b", FinishReason.STOP, Usage(1, 2))])
    assert body["choices"][0]["message"]["content"] == "ab"


def test_completion_response_is_a_valid_sdk_completion():
    body = translate.completion_response(meta("cmpl"), chunks(" there", " was"))
    completion = strict(Completion, json.loads(json.dumps(body)))
    assert completion.object == "text_completion" and completion.id == "cmpl-test"
    assert completion.choices[0].text == " there was"
    assert completion.usage.total_tokens == 8


def test_completion_response_echo_prepends_the_prompt():
    body = translate.completion_response(meta("cmpl"), chunks(" there"), echo=("Once upon a time",))
    assert body["choices"][0]["text"] == "Once upon a time there"


def answer_with(server, make_body):
    """Make the fake server answer with dmr's own output for the request it gets."""

    def responder(path, body):
        return 200, "application/json", json.dumps(make_body(body))

    server.responder = responder


def test_sdk_reads_our_chat_response(server, sdk):
    answer_with(server, lambda body: translate.chat_response(meta(), chunks("Hi ", "there")))
    completion = sdk.chat.completions.create(model=MODEL, messages=USER)
    assert completion.choices[0].message.content == "Hi there"
    assert completion.usage.completion_tokens == 3


def thinking_chunks():
    return [GenerationChunk(reasoning="Hmm. "), GenerationChunk("Hi", reasoning="Easy."), *chunks(" there")]


def test_reasoning_content_only_when_there_is_reasoning(server, sdk):
    body = translate.chat_response(meta(), thinking_chunks())
    message = strict(ChatCompletion, json.loads(json.dumps(body))).choices[0].message
    assert message.content == "Hi there" and body["choices"][0]["message"]["reasoning_content"] == "Hmm. Easy."
    assert "reasoning_content" not in translate.chat_response(meta(), chunks("Hi"))["choices"][0]["message"]
    answer_with(server, lambda body: translate.chat_response(meta(), thinking_chunks()))
    completion = sdk.chat.completions.create(model=MODEL, messages=USER)  # strict: extra fields are allowed
    assert completion.choices[0].message.reasoning_content == "Hmm. Easy."


def test_reasoning_streams_as_reasoning_content_deltas(server, sdk):
    bodies = chat_stream(thinking_chunks())
    deltas = [b["choices"][0]["delta"] for b in bodies[1:-1]]
    assert deltas == [{"reasoning_content": "Hmm. "}, {"reasoning_content": "Easy."}, {"content": "Hi"},
                      {"content": " there"}]  # fmt: skip
    stream_with(server, lambda body: translate.chat_stream_events(meta(), thinking_chunks(), False))
    received = list(sdk.chat.completions.create(model=MODEL, messages=USER, stream=True))
    assert "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in received) == "Hmm. Easy."


def test_sdk_reads_our_completion_response(server, sdk):
    answer_with(server, lambda body: translate.completion_response(meta("cmpl"), chunks("1, 2")))
    completion = sdk.completions.create(model=MODEL, prompt="0, ")
    assert completion.choices[0].text == "1, 2"


# -- streamed responses --------------------------------------------------------------------------


def parse_events(events: list[str]) -> list[dict]:
    """Check the SSE framing and return the JSON of every frame before ``[DONE]``."""
    assert events[-1] == "data: [DONE]\n\n"
    bodies = []
    for event in events[:-1]:
        assert event.startswith("data: ") and event.endswith("\n\n")
        payload = event[len("data: ") : -2]
        assert "\n" not in payload and "\r" not in payload, "a raw line break would split the SSE event"
        bodies.append(json.loads(payload))
    return bodies


def chat_stream(parts, include_usage=False) -> list[dict]:
    return parse_events(list(translate.chat_stream_events(meta(), parts, include_usage)))


def test_every_chat_chunk_is_a_valid_sdk_chunk():
    for body in chat_stream(chunks("a", "b"), include_usage=True):
        strict(ChatCompletionChunk, body)


def test_every_chat_chunk_repeats_the_same_envelope():
    bodies = chat_stream(chunks("a", "b", "c"), include_usage=True)
    envelopes = {tuple(body[k] for k in META_FIELDS) for body in bodies}
    assert envelopes == {("chatcmpl-test", "chat.completion.chunk", 1700000000, MODEL)}


def test_first_chat_chunk_announces_the_assistant_role():
    first = chat_stream(chunks("a"))[0]
    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert first["choices"][0]["finish_reason"] is None


def test_chat_text_chunks_carry_the_text_in_order():
    bodies = chat_stream(chunks("Hel", "lo", " world"))
    texts = [b["choices"][0]["delta"]["content"] for b in bodies[1:-1]]
    assert texts == ["Hel", "lo", " world"]
    assert all(b["choices"][0]["finish_reason"] is None for b in bodies[1:-1])


def test_empty_text_chunks_are_not_sent():
    bodies = chat_stream([GenerationChunk(""), GenerationChunk("x"), GenerationChunk(""), *chunks()])
    assert [b["choices"][0]["delta"] for b in bodies] == [{"role": "assistant", "content": None}, {"content": "x"}, {}]


def test_finish_chunk_has_an_empty_delta_and_the_reason():
    finish = chat_stream(chunks("a", finish=FinishReason.LENGTH))[-1]
    assert finish["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}]


def test_text_on_the_finish_chunk_is_sent_before_the_finish():
    bodies = chat_stream([GenerationChunk("a"), GenerationChunk("tail", FinishReason.STOP, Usage(1, 2))])
    assert [b["choices"][0]["delta"] for b in bodies[1:]] == [{"content": "a"}, {"content": "tail"}, {}]
    assert bodies[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("reason", "wire"),
    [(FinishReason.STOP, "stop"), (FinishReason.LENGTH, "length"), (FinishReason.CANCELLED, "length")],
)
def test_stream_finish_reasons_map_to_openai_values(reason, wire):
    assert chat_stream(chunks("x", finish=reason))[-1]["choices"][0]["finish_reason"] == wire
    completion = parse_events(list(translate.completion_stream_events(meta("cmpl"), chunks("x", finish=reason), False)))
    assert completion[-1]["choices"][0]["finish_reason"] == wire


def test_no_usage_anywhere_without_include_usage():
    bodies = chat_stream(chunks("a", "b"))
    assert all(b.get("usage") is None for b in bodies)
    assert all(b["choices"] for b in bodies)


def test_include_usage_adds_one_usage_chunk_with_no_choices_at_the_end():
    bodies = chat_stream(chunks("a", "b", usage=Usage(9, 2)), include_usage=True)
    usage_chunks = [b for b in bodies if b.get("usage") is not None]
    assert usage_chunks == [bodies[-1]]
    assert bodies[-1]["choices"] == []
    assert bodies[-1]["usage"] == {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
                                   "prompt_tokens_details": {"cached_tokens": 0}}  # fmt: skip
    assert bodies[-2]["choices"][0]["finish_reason"] == "stop"


def test_stream_without_chunks_still_opens_and_ends():
    events = list(translate.chat_stream_events(meta(), [], False))
    assert len(parse_events(events)) == 1


TRICKY_TEXTS = [
    'say "hi"',
    "back\\slash",
    "line\nbreak",
    "carriage\rreturn\r\n",
    "\ttab",
    "\x00\x01\x1f\x7f",
    "é ü ß 中文",
    "emoji 🎉👍🏽",
    "\u2028\u2029 separators",
    "\x85 next line",
    "</script><script>",
    "{\"choices\": []}",
    "data: [DONE]\n\n",
    "",
    " ",
]


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_fast_chat_text_frame_equals_the_generic_frame(text):
    enc = translate.StreamEncoder(meta(), "chat.completion.chunk", "delta")
    fast = enc.text(text)
    slow = enc.frame([{"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}])
    assert json.loads(fast[6:]) == json.loads(slow[6:])
    assert json.loads(fast[6:])["choices"][0]["delta"]["content"] == text
    assert fast.startswith("data: ") and fast.endswith("\n\n") and fast.count("\n") == 2
    strict(ChatCompletionChunk, json.loads(fast[6:]))


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_fast_completion_text_frame_equals_the_generic_frame(text):
    enc = translate.StreamEncoder(meta("cmpl"), "text_completion", "text")
    fast = enc.text(text)
    slow = enc.frame([{"index": 0, "text": text, "logprobs": None, "finish_reason": None}])
    assert json.loads(fast[6:]) == json.loads(slow[6:])
    assert json.loads(fast[6:])["choices"][0]["text"] == text
    assert fast.endswith("\n\n") and fast.count("\n") == 2


def test_fast_frame_escapes_a_model_name_with_quotes():
    odd = translate.ResponseMeta('we"ird\\model', "chatcmpl", id="chatcmpl-x", created=1)
    enc = translate.StreamEncoder(odd, "chat.completion.chunk", "delta")
    assert json.loads(enc.text("x")[6:])["model"] == 'we"ird\\model'


def completion_stream(parts, include_usage=False, echo=()) -> list[dict]:
    return parse_events(list(translate.completion_stream_events(meta("cmpl"), parts, include_usage, echo)))


def test_completion_stream_chunks_are_sdk_completions():
    bodies = completion_stream(chunks("a", "b"), include_usage=True)
    for body in bodies:
        # The SDK types legacy stream chunks with the non-stream model, whose finish_reason may not
        # be null; check every other field strictly.
        choices = [{**c, "finish_reason": c["finish_reason"] or "stop"} for c in body["choices"]]
        strict(Completion, {**body, "choices": choices})
    assert {tuple(b[k] for k in META_FIELDS) for b in bodies} == {("cmpl-test", "text_completion", 1700000000, MODEL)}


def test_completion_stream_sends_text_then_finish():
    bodies = completion_stream(chunks("1", "2", finish=FinishReason.LENGTH))
    assert [(b["choices"][0]["text"], b["choices"][0]["finish_reason"]) for b in bodies] == [
        ("1", None), ("2", None), ("", "length"),
    ]  # fmt: skip


def test_completion_stream_echo_comes_first():
    bodies = completion_stream(chunks(" there"), echo=("Once upon a time",))
    assert [b["choices"][0]["text"] for b in bodies] == ["Once upon a time", " there", ""]


def test_completion_stream_usage_only_with_include_usage():
    assert all(b.get("usage") is None for b in completion_stream(chunks("a")))
    bodies = completion_stream(chunks("a", usage=Usage(4, 1)), include_usage=True)
    assert bodies[-1]["choices"] == []
    assert bodies[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5,
                                   "prompt_tokens_details": {"cached_tokens": 0}}  # fmt: skip


def stream_with(server, make_events):
    def responder(path, body):
        return 200, "text/event-stream", "".join(make_events(body))

    server.responder = responder


def test_sdk_reads_our_chat_stream(server, sdk):
    stream_with(
        server,
        lambda body: translate.chat_stream_events(
            meta(), chunks(*TRICKY_TEXTS, usage=Usage(7, 15)), body["stream_options"]["include_usage"]
        ),
    )
    received = list(
        sdk.chat.completions.create(model=MODEL, messages=USER, stream=True, stream_options={"include_usage": True})
    )
    text = "".join(c.choices[0].delta.content or "" for c in received if c.choices)
    assert text == "".join(TRICKY_TEXTS)
    assert [c.choices[0].finish_reason for c in received if c.choices][-1] == "stop"
    assert received[-1].choices == [] and received[-1].usage.total_tokens == 22
    assert {c.id for c in received} == {"chatcmpl-test"}


def test_sdk_reads_our_completion_stream(server):
    # Strict response validation rejects every legacy stream chunk (see reference §1.5), so this
    # client is the SDK's default, lenient one.
    server.responder = lambda path, body: (
        200, "text/event-stream", "".join(translate.completion_stream_events(meta("cmpl"), chunks("a\n", "b"), False)),
    )  # fmt: skip
    client = server.client(strict=False)
    received = list(client.completions.create(model=MODEL, prompt="x", stream=True))
    assert "".join(c.choices[0].text for c in received) == "a\nb"
    assert received[-1].choices[0].finish_reason == "stop"


# -- several choices (n, several prompts) --------------------------------------------------------


def choice_chunks(choice: int, *texts: str, usage: Usage, finish: FinishReason = FinishReason.STOP):
    parts = [GenerationChunk(t, choice=choice) for t in texts]
    return parts + [GenerationChunk("", finish, usage, choice=choice)]


def interleaved() -> list[GenerationChunk]:
    """Two choices of one prompt (5 tokens), as the runtime merges them: in arrival order."""
    zero, one = choice_chunks(0, "Hi", " you", usage=Usage(5, 2)), choice_chunks(1, "Yo", usage=Usage(5, 1))
    return [zero[0], one[0], zero[1], one[1], zero[2]]


def n_meta(n=2, prompts=1, prefix="chatcmpl"):
    return translate.ResponseMeta(MODEL, prefix, id=f"{prefix}-test", created=1, n=n, prompts=prompts)


def test_n_choices_come_back_indexed_with_usage_summed_and_the_prompt_counted_once():
    body = translate.chat_response(n_meta(), interleaved())
    completion = strict(ChatCompletion, json.loads(json.dumps(body)))
    assert [(c.index, c.message.content, c.finish_reason) for c in completion.choices] == [
        (0, "Hi you", "stop"), (1, "Yo", "stop")]  # fmt: skip
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, 3)


def test_several_prompts_count_each_prompt_once_and_echo_their_own_text():
    parts = [*choice_chunks(0, " a", usage=Usage(3, 1)), *choice_chunks(1, " b", usage=Usage(3, 1)),
             *choice_chunks(2, " c", usage=Usage(4, 1)), *choice_chunks(3, " d", usage=Usage(4, 1))]  # fmt: skip
    body = translate.completion_response(n_meta(2, 2, "cmpl"), parts, echo=("P", "Q"))
    completion = strict(Completion, json.loads(json.dumps(body)))
    assert [(c.index, c.text) for c in completion.choices] == [(0, "P a"), (1, "P b"), (2, "Q c"), (3, "Q d")]
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (7, 4)


def test_n_stream_opens_every_choice_then_streams_each_with_its_index():
    bodies = parse_events(list(translate.chat_stream_events(n_meta(), interleaved(), True)))
    for body in bodies:
        strict(ChatCompletionChunk, body)
    assert [b["choices"] for b in bodies[:2]] == [
        [{"index": i, "delta": {"role": "assistant", "content": None}, "logprobs": None, "finish_reason": None}]
        for i in (0, 1)]  # fmt: skip
    texts = {i: "".join(b["choices"][0]["delta"].get("content") or "" for b in bodies[2:-1]
                        if b["choices"][0]["index"] == i) for i in (0, 1)}  # fmt: skip
    assert texts == {0: "Hi you", 1: "Yo"}
    finishes = [(b["choices"][0]["index"], b["choices"][0]["finish_reason"]) for b in bodies[2:-1]
                if b["choices"][0]["finish_reason"]]  # fmt: skip
    assert finishes == [(1, "stop"), (0, "stop")]  # each choice its own, as it ends


def test_n_stream_ends_with_one_usage_chunk_for_all_choices():
    bodies = parse_events(list(translate.chat_stream_events(n_meta(), interleaved(), True)))
    assert [b for b in bodies if b.get("usage")] == [bodies[-1]]
    assert bodies[-1]["choices"] == [] and bodies[-1]["usage"]["completion_tokens"] == 3
    assert bodies[-1]["usage"]["prompt_tokens"] == 5


def test_n_completion_stream_echoes_and_finishes_each_choice():
    parts = [*choice_chunks(0, " a", usage=Usage(3, 1)), *choice_chunks(1, " b", usage=Usage(3, 1))]
    bodies = parse_events(list(translate.completion_stream_events(n_meta(prefix="cmpl"), parts, True, ("P",))))
    assert [(c["index"], c["text"], c["finish_reason"]) for b in bodies for c in b["choices"]] == [
        (0, "P", None), (1, "P", None), (0, " a", None), (0, "", "stop"), (1, " b", None), (1, "", "stop")]  # fmt: skip
    usage = bodies[-1]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (3, 2, 5)


@pytest.mark.parametrize("text", ["x", 'q"uote', "line\nbreak"])
def test_fast_text_frame_of_a_later_choice_equals_the_generic_frame(text):
    enc = translate.StreamEncoder(n_meta(3), "chat.completion.chunk", "delta")
    fast = enc.text(text, 2)
    slow = enc.frame([{"index": 2, "delta": {"content": text}, "logprobs": None, "finish_reason": None}])
    assert json.loads(fast[6:]) == json.loads(slow[6:])


def test_sdk_stream_helper_builds_every_choice_from_our_n_stream(server, sdk):
    # The SDK's own accumulator: it must take the first delta's null content and the indices.
    stream_with(server, lambda body: translate.chat_stream_events(n_meta(), interleaved(), False))
    with sdk.chat.completions.stream(model=MODEL, messages=USER, n=2) as stream:
        final = stream.get_final_completion()
    assert server.last["n"] == 2
    assert [(c.index, c.message.content, c.finish_reason) for c in final.choices] == [
        (0, "Hi you", "stop"), (1, "Yo", "stop")]  # fmt: skip


def test_sdk_stream_helper_reads_a_first_delta_with_null_content(server, sdk):
    stream_with(server, lambda body: translate.chat_stream_events(meta(), chunks("Hel", "lo"), False))
    with sdk.chat.completions.stream(model=MODEL, messages=USER) as stream:
        events = list(stream)
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "Hello"
    assert [e.delta for e in events if e.type == "content.delta"] == ["Hel", "lo"]


# -- embeddings responses ------------------------------------------------------------------------


def embedding_req(**fields) -> schema.EmbeddingRequest:
    return schema.EmbeddingRequest.model_validate({"model": MODEL, "input": "x", **fields})


RESULT = EmbeddingResult(vectors=((3.0, 4.0, 0.0, 12.0), (0.1, -0.2, 0.3, -0.4)), prompt_tokens=6)


def float32(values) -> list[float]:
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


def test_float_embeddings_are_the_vectors_in_order():
    body = translate.embedding_response(embedding_req(encoding_format="float"), MODEL, RESULT)
    strict(CreateEmbeddingResponse, json.loads(json.dumps(body)))
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert [d["embedding"] for d in body["data"]] == [list(v) for v in RESULT.vectors]
    assert body["usage"] == {"prompt_tokens": 6, "total_tokens": 6}
    assert body["model"] == MODEL and body["object"] == "list"


def test_base64_embeddings_decode_as_little_endian_float32():
    body = translate.embedding_response(embedding_req(encoding_format="base64"), MODEL, RESULT)
    for item, vector in zip(body["data"], RESULT.vectors, strict=True):
        raw = base64.b64decode(item["embedding"])
        assert len(raw) == 4 * len(vector)
        assert list(struct.unpack(f"<{len(vector)}f", raw)) == float32(vector)


def test_dimensions_truncate_and_renormalise():
    body = translate.embedding_response(embedding_req(encoding_format="float", dimensions=2), MODEL, RESULT)
    first, second = (d["embedding"] for d in body["data"])
    assert first == pytest.approx([0.6, 0.8])
    assert math.hypot(*second) == pytest.approx(1.0)
    assert second[0] / second[1] == pytest.approx(0.1 / -0.2)


def test_dimensions_equal_to_the_size_only_renormalise():
    body = translate.embedding_response(embedding_req(encoding_format="float", dimensions=4), MODEL, RESULT)
    assert body["data"][0]["embedding"] == pytest.approx([3 / 13, 4 / 13, 0.0, 12 / 13])


def test_dimensions_of_a_zero_vector_stay_zero():
    result = EmbeddingResult(vectors=((0.0, 0.0, 1.0),), prompt_tokens=1)
    body = translate.embedding_response(embedding_req(encoding_format="float", dimensions=2), MODEL, result)
    assert body["data"][0]["embedding"] == [0.0, 0.0]


def test_dimensions_apply_to_base64_too():
    body = translate.embedding_response(embedding_req(encoding_format="base64", dimensions=2), MODEL, RESULT)
    assert struct.unpack("<2f", base64.b64decode(body["data"][0]["embedding"])) == pytest.approx((0.6, 0.8))


def test_too_many_dimensions_are_invalid():
    with pytest.raises(InvalidRequest) as info:
        translate.embedding_response(embedding_req(dimensions=5), MODEL, RESULT)
    assert info.value.param == "dimensions"
    assert "4" in info.value.message


def test_sdk_decodes_our_default_base64_embeddings(server):
    # The SDK types ``embedding`` as a float list and decodes base64 only after parsing, so its
    # strict mode cannot read any base64 answer; the default, lenient client is what users run.
    sdk = server.client(strict=False)
    answer_with(
        server,
        lambda body: translate.embedding_response(schema.EmbeddingRequest.model_validate(body), MODEL, RESULT),
    )
    response = sdk.embeddings.create(model=MODEL, input=["a", "b"])
    assert [d.embedding for d in response.data] == [float32(v) for v in RESULT.vectors]
    assert response.usage.prompt_tokens == 6


# -- tool calls, log probabilities and the early usage chunk in responses ------------------------


def call_chunks(finish: FinishReason = FinishReason.TOOL_CALLS) -> list[GenerationChunk]:
    return [
        GenerationChunk(usage=Usage(12, 0)),  # the engine's early prompt-size chunk
        GenerationChunk(tool_calls=(ToolCallDelta(0, "call_a", "get_weather"),)),
        GenerationChunk(tool_calls=(ToolCallDelta(0, arguments='{"city": '), ToolCallDelta(0, arguments='"Paris"}'))),
        GenerationChunk(tool_calls=(ToolCallDelta(1, "call_b", "get_time", "{}"),)),
        GenerationChunk("", finish, Usage(12, 20)),
    ]


def test_tool_call_reply_has_null_content_and_whole_calls():
    body = translate.chat_response(meta(), call_chunks())
    completion = strict(ChatCompletion, json.loads(json.dumps(body)))
    message = completion.choices[0].message
    assert message.content is None and completion.choices[0].finish_reason == "tool_calls"
    assert [(c.id, c.type, c.function.name, c.function.arguments) for c in message.tool_calls] == [
        ("call_a", "function", "get_weather", '{"city": "Paris"}'), ("call_b", "function", "get_time", "{}"),
    ]  # fmt: skip
    assert "tool_calls" not in translate.chat_response(meta(), chunks("hi"))["choices"][0]["message"]


def test_streamed_tool_calls_are_fragments_keyed_by_index():
    bodies = chat_stream(call_chunks(), include_usage=True)
    for body in bodies:
        strict(ChatCompletionChunk, body)
    fragments = [f for b in bodies if b["choices"] for f in b["choices"][0]["delta"].get("tool_calls", [])]
    assert fragments == [
        {"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
        {"index": 0, "function": {"arguments": '{"city": "Paris"}'}},
        {"index": 1, "id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]
    assert bodies[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}
    assert bodies[-1]["usage"]["completion_tokens"] == 20


def test_the_early_usage_chunk_adds_no_frame():
    plain = chat_stream(chunks("a", "b"), include_usage=True)
    early = chat_stream([GenerationChunk(usage=Usage(5, 0)), *chunks("a", "b")], include_usage=True)
    assert early == plain
    assert translate.chat_response(meta(), [GenerationChunk(usage=Usage(5, 0)), *chunks("a")]) == translate.chat_response(
        meta(), chunks("a")
    )


def test_sdk_accumulates_our_streamed_tool_calls(server, sdk):
    stream_with(server, lambda body: translate.chat_stream_events(meta(), call_chunks(), False))
    with sdk.chat.completions.stream(model=MODEL, messages=USER) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"}), ("get_time", {}),
    ]  # fmt: skip


LP = TokenLogprob("Hi", -0.25, (72, 105), (TopLogprob("Hi", -0.25, (72, 105)), TopLogprob("Hey", -1.5, (72, 101, 121))))
LP2 = TokenLogprob("!", -0.5, (33,), (TopLogprob("!", -0.5, (33,)), TopLogprob(".", -1.0, (46,))))


def test_chat_logprobs_in_openai_shape():
    meta_lp = translate.ResponseMeta(MODEL, "chatcmpl", id="chatcmpl-test", created=1, logprobs=True)
    parts = [GenerationChunk("Hi", logprobs=(LP,)), GenerationChunk("!", FinishReason.STOP, Usage(1, 2), logprobs=(LP2,))]
    body = translate.chat_response(meta_lp, parts)
    completion = strict(ChatCompletion, json.loads(json.dumps(body)))
    content = completion.choices[0].logprobs.content
    assert [(c.token, c.logprob, c.bytes) for c in content] == [("Hi", -0.25, [72, 105]), ("!", -0.5, [33])]
    assert [(t.token, t.logprob) for t in content[0].top_logprobs] == [("Hi", -0.25), ("Hey", -1.5)]
    assert translate.chat_response(meta(), parts)["choices"][0]["logprobs"] is None  # not asked for


def test_streamed_chat_logprobs_ride_with_their_text():
    meta_lp = translate.ResponseMeta(MODEL, "chatcmpl", id="chatcmpl-test", created=1, logprobs=True)
    parts = [GenerationChunk("Hi", logprobs=(LP,)), GenerationChunk("", FinishReason.STOP, Usage(1, 2), logprobs=(LP2,))]
    bodies = parse_events(list(translate.chat_stream_events(meta_lp, parts, False)))
    for body in bodies:
        strict(ChatCompletionChunk, body)
    carried = [(b["choices"][0]["delta"].get("content"), [c["token"] for c in b["choices"][0]["logprobs"]["content"]])
               for b in bodies if b["choices"][0]["logprobs"]]  # fmt: skip
    assert carried == [("Hi", ["Hi"]), ("", ["!"])]


def test_completion_logprobs_in_legacy_shape_streamed_and_not():
    meta_lp = translate.ResponseMeta(MODEL, "cmpl", id="cmpl-test", created=1, logprobs=True)
    parts = [GenerationChunk("Hi", logprobs=(LP,)), GenerationChunk("!", FinishReason.STOP, Usage(1, 2), logprobs=(LP2,))]
    whole = translate.completion_response(meta_lp, parts)["choices"][0]["logprobs"]
    strict(Completion, translate.completion_response(meta_lp, parts))
    assert whole == {"tokens": ["Hi", "!"], "token_logprobs": [-0.25, -0.5],
                     "top_logprobs": [{"Hi": -0.25, "Hey": -1.5}, {"!": -0.5, ".": -1.0}], "text_offset": [0, 2]}  # fmt: skip
    bodies = parse_events(list(translate.completion_stream_events(meta_lp, parts, False)))
    streamed = [b["choices"][0]["logprobs"] for b in bodies if b["choices"][0]["logprobs"]]
    assert [s["text_offset"] for s in streamed] == [[0], [2]]
    assert [s["tokens"] for s in streamed] == [["Hi"], ["!"]]


def test_completion_logprobs_request_is_carried_over(server, sdk):
    assert completion_job(server, sdk, logprobs=3).logprobs == 3
    assert completion_job(server, sdk, logprobs=0).logprobs == 0
    assert completion_job(server, sdk).logprobs is None
