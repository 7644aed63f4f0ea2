"""dmr's Anthropic replies checked with ``jsonschema`` against Anthropic's published response schema.

The schema, ``messages_api_schema.json`` beside this file, is the response part of Anthropic's
published OpenAPI spec, brought up to date from the official TypeScript SDK's generated types:
its ``$comment`` says exactly where each part comes from. Unlike the Python SDK's models (every
field optional), it requires what Anthropic always sends (``usage.cache_read_input_tokens``,
``citations`` on text blocks, …), so a field dmr leaves out fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

SCHEMA = json.loads(Path(__file__).with_name("messages_api_schema.json").read_text())


def _validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": SCHEMA["$defs"]})


MESSAGE, EVENT, PING, COUNT = (_validator(n) for n in ("Message", "RawMessageStreamEvent", "PingEvent",
                                                        "MessageTokensCount"))  # fmt: skip


def check_message(body: dict) -> dict:
    """A non-streamed reply (``POST /v1/messages``)."""
    MESSAGE.validate(body)
    return body


def check_count(body: dict) -> dict:
    """A ``/v1/messages/count_tokens`` reply."""
    COUNT.validate(body)
    return body


def check_events(sse: str) -> list[dict]:
    """Every event of a streamed reply, named as its ``type``; returns their payloads in order."""
    events = []
    for frame in filter(None, sse.split("\n\n")):
        name_line, data_line = frame.split("\n")
        data = json.loads(data_line.removeprefix("data: "))
        assert name_line == f"event: {data['type']}", frame
        (PING if data["type"] == "ping" else EVENT).validate(data)
        events.append(data)
    return events
