"""Prompt reuse across interleaved conversations: does a chat's next turn skip its cached prefix?

A server with default settings (``parallel`` 2, the default prompt cache) serves three chats A, B
and C of ~600 tokens each (one shared system prompt, then each its own document), turn by turn in
the order A, B, A, B, C, A. Each later turn appends the assistant's reply and a new user message to
its conversation, so its prompt starts with everything the conversation's previous turn held. The
TTFT of each later turn is compared with its conversation's cold (first) turn, in the same run.

    .venv/bin/python bench/prompt_reuse.py [--tokens 8] [--server-env DMR_PROMPT_CACHE_MB=0]

Target: every later turn ≤ 0.3× its cold TTFT. C's turn evicts one conversation from the two slots,
so A's last turn is fast only if evicted slot states are kept (the host-memory prompt cache).
Never run it beside another CPU-heavy job: contention dominates the timings.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dmr_core import bundled_models  # noqa: E402
from dmr_core.store.layout import ModelStore  # noqa: E402
from dmr_core.testing import MODELS_CACHE, short_tempdir, start_server, stop_server  # noqa: E402

ORDER = "ABABCA"
TARGET = 0.3
SYSTEM = "You are a careful assistant. Answer in one short sentence, using only the document the user gives."
TOPICS = {
    "A": ("lighthouse", "keeper", "lamp", "storm", "island", "ship"),
    "B": ("orchard", "farmer", "apple", "frost", "ladder", "cider"),
    "C": ("observatory", "astronomer", "telescope", "comet", "dome", "star chart"),
}
QUESTIONS = ["What is the document about?", "Name one object it mentions.", "Summarise the last paragraph."]


def document(name: str) -> str:
    """A distinct ~550-token document per conversation, built from its own words."""
    place, person, thing, event, part, goal = TOPICS[name]
    lines = [f"Paragraph {i + 1}. The {person} of the {place} checked the {thing} at hour {i * 3 + 1}, "
             f"wrote about the {event} near the {part}, and counted {i * 7 + 2} steps towards the {goal}."
             for i in range(17)]  # fmt: skip
    return " ".join(lines)


class Chat:
    """One conversation sent to the OpenAI chat endpoint, streamed; remembers its turns."""

    def __init__(self, name: str, url: str, tokens: int) -> None:
        self.name, self.url, self.tokens = name, url + "/engines/v1/chat/completions", tokens
        self.messages = [{"role": "system", "content": SYSTEM},
                         {"role": "user", "content": f"{document(name)}\n\n{QUESTIONS[0]}"}]  # fmt: skip
        self.turns = 0

    def turn(self, session: requests.Session) -> dict:
        """Send the conversation so far; TTFT (s), usage, and the reply appended with a new question."""
        if self.turns:
            self.messages.append({"role": "user", "content": QUESTIONS[self.turns % len(QUESTIONS)]})
        body = {"model": "ai/smollm2", "messages": self.messages, "max_tokens": self.tokens, "temperature": 0,
                "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
        start, first, reply, usage = time.perf_counter(), None, [], {}
        with session.post(self.url, json=body, stream=True) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith(b"data: {"):
                    continue
                event = json.loads(line[6:])
                if event["choices"] and event["choices"][0]["delta"].get("content"):
                    first = first or time.perf_counter()
                    reply.append(event["choices"][0]["delta"]["content"])
                usage = event.get("usage") or usage
        self.messages.append({"role": "assistant", "content": "".join(reply)})
        self.turns += 1
        return {"ttft": (first or time.perf_counter()) - start, "usage": usage}


def run(url: str, tokens: int) -> list[tuple[str, int, dict]]:
    session = requests.Session()
    warm = {"model": "ai/smollm2", "prompt": "Hello", "max_tokens": 2, "temperature": 0}
    session.post(url + "/engines/v1/completions", json=warm).raise_for_status()  # loads the model
    chats = {name: Chat(name, url, tokens) for name in sorted(set(ORDER))}
    results = []
    for name in ORDER:
        number = chats[name].turns + 1
        result = chats[name].turn(session)
        usage = result["usage"]
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        print(f"{name}{number}: TTFT {result['ttft'] * 1000:7.1f} ms, prompt {usage.get('prompt_tokens')} tokens, "
              f"cached {cached}", flush=True)  # fmt: skip
        results.append((name, number, result))
    return results


def report(results: list[tuple[str, int, dict]]) -> bool:
    cold = {name: result["ttft"] for name, number, result in results if number == 1}
    print(f"\n== later turns: TTFT / that conversation's cold TTFT (target <= {TARGET}) ==")
    met = True
    for name, number, result in results:
        if number > 1:
            ratio = result["ttft"] / cold[name]
            met = met and ratio <= TARGET
            print(f"{name}{number}: {ratio:.3f}  ({result['ttft'] * 1000:.1f} / {cold[name] * 1000:.1f} ms)")
    print("target met" if met else "target NOT met")
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8, help="tokens generated per turn")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the server, e.g. DMR_PROMPT_CACHE_MB=0")  # fmt: skip
    args = parser.parse_args()
    gguf = bundled_models.fetch(bundled_models.DEFAULT_MODEL, MODELS_CACHE)
    store = short_tempdir("dmr-bench-store-")
    ModelStore(store).import_gguf(gguf, "ai/smollm2")
    server = start_server(store, **dict(item.split("=", 1) for item in args.server_env))
    try:
        results = run(server.url, args.tokens)
    finally:
        stop_server(server)
        shutil.rmtree(store, ignore_errors=True)
    report(results)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
