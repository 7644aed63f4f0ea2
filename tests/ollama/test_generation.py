"""``/api/chat`` and ``/api/generate`` through the official ``ollama`` client, streamed and not."""

import json

import requests

MODEL = "ai/smollm2"
MESSAGES = [{"role": "user", "content": "Write one sentence about the sea."}]
GREEDY = {"temperature": 0, "seed": 1}


def streamed(parts, key="message"):
    parts = list(parts)
    text = "".join(p.message.content if key == "message" else p.response for p in parts)
    return text, parts[-1]


def test_chat_non_streamed(ollama_client):
    reply = ollama_client.chat(model=MODEL, messages=MESSAGES, stream=False, options={**GREEDY, "num_predict": 24})
    assert reply.message.role == "assistant" and reply.message.content.strip()
    assert reply.done and reply.done_reason in ("stop", "length")
    assert reply.model == MODEL
    # at least the prompt's last token is evaluated; the rest may come from the KV cache (other
    # tests send these messages)
    assert reply.prompt_eval_count > 0 and 0 < reply.eval_count <= 24
    assert reply.total_duration >= reply.prompt_eval_duration + reply.eval_duration > 0


def test_chat_streamed_equals_non_streamed_at_temperature_zero(ollama_client):
    args = dict(model=MODEL, messages=MESSAGES, options={**GREEDY, "num_predict": 32})
    whole = ollama_client.chat(stream=False, **args)
    text, final = streamed(ollama_client.chat(stream=True, **args))
    assert text == whole.message.content
    assert final.done and final.done_reason == whole.done_reason
    assert final.eval_count == whole.eval_count


def test_generate_streamed_equals_non_streamed(ollama_client):
    args = dict(model=MODEL, prompt="The capital of France is", options={**GREEDY, "num_predict": 16})
    whole = ollama_client.generate(stream=False, **args)
    text, final = streamed(ollama_client.generate(stream=True, **args), key="response")
    assert text == whole.response and whole.response.strip()
    assert final.response == "" and final.done_reason == whole.done_reason
    assert whole.context is None  # dmr has no token ids to return


def test_generate_raw_and_system(ollama_client):
    raw = ollama_client.generate(model=MODEL, prompt="<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
                                 raw=True, stream=False, options={**GREEDY, "num_predict": 8})  # fmt: skip
    assert raw.response.strip() and raw.done
    system = ollama_client.generate(model=MODEL, prompt="Hi", system="Answer in French.", stream=False,
                                    options={**GREEDY, "num_predict": 8})  # fmt: skip
    assert system.done and system.prompt_eval_count > 0


def test_num_predict_gives_done_reason_length(ollama_client):
    reply = ollama_client.chat(model=MODEL, messages=MESSAGES, stream=False, options={**GREEDY, "num_predict": 3})
    assert reply.done_reason == "length" and reply.eval_count == 3
    parts = list(ollama_client.generate(model=MODEL, prompt="Count:", stream=True, options={**GREEDY, "num_predict": 3}))
    assert parts[-1].done_reason == "length" and parts[-1].eval_count == 3


def test_stop_option_is_honoured(ollama_client):
    args = dict(model=MODEL, messages=MESSAGES, stream=False)
    full = ollama_client.chat(options={**GREEDY, "num_predict": 24}, **args).message.content
    words = full.split()
    assert len(words) > 3, full
    stop = words[2]
    cut = ollama_client.chat(options={**GREEDY, "num_predict": 24, "stop": [stop]}, **args)
    assert cut.done_reason == "stop"
    assert cut.message.content == full[: full.index(stop)]


def test_format_json_output_parses(ollama_client):
    reply = ollama_client.chat(
        model=MODEL, stream=False, format="json", options={**GREEDY, "num_predict": 48},
        messages=[{"role": "user", "content": "Give me a JSON object with the keys name and age."}],
    )  # fmt: skip
    assert isinstance(json.loads(reply.message.content), dict), reply.message.content


def test_empty_messages_only_load_the_model(ollama_client):
    reply = ollama_client.chat(model=MODEL, messages=[], stream=False)
    assert reply.done and reply.done_reason == "load" and reply.message.content == ""
    (line,) = list(ollama_client.generate(model=MODEL, prompt="", stream=True))
    assert line.done_reason == "load"


def test_ndjson_has_no_blank_lines(dmr_server):
    body = {"model": MODEL, "messages": MESSAGES, "options": {**GREEDY, "num_predict": 12}}
    response = requests.post(dmr_server.url + "/api/chat", json=body, timeout=120)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    text = response.text
    assert text.endswith("\n") and "\n\n" not in text and "\r" not in text
    lines = [json.loads(line) for line in text.split("\n")[:-1]]
    assert all(not line["done"] for line in lines[:-1]) and lines[-1]["done"]
    assert "message" in lines[-1] and lines[-1]["done_reason"] in ("stop", "length")
    assert lines[-1]["created_at"].endswith("Z")


def test_tool_turns_round_trip(ollama_client):
    """A history with a tool call (arguments as an object) and its ``tool_name`` answer is accepted."""
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    messages = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "Sunny, 21 C", "tool_name": "get_weather"},
    ]  # fmt: skip
    reply = ollama_client.chat(model=MODEL, messages=messages, tools=tools, stream=False, options={**GREEDY, "num_predict": 16})
    assert reply.done and reply.prompt_eval_count > 20
    for call in reply.message.tool_calls or ():
        assert isinstance(call.function.arguments, dict)


def test_prompt_eval_count_is_the_new_tokens_only(ollama_client):
    """Ollama counts the prompt tokens it evaluated: a turn's prefix held in the KV cache is not among them."""
    document = " ".join(f"Line {i}: the ferry to island {i} leaves at {i + 6} o'clock." for i in range(12))
    messages = [{"role": "user", "content": f"{document}\nWhen does the third ferry leave?"}]
    first = ollama_client.chat(model=MODEL, messages=messages, stream=False, options={**GREEDY, "num_predict": 8})
    assert first.prompt_eval_count > 150  # nothing of this prompt was cached before
    messages += [{"role": "assistant", "content": first.message.content},
                 {"role": "user", "content": "And the fourth?"}]  # fmt: skip
    second = ollama_client.chat(model=MODEL, messages=messages, stream=False, options={**GREEDY, "num_predict": 8})
    # the first turn's prompt is reused; only the reply and the new question are evaluated
    assert 0 < second.prompt_eval_count < 40, (first.prompt_eval_count, second.prompt_eval_count)
