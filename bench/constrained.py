"""Constrained decoding benchmark: plain chat against json_object, json_schema and a forced tool call.

One dmr server (gunicorn + gevent + inference pool) on the default model; every round visits the
four kinds (order rotating), each an OpenAI chat completion, greedy, with the same budget.
Per round each constrained kind's decode rate (tokens/s after the first token) is divided by the
plain one of the same round; the report gives the median ratio over rounds, with the spread.

    .venv/bin/python bench/constrained.py [--rounds 6] [--tokens 96]

Never run it beside another CPU-heavy job: ggml's spinning threads make any contention dominate.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dmr_core import bundled_models  # noqa: E402
from dmr_core.pool.devices import physical_cores  # noqa: E402
from dmr_core.store.layout import ModelStore  # noqa: E402
from dmr_core.testing import MODELS_CACHE, short_tempdir, start_server, stop_server  # noqa: E402

CONTEXT = 2048
ASK = ("Write a long story about a lighthouse keeper who finds a letter in a bottle. Answer in JSON, with "
       'the keys "title" and "story".')
STORY_SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}, "story": {"type": "string"}},
                "required": ["title", "story"], "additionalProperties": False}  # fmt: skip
SAVE_STORY = {"type": "function", "function": {"name": "save_story", "description": "Save a story",
                                               "parameters": STORY_SCHEMA}}  # fmt: skip
#: What each kind adds to the same chat request.
KINDS = {
    "plain": {},
    "json_object": {"response_format": {"type": "json_object"}},
    "json_schema": {"response_format": {"type": "json_schema",
                                        "json_schema": {"name": "story", "schema": STORY_SCHEMA}}},
    "tool_call": {"tools": [SAVE_STORY], "tool_choice": {"type": "function", "function": {"name": "save_story"}}},
}  # fmt: skip


class Client:
    """Non-streamed chat completions, timed whole.

    A tool call is announced only once its name is complete, so stream events cannot time its
    first token. Instead each measurement sends the request three times: ``max_tokens`` 1 (the
    prompt is evaluated and stays cached in the slot), 1 again (the cached prompt, one token: the
    fixed cost of a request), then the full budget. Decode rate: the tokens after the first over
    the time the full request took beyond the fixed cost. The same for every kind, streaming or not.
    """

    def __init__(self, url: str) -> None:
        self.url = url + "/engines/v1/chat/completions"
        self.session = requests.Session()

    def run(self, kind: str, round_no: int, tokens: int) -> tuple[float, int]:
        body = {"model": "ai/smollm2", "messages": [{"role": "user", "content": f"({round_no}) {ASK}"}],
                "temperature": 0, **KINDS[kind]}  # fmt: skip
        self._post(body, 1)
        fixed, _ = self._post(body, 1)
        elapsed, produced = self._post(body, tokens)
        if produced < 2:
            raise RuntimeError(f"{kind}: too little output to time ({produced} tokens)")
        return (produced - 1) / (elapsed - fixed), produced

    def _post(self, body: dict, tokens: int) -> tuple[float, int]:
        start = time.perf_counter()
        response = self.session.post(self.url, json={**body, "max_tokens": tokens})
        elapsed = time.perf_counter() - start
        response.raise_for_status()
        return elapsed, response.json()["usage"]["completion_tokens"]


def measure(client: Client, rounds: int, tokens: int) -> dict[str, list[tuple[float, int]]]:
    raw: dict[str, list] = {kind: [] for kind in KINDS}
    for kind in KINDS:  # load the model and warm every path before timing
        client.run(kind, -1, 16)
    names = list(KINDS)
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for kind in order:
            raw[kind].append(client.run(kind, r, tokens))
        print(f"round {r}: " + " | ".join(f"{k} {raw[k][-1][0]:.1f} tok/s ({raw[k][-1][1]})" for k in names), flush=True)
    return raw


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}..{max(values):.3f}]"


def report(raw: dict[str, list[tuple[float, int]]]) -> None:
    print("\n== decode tok/s after the first token, ratio to plain in the same round (median [min..max]) ==")
    plain = [r[0] for r in raw["plain"]]
    print(f"plain:       {statistics.median(plain):.1f} tok/s, {statistics.median(r[1] for r in raw['plain']):.0f} tokens")
    for kind in list(KINDS)[1:]:
        ratios = [r[0] / p for r, p in zip(raw[kind], plain)]
        rate, count = statistics.median(r[0] for r in raw[kind]), statistics.median(r[1] for r in raw[kind])
        print(f"{kind + ':':12} {rate:.1f} tok/s, {count:.0f} tokens, ratio {summary(ratios)}   (target >= 0.9)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=96)
    args = parser.parse_args()
    gguf = bundled_models.fetch(bundled_models.DEFAULT_MODEL, MODELS_CACHE)
    store = short_tempdir("dmr-bench-store-")
    ModelStore(store).import_gguf(gguf, "ai/smollm2")
    server = start_server(store, DMR_CONTEXT_SIZE=str(CONTEXT), DMR_THREADS=str(physical_cores()))
    try:
        raw = measure(Client(server.url), args.rounds, args.tokens)
    finally:
        stop_server(server)
        shutil.rmtree(store, ignore_errors=True)
    report(raw)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
