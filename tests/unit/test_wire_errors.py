"""Request validation errors, OpenAI's error shape, and errors crossing the pool socket."""

from __future__ import annotations

import json

import openai
import pytest
from openai.types import ErrorObject
from pydantic import TypeAdapter, ValidationError

from dmr_core import errors
from dmr_core.dialects.openai import schema, translate
from dmr_core.dialects.openai.errors import error_body, render_error, stream_error
from dmr_core.dialects.wire import describe
from dmr_core.errors import DmrError, InvalidRequest, error_from_dict
from dmr_core.generation import GenerationChunk

MESSAGES = [{"role": "user", "content": "Hi"}]


def chat_error(**body) -> InvalidRequest:
    with pytest.raises(ValidationError) as info:
        schema.ChatCompletionRequest.model_validate(body)
    return describe(info.value)


def embedding_error(**body) -> InvalidRequest:
    with pytest.raises(ValidationError) as info:
        schema.EmbeddingRequest.model_validate(body)
    return describe(info.value)


# -- describe(): naming the parameter ------------------------------------------------------------


def test_missing_model_is_required():
    error = chat_error(messages=MESSAGES)
    assert error.message == "model is required"
    assert error.param == "model"


def test_missing_messages_are_required():
    error = chat_error(model="m")
    assert (error.message, error.param) == ("messages is required", "messages")


def test_described_errors_are_400_invalid_request():
    error = chat_error(messages=MESSAGES)
    assert type(error) is InvalidRequest
    assert (error.status, error.kind, error.code) == (400, "invalid_request_error", "invalid_request")


def test_temperature_out_of_range_names_temperature():
    error = chat_error(model="m", messages=MESSAGES, temperature=3)
    assert error.param == "temperature"
    assert "'temperature'" in error.message and "2" in error.message


def test_max_tokens_zero_names_max_tokens():
    error = chat_error(model="m", messages=MESSAGES, max_tokens=0)
    assert error.param == "max_tokens"
    assert "greater than or equal to 1" in error.message


def test_too_many_stops_names_stop():
    assert chat_error(model="m", messages=MESSAGES, stop=["a", "b", "c", "d", "e"]).param == "stop"


def test_four_stops_are_allowed():
    req = schema.ChatCompletionRequest.model_validate({"model": "m", "messages": MESSAGES, "stop": list("abcd")})
    assert req.stop == list("abcd")


@pytest.mark.parametrize("stop", [5, {"a": 1}, [1, 2], True])
def test_stop_of_wrong_type_names_stop_not_the_union_member(stop):
    error = chat_error(model="m", messages=MESSAGES, stop=stop)
    assert error.param == "stop"
    assert "'stop'" in error.message and "stop.str" not in error.message


def test_invalid_role_names_the_message_role():
    error = chat_error(model="m", messages=[{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}])
    assert error.param == "messages[1].role"
    assert "'messages[1].role'" in error.message


def test_first_message_role_is_named_with_its_index():
    assert chat_error(model="m", messages=[{"role": "bot", "content": "x"}]).param == "messages[0].role"


def test_wrong_content_type_names_the_content_not_the_union_member():
    assert chat_error(model="m", messages=[{"role": "user", "content": 5}]).param == "messages[0].content"


def test_empty_messages_names_messages():
    assert chat_error(model="m", messages=[]).param == "messages"


def test_nested_object_field_is_dotted():
    error = chat_error(model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": "maybe"})
    assert error.param == "stream_options.include_usage"


def test_embedding_encoding_format_is_named():
    assert embedding_error(model="m", input="x", encoding_format="hex").param == "encoding_format"


def test_embedding_input_of_wrong_type_is_named():
    assert embedding_error(model="m", input=5).param == "input"


def test_embedding_dimensions_zero_is_named():
    assert embedding_error(model="m", input="x", dimensions=0).param == "dimensions"


def test_completion_prompt_is_required():
    with pytest.raises(ValidationError) as info:
        schema.CompletionRequest.model_validate({"model": "m"})
    error = describe(info.value)
    assert (error.message, error.param) == ("prompt is required", "prompt")


# -- OpenAI error bodies -------------------------------------------------------------------------


SAMPLE_ERRORS = [
    InvalidRequest("bad", param="temperature"),
    errors.UnsupportedParameter("'n' greater than 1 is not supported", param="n"),
    errors.ModelNotFound("model ai/x not found"),
    errors.ContextLengthExceeded("too long", param="messages"),
    errors.EngineUnavailable("down"),
    errors.WorkerCrashed("crashed"),
    DmrError("boom"),
]


@pytest.mark.parametrize("error", SAMPLE_ERRORS, ids=lambda e: type(e).__name__)
def test_error_body_has_exactly_the_openai_fields(error):
    body = error_body(error)
    assert list(body) == ["error"]
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"] == {"message": error.message, "type": error.kind, "param": error.param, "code": error.code}
    TypeAdapter(ErrorObject).validate_python(body["error"], strict=True)


def test_error_body_without_param_has_null_param():
    assert error_body(errors.ModelNotFound("nope"))["error"]["param"] is None


def test_rendered_error_has_the_status_and_json_body():
    response = render_error(errors.ModelNotFound("model ai/x not found"))
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert json.loads(response.get_data()) == error_body(errors.ModelNotFound("model ai/x not found"))


@pytest.mark.parametrize("error", SAMPLE_ERRORS, ids=lambda e: type(e).__name__)
def test_stream_error_is_one_sse_data_frame(error):
    frame = stream_error(error)
    assert frame.startswith("data: ") and frame.endswith("\n\n")
    assert frame.count("\n") == 2
    assert json.loads(frame[len("data: ") : -2]) == error_body(error)


def test_stream_error_escapes_line_breaks_in_the_message():
    frame = stream_error(DmrError("line one\nline two\r\n"))
    assert frame.count("\n") == 2 and "\r" not in frame
    assert json.loads(frame[6:-2])["error"]["message"] == "line one\nline two\r\n"


def test_sdk_raises_api_error_for_an_error_frame_mid_stream(server, sdk):
    meta = translate.ResponseMeta("m", id="chatcmpl-x", created=1)

    def responder(path, body):
        events = list(translate.chat_stream_events(meta, [GenerationChunk("partial")], False))[:-1]
        return 200, "text/event-stream", "".join(events) + stream_error(errors.WorkerCrashed("worker died"))

    server.responder = responder
    stream = sdk.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)
    assert received == [None, "partial"]  # the first delta's content is null, as llama.cpp sends it
    assert "worker died" in info.value.message


@pytest.mark.parametrize(
    ("error", "sdk_class"),
    [
        (InvalidRequest("bad temperature", param="temperature"), openai.BadRequestError),
        (errors.ModelNotFound("model ai/x not found"), openai.NotFoundError),
        (errors.Conflict("busy"), openai.ConflictError),
        (errors.EngineUnavailable("down"), openai.InternalServerError),
    ],
)
def test_sdk_reads_code_param_and_type_from_an_error_response(server, sdk, error, sdk_class):
    server.responder = lambda path, body: (error.status, "application/json", json.dumps(error_body(error)))
    with pytest.raises(sdk_class) as info:
        sdk.chat.completions.create(model="m", messages=MESSAGES)
    assert (info.value.code, info.value.param, info.value.type) == (error.code, error.param, error.kind)
    assert info.value.status_code == error.status


# -- errors across the pool socket ---------------------------------------------------------------


def all_error_classes(cls=DmrError):
    found = [cls]
    for sub in cls.__subclasses__():
        found += all_error_classes(sub)
    return found


def test_every_error_class_is_covered():
    names = {cls.__name__ for cls in all_error_classes()}
    assert {"DmrError", "InvalidRequest", "ModelNotFound", "WorkerCrashed", "MethodNotAllowed"} <= names


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda cls: cls.__name__)
def test_error_round_trips_through_its_dict(cls):
    original = cls("it went wrong: \"quoted\" ü", param="messages[0].content")
    rebuilt = error_from_dict(json.loads(json.dumps(original.to_dict())))
    assert type(rebuilt) is cls
    assert (rebuilt.message, rebuilt.param) == (original.message, original.param)
    assert (rebuilt.status, rebuilt.code, rebuilt.kind) == (cls.status, cls.code, cls.kind)
    assert str(rebuilt) == original.message


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda cls: cls.__name__)
def test_error_without_param_round_trips(cls):
    rebuilt = error_from_dict(cls("x").to_dict())
    assert type(rebuilt) is cls and rebuilt.param is None


def test_unknown_error_class_becomes_the_base_error():
    rebuilt = error_from_dict({"class": "SomethingElse", "message": "odd", "param": "p"})
    assert type(rebuilt) is DmrError
    assert (rebuilt.message, rebuilt.param, rebuilt.status) == ("odd", "p", 500)


def test_error_from_a_non_error_class_name_is_not_built():
    # Only DmrError subclasses may be rebuilt from a peer's frame, never arbitrary exceptions.
    assert type(error_from_dict({"class": "SystemExit", "message": "x"})) is DmrError
