"""docs/clients.md cannot drift: its snippets and settings are read out of the file and used.

The three Python snippets run as they are written (in a fresh interpreter, as a user who pasted them
into a file would), against a real dmr: only ``http://127.0.0.1:12434`` becomes the test server's
address. Open WebUI, Continue and Claude Code are not installed here (and cannot be fetched), so
their settings are read out of their blocks and the endpoints those tools call are called with
those settings: the paths exist, accept the tool's way of sending the key and answer in shape.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import requests
import yaml

from dmr_core.settings import PROJECT_ROOT

DOC = PROJECT_ROOT / "docs" / "clients.md"
DOC_ADDRESS = "http://127.0.0.1:12434"
#: Client settings in the environment would change what a snippet does.
CLIENT_ENV = ("OPENAI_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN",
              "OLLAMA_HOST")  # fmt: skip


def sections() -> dict[str, str]:
    """docs/clients.md's ``##`` sections by title."""
    parts = re.split(r"^## (.+)$", DOC.read_text(), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def code_blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", sections()[section], flags=re.M | re.S)


def one_block(section: str, language: str) -> str:
    blocks = code_blocks(section, language)
    assert len(blocks) == 1, f"{section}: expected one {language} block, found {len(blocks)}"
    return blocks[0]


def run_snippet(code: str, server) -> str:
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV}
    done = subprocess.run([sys.executable, "-c", code.replace(DOC_ADDRESS, server.url)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("section", ["OpenAI Python client", "Anthropic Python client", "Ollama Python client"])
def test_the_python_snippets_run_as_written(dmr_server, section):
    code = one_block(section, "python")
    assert DOC_ADDRESS in code  # the address a reader copies is the default one
    printed = run_snippet(code, dmr_server)
    assert printed.strip(), f"{section}: the snippet printed no answer"


def docker_env(section: str) -> dict[str, str]:
    """The ``-e NAME=value`` settings of the section's ``docker run``."""
    return dict(re.findall(r"-e (\w+)=(\S+)", one_block(section, "sh")))


def local(url: str, server) -> str:
    return url.replace(DOC_ADDRESS, server.url)


def stream_events(response) -> list[str]:
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return [line for line in response.text.splitlines() if line.startswith(("data:", "event:"))]


def test_open_webui_openai_connection(dmr_server):
    env = docker_env("Open WebUI")
    base, key = local(env["OPENAI_API_BASE_URL"], dmr_server), env["OPENAI_API_KEY"]
    headers = {"Authorization": f"Bearer {key}"}
    models = requests.get(f"{base}/models", headers=headers, timeout=30)
    assert models.status_code == 200 and "ai/smollm2:latest" in {m["id"] for m in models.json()["data"]}
    chat = requests.post(f"{base}/chat/completions", headers=headers, timeout=120, json={
        "model": "ai/smollm2", "stream": True, "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]})
    assert stream_events(chat)[-1] == "data: [DONE]"


def test_open_webui_ollama_connection(dmr_server):
    base = local(docker_env("Open WebUI")["OLLAMA_BASE_URL"], dmr_server)
    assert requests.get(f"{base}/api/version", timeout=30).json()["version"]
    assert "ai/smollm2:latest" in {m["name"] for m in requests.get(f"{base}/api/tags", timeout=30).json()["models"]}
    assert "models" in requests.get(f"{base}/api/ps", timeout=30).json()
    assert requests.post(f"{base}/api/show", json={"model": "ai/smollm2"}, timeout=30).status_code == 200
    chat = requests.post(f"{base}/api/chat", timeout=120, json={
        "model": "ai/smollm2", "stream": False, "options": {"num_predict": 8},
        "messages": [{"role": "user", "content": "Hi"}]})  # fmt: skip
    assert chat.status_code == 200 and chat.json()["message"]["role"] == "assistant"


def test_continue_config(dmr_server):
    config = yaml.safe_load(one_block("Continue (VS Code, JetBrains)", "yaml"))
    assert {"name", "version", "schema"} <= set(config) and config["schema"] == "v1"
    [model] = config["models"]
    assert model["provider"] == "openai" and {"name", "model", "apiBase", "apiKey"} <= set(model)
    assert "autocomplete" not in model["roles"]
    base, headers = local(model["apiBase"], dmr_server), {"Authorization": f"Bearer {model['apiKey']}"}
    listed = {m["id"] for m in requests.get(f"{base}/models", headers=headers, timeout=30).json()["data"]}
    assert f"{model['model']}:latest" in listed  # the model a reader names is there
    chat = requests.post(f"{base}/chat/completions", headers=headers, timeout=120, json={
        "model": model["model"], "stream": True, "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]})
    assert stream_events(chat)[-1] == "data: [DONE]"
    # Why autocomplete is left out: fill-in-the-middle's suffix is refused, as the doc says.
    fim = requests.post(f"{base}/completions", headers=headers, timeout=30,
                        json={"model": model["model"], "prompt": "def f(", "suffix": "return 1", "max_tokens": 8})
    assert fim.status_code == 400 and "suffix" in fim.text


def test_claude_code_settings(dmr_server):
    exports = dict(re.findall(r"^export (\w+)=(\S+)$", one_block("Claude Code", "sh"), flags=re.M))
    assert exports["ANTHROPIC_BASE_URL"] == DOC_ADDRESS
    base = local(exports["ANTHROPIC_BASE_URL"], dmr_server)
    # As Claude Code sends them: Bearer token, beta query and headers, system as blocks.
    headers = {"Authorization": f"Bearer {exports['ANTHROPIC_AUTH_TOKEN']}", "anthropic-version": "2023-06-01",
               "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14"}  # fmt: skip
    for model in (exports["ANTHROPIC_MODEL"], exports["ANTHROPIC_DEFAULT_HAIKU_MODEL"]):
        reply = requests.post(f"{base}/v1/messages?beta=true", headers=headers, timeout=120, json={
            "model": model, "max_tokens": 8, "stream": True,
            "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]})  # fmt: skip
        events = stream_events(reply)
        assert events[0] == "event: message_start" and events[-2] == "event: message_stop"
    counted = requests.post(f"{base}/v1/messages/count_tokens?beta=true", headers=headers, timeout=30, json={
        "model": exports["ANTHROPIC_MODEL"], "messages": [{"role": "user", "content": "Hi"}]})
    assert counted.status_code == 200 and counted.json()["input_tokens"] > 0


def test_every_section_is_checked():
    # A client added to the doc needs a test here too.
    checked = {"The web page", "OpenAI Python client", "Anthropic Python client", "Ollama Python client",
               "Open WebUI", "Continue (VS Code, JetBrains)", "Claude Code"}  # fmt: skip
    assert set(sections()) == checked  # "The web page": tests/web/test_root.py and test_page.py
