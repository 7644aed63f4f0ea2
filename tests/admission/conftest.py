"""One real server with every admission setting on: API keys (two in ``DMR_API_KEYS``, one in a
key file), a CORS allow list, a small body limit, a prompt-token limit and a per-key concurrency
limit. Each test module of this package uses it; its settings are in :data:`ENV`."""

import json
from pathlib import Path

import pytest
import requests

from dmr_core.testing import short_tempdir, start_server, stop_server
from tests.support.long_stories import LONG_STORY, NEVER_ENDS

MODEL = "ai/smollm2"
KEY_A, KEY_B, FILE_KEY = "key-alpha-5f2c", "key-bravo-91d0", "key-from-file-77e3"
ALLOWED_ORIGIN = "http://app.example:3000"
MAX_BODY = 64 * 1024
MAX_PROMPT_TOKENS = 60
MAX_PER_KEY = 2


def key_file() -> Path:
    path = short_tempdir("dmr-keys-") / "keys"
    path.write_text(f"# team keys\n\n{FILE_KEY}   # the file's own\n")
    return path


@pytest.fixture(scope="package")
def guarded_server(model_store):
    env = {"DMR_API_KEYS": f"{KEY_A}, {KEY_B}", "DMR_API_KEYS_FILE": str(key_file()),
           "DMR_CORS_ORIGINS": ALLOWED_ORIGIN, "DMR_MAX_BODY": str(MAX_BODY),
           "DMR_MAX_PROMPT_TOKENS": str(MAX_PROMPT_TOKENS), "DMR_MAX_CONCURRENT_PER_KEY": str(MAX_PER_KEY),
           "DMR_PARALLEL": "3"}  # fmt: skip
    server = start_server(model_store, **env)
    try:
        yield server
    finally:
        stop_server(server)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def post_json(server, path, body, headers=None, **kwargs):
    data = body if isinstance(body, (bytes, str)) or not isinstance(body, (dict, list)) else json.dumps(body)
    return requests.post(server.url + path, data=data, timeout=120,
                         headers={"Content-Type": "application/json", **(headers or {})}, **kwargs)  # fmt: skip


def chat_body(content="Hi", max_tokens=2, **extra):
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, **extra}


class HeldStream:
    """A long streamed chat whose first chunk has arrived: it runs until closed."""

    def __init__(self, server, key):
        body = chat_body(LONG_STORY[0]["content"], 4000, stream=True, temperature=1.0, logit_bias=NEVER_ENDS)
        self.response = post_json(server, "/engines/v1/chat/completions", body, bearer(key), stream=True)
        assert self.response.status_code == 200, self.response.text
        self.lines = self.response.iter_lines()
        assert next(line for line in self.lines if line).startswith(b"data: ")

    def close(self):
        self.response.close()
