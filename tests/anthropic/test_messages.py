"""Messages, streamed and not, through the official client (strict validation) against a real server."""

import json

import pytest
import requests

from tests.anthropic.conftest import anthropic_client_for
from tests.anthropic.published_schema import check_count, check_events, check_message

MODEL = "ai/smollm2"
SEA = [{"role": "user", "content": "Write one sentence about the sea."}]
GREEDY = {"temperature": 0}  # anthropic 2.x has no typed temperature: it goes through extra_body


def create(client, **kwargs):
    kwargs.setdefault("model", MODEL)
    kwargs.setdefault("messages", SEA)
    kwargs.setdefault("max_tokens", 16)
    kwargs.setdefault("extra_body", GREEDY)
    return client.messages.create(**kwargs)


def text_of(message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def prompt_of(usage) -> int:
    """The prompt's size: Anthropic's ``input_tokens`` leave out what was read from the cache."""
    return usage.input_tokens + (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)


def test_create(client):
    message = create(client)
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert message.model == MODEL
    assert text_of(message).strip()
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert prompt_of(message.usage) > 5 and message.usage.input_tokens >= 1
    assert 0 < message.usage.output_tokens <= 16


def test_max_tokens_gives_stop_reason_max_tokens(client):
    message = create(client, messages=[{"role": "user", "content": "Count from 1 to 100."}], max_tokens=5)
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 5


def test_stream_helper_final_message_equals_non_streamed(client):
    whole = create(client, max_tokens=24)
    with client.messages.stream(model=MODEL, messages=SEA, max_tokens=24, extra_body=GREEDY) as stream:
        streamed_text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed_text == text_of(final) == text_of(whole)
    assert final.stop_reason == whole.stop_reason
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert prompt_of(final.usage) == prompt_of(whole.usage)


def test_raw_stream_event_order(client):
    events = list(create(client, max_tokens=8, stream=True))
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds[1] == "content_block_start" and kinds[-3] == "content_block_stop"
    assert set(kinds[2:-3]) == {"content_block_delta"}
    assert events[-2].delta.stop_reason == "max_tokens" and events[-2].usage.output_tokens == 8
    assert prompt_of(events[-2].usage) > 5


def test_raw_sse_frames_are_named(dmr_server):
    body = {"model": MODEL, "messages": SEA, "max_tokens": 4, "stream": True}
    response = requests.post(dmr_server.url + "/v1/messages", json=body, timeout=120)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["request-id"].startswith("req_")
    frames = [f for f in response.text.split("\n\n") if f]
    names = [f.split("\n")[0].removeprefix("event: ") for f in frames]
    assert names[:3] == ["message_start", "content_block_start", "ping"] and names[-1] == "message_stop"
    for frame in frames:
        name, data = frame.split("\n")
        assert json.loads(data.removeprefix("data: "))["type"] == name.removeprefix("event: ")


def test_message_start_has_the_real_input_tokens(client):
    # message_start is sent before the job has its slot: it counts the whole prompt as input;
    # message_delta splits it into what was evaluated and what the KV cache held.
    events = list(create(client, max_tokens=8, stream=True))
    assert events[0].message.usage.input_tokens == prompt_of(events[-2].usage) > 5


def test_a_repeated_prompt_is_read_from_the_cache(client):
    ask = [{"role": "user", "content": "Name three colours of the rainbow, please."}]
    first, again = (create(client, messages=ask, max_tokens=4).usage for _ in range(2))
    assert prompt_of(first) == prompt_of(again) and first.cache_creation_input_tokens == 0
    # the same prompt again: every token but the last (whose logits are needed) came from the cache
    assert (again.input_tokens, again.cache_read_input_tokens) == (1, prompt_of(first) - 1)
    with client.messages.stream(model=MODEL, messages=ask, max_tokens=4, extra_body=GREEDY) as stream:
        streamed = stream.get_final_message().usage
    assert (streamed.input_tokens, streamed.cache_read_input_tokens) == (1, prompt_of(first) - 1)


def raw(dmr_server, **body) -> requests.Response:
    body = {"model": MODEL, "messages": SEA, "max_tokens": 6, "temperature": 0, **body}
    response = requests.post(dmr_server.url + "/v1/messages", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response


def test_replies_validate_against_anthropics_published_schema(dmr_server):
    message = check_message(raw(dmr_server).json())
    assert message["content"][0]["citations"] is None and message["usage"]["service_tier"] == "standard"
    prompt = message["usage"]["input_tokens"] + message["usage"]["cache_read_input_tokens"]
    events = check_events(raw(dmr_server, stream=True).text)
    assert [e["type"] for e in events][:3] == ["message_start", "content_block_start", "ping"]
    assert (events[-2]["usage"]["input_tokens"], events[-2]["usage"]["cache_read_input_tokens"]) == (1, prompt - 1)
    response = requests.post(dmr_server.url + "/v1/messages/count_tokens", json={"model": MODEL, "messages": SEA},
                             timeout=120)  # fmt: skip
    assert check_count(response.json())["input_tokens"] == prompt


def test_system_prompt_is_used(client):
    plain = create(client, messages=[{"role": "user", "content": "Who are you?"}], max_tokens=12)
    pirate = create(client, messages=[{"role": "user", "content": "Who are you?"}], max_tokens=12,
                    system="You are a pirate named Blackbeard. Always say Arr.")  # fmt: skip
    # (smollm2's template adds a default system prompt of its own when there is none)
    assert prompt_of(pirate.usage) != prompt_of(plain.usage)
    assert text_of(pirate) != text_of(plain)


def test_system_as_text_blocks_counts_the_same(client):
    as_string = create(client, system="Be brief.\nAnswer in French.", max_tokens=4)
    blocks = [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Answer in French."}]
    as_blocks = create(client, system=blocks, max_tokens=4)
    assert prompt_of(as_blocks.usage) == prompt_of(as_string.usage)
    assert text_of(as_blocks) == text_of(as_string)


def test_stop_sequences_are_honoured(client):
    prompt = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]
    free = text_of(create(client, messages=prompt, max_tokens=24))
    assert "7" in free
    stopped = create(client, messages=prompt, max_tokens=24, stop_sequences=["7"])
    assert text_of(stopped) == free[: free.index("7")]
    assert stopped.stop_reason == "stop_sequence"


def test_stop_sequence_is_reported(client):
    prompt = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]
    stopped = create(client, messages=prompt, max_tokens=24, stop_sequences=["zzz", "7"])
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "7")


@pytest.mark.parametrize("base", ["/anthropic", "/engines", "/engines/llama.cpp"])
def test_other_bases(dmr_server, base):
    message = create(anthropic_client_for(dmr_server, base), max_tokens=4)
    assert message.usage.output_tokens == 4


def test_query_string_and_claude_code_headers_are_accepted(dmr_server):
    headers = {"x-api-key": "sk-anything", "anthropic-version": "2023-06-01", "anthropic-beta": "a,b"}
    body = {"model": MODEL, "messages": SEA, "max_tokens": 2}
    response = requests.post(dmr_server.url + "/v1/messages?beta=true", json=body, headers=headers, timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["output_tokens"] == 2


def test_count_tokens_matches_the_prompt_of_a_real_request(client):
    system = "You are terse."
    count = client.messages.count_tokens(model=MODEL, messages=SEA, system=system)
    message = create(client, system=system, max_tokens=1)
    assert count.input_tokens == prompt_of(message.usage)  # count_tokens counts the whole prompt


@pytest.mark.parametrize("path", ["/anthropic/v1/messages/count_tokens", "/engines/v1/messages/count_tokens?beta=true"])
def test_count_tokens_paths(dmr_server, path):
    response = requests.post(dmr_server.url + path, json={"model": MODEL, "messages": SEA}, timeout=120)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"input_tokens"} and response.json()["input_tokens"] > 5


def test_prefill_is_continued(client):
    messages = [{"role": "user", "content": "Recite the alphabet, letters separated by commas."},
                {"role": "assistant", "content": "A, B, C, D,"}]  # fmt: skip
    assert text_of(create(client, messages=messages, max_tokens=6)).lstrip().startswith("E")
