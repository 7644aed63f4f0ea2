"""The access log, read from the real server's log: one line per request, written when its response
ends, with the id the response's ``X-Request-Id`` carries and the tokens its client was told;
JSON on this package's server, logfmt text (the default) on the session's."""

import json
import re

import anthropic
import requests

from dmr_core.testing import openai_client_for, wait_until

from .conftest import MODEL, access_lines

CHAT = "/engines/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Say hello."}]


def line_for(server, request_id: str, parse=access_lines) -> dict:
    assert wait_until(lambda: request_id in parse(server), timeout=30), f"no access-log line for {request_id}"
    return parse(server)[request_id]


def check_generation(line: dict, path: str, prompt_tokens: int, completion_tokens: int) -> None:
    assert line["method"] == "POST" and line["path"] == path and line["status"] == 200
    assert line["model"] == MODEL
    assert (line["prompt_tokens"], line["completion_tokens"]) == (prompt_tokens, completion_tokens)
    assert 0 < line["ttft"] <= line["duration"]


def test_generations_are_logged_with_their_ids_and_tokens(observed_server):
    openai = openai_client_for(observed_server)
    raw = openai.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=6,
                                                           extra_headers={"X-Request-Id": "req-plain.1"})  # fmt: skip
    assert raw.headers["X-Request-Id"] == "req-plain.1"
    usage = raw.parse().usage
    check_generation(line_for(observed_server, "req-plain.1"), CHAT, usage.prompt_tokens, usage.completion_tokens)

    stream = openai.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=7, stream=True,
                                            stream_options={"include_usage": True},
                                            extra_headers={"X-Request-Id": "req-stream:2"})  # fmt: skip
    usage = [chunk.usage for chunk in stream if chunk.usage][-1]
    check_generation(line_for(observed_server, "req-stream:2"), CHAT, usage.prompt_tokens, usage.completion_tokens)

    claude = anthropic.Anthropic(base_url=observed_server.url, api_key="x", max_retries=0, timeout=120)
    with claude.messages.stream(model=MODEL, max_tokens=5, messages=MESSAGES,
                                extra_headers={"X-Request-Id": "req-claude-3"}) as events:  # fmt: skip
        usage = events.get_final_message().usage
    check_generation(line_for(observed_server, "req-claude-3"), "/v1/messages",
                     usage.input_tokens + (usage.cache_read_input_tokens or 0), usage.output_tokens)  # fmt: skip


def test_ids_are_made_when_missing_or_not_sane(observed_server):
    for sent in (None, "has space", "x" * 129, 'quote"d'):
        headers = {"X-Request-Id": sent} if sent else {}
        reply = requests.get(observed_server.url + "/engines/v1/models", headers=headers, timeout=30)
        request_id = reply.headers["X-Request-Id"]
        assert re.fullmatch(r"[0-9a-f]{32}", request_id)
        line = line_for(observed_server, request_id)
        assert (line["method"], line["path"], line["status"]) == ("GET", "/engines/v1/models", 200)
        assert line["model"] is line["ttft"] is line["prompt_tokens"] is None and line["duration"] >= 0


def test_errors_are_logged_and_secrets_are_not(observed_server):
    secret_key, secret_body = "sk-do-not-log-4f1e", "BODY-MUST-NOT-BE-LOGGED-9a7c"
    reply = requests.post(observed_server.url + CHAT + "?token=query-secret-51",
                          headers={"Authorization": f"Bearer {secret_key}", "x-api-key": secret_key,
                                   "X-Request-Id": "req-missing-model"},
                          json={"model": "ai/nothing", "messages": [{"role": "user", "content": secret_body}]},
                          timeout=30)  # fmt: skip
    assert reply.status_code == 404 and reply.headers["X-Request-Id"] == "req-missing-model"
    line = line_for(observed_server, "req-missing-model")
    assert (line["path"], line["status"], line["model"], line["completion_tokens"]) == (CHAT, 404, "ai/nothing", None)
    log = observed_server.log()
    assert secret_key not in log and secret_body not in log and "query-secret-51" not in log


def text_lines(server) -> dict[str, dict]:
    """The logfmt access-log lines of a text-format server, by id (values as strings)."""
    lines = {}
    for line in server.log().splitlines():
        if line.startswith("time=") and " id=" in line:
            pairs = re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line)
            entry = {key: json.loads(value) if value.startswith('"') else value for key, value in pairs}
            lines[entry["id"]] = entry
    return lines


def test_text_format_by_default(dmr_server):
    reply = requests.post(dmr_server.url + CHAT, json={"model": MODEL, "messages": MESSAGES, "max_tokens": 4},
                          headers={"X-Request-Id": "text-format-1"}, timeout=120)  # fmt: skip
    assert reply.status_code == 200
    usage = reply.json()["usage"]
    line = line_for(dmr_server, "text-format-1", parse=text_lines)
    assert (line["method"], line["path"], line["status"], line["model"]) == ("POST", CHAT, "200", MODEL)
    assert (line["prompt_tokens"], line["completion_tokens"]) == (str(usage["prompt_tokens"]),
                                                                  str(usage["completion_tokens"]))  # fmt: skip
    assert 0 < float(line["ttft"]) <= float(line["duration"])
    odd = requests.get(dmr_server.url + "/no such/path", headers={"X-Request-Id": "text-format-2"}, timeout=30)
    assert odd.status_code == 404
    assert line_for(dmr_server, "text-format-2", parse=text_lines)["path"] == "/no such/path"
