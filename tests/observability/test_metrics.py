"""``GET /metrics`` after real traffic from the official clients, parsed with prometheus-client's
own parser: exact request counts, the tokens the clients were told, histogram observation counts,
and the pool's gauges, with the default 2 web workers both counting (multiprocess mode)."""

import collections
import json
import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import anthropic
import ollama
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from dmr_core.distribution.push import push_model
from dmr_core.store.layout import ModelStore
from dmr_core.testing import openai_client_for, wait_until

from .conftest import MODEL, access_lines

CHAT = "/engines/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Name three colours."}]


def scrape(server, ids=None) -> dict[tuple[str, frozenset], float]:
    reply = requests.get(server.url + "/metrics", headers=ids.header() if ids else None, timeout=30)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(reply.text) for sample in family.samples}  # fmt: skip


def by_name(samples: dict, name: str) -> dict[frozenset, float]:
    return {labels: value for (sample, labels), value in samples.items() if sample == name}


def grown(before: dict, after: dict, name: str) -> dict[frozenset, float]:
    """How much each series of ``name`` grew (only those that did)."""
    old, new = by_name(before, name), by_name(after, name)
    return {labels: value - old.get(labels, 0) for labels, value in new.items() if value != old.get(labels, 0)}


def request_labels(dialect, route, method, status) -> frozenset:
    return frozenset({"dialect": dialect, "route": route, "method": method, "status": str(status)}.items())


def worker_pids_counting(server) -> set[int]:
    files = (server.pool_dir / "metrics").glob("counter_*.db")
    return {int(re.fullmatch(r"counter_(\d+)\.db", f.name).group(1)) for f in files}


class RequestIds:
    """Request ids for the requests a test sends, so that it can wait for their ends: a request is
    counted (and logged) when the server closes its response, just after the client has it all."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def header(self) -> dict[str, str]:
        self.sent.append(f"test-{len(self.sent)}-{os.getpid()}-{time.monotonic_ns()}")
        return {"X-Request-Id": self.sent[-1]}

    def wait_until_ended(self, server) -> None:
        assert wait_until(lambda: set(self.sent) <= set(access_lines(server)), timeout=30)


def spread_over_both_workers(server, ids: RequestIds) -> None:
    """Concurrent requests on fresh connections until both web workers have counted some."""
    workers = set(server.web_worker_pids())
    assert len(workers) == 2
    with ThreadPoolExecutor(16) as pool:
        for _ in range(20):
            headers = [ids.header() for _ in range(32)]
            list(pool.map(lambda h: requests.get(server.url + "/", headers=h, timeout=30), headers))
            ids.wait_until_ended(server)
            if workers <= worker_pids_counting(server):
                return
    pytest.fail(f"only {worker_pids_counting(server)} of the web workers {workers} counted requests")


def traffic(server, ids: RequestIds) -> tuple[collections.Counter, list[tuple[int, int]]]:
    """Streamed and not, in each dialect's official client; what was sent, and each generation's
    (prompt, completion) tokens as its client was told."""
    sent, usages = collections.Counter(), []
    openai = openai_client_for(server)
    reply = openai.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4,
                                           extra_headers=ids.header())  # fmt: skip
    usages.append((reply.usage.prompt_tokens, reply.usage.completion_tokens))
    stream = openai.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5, stream=True,
                                            stream_options={"include_usage": True}, extra_headers=ids.header())  # fmt: skip
    usage = [chunk.usage for chunk in stream if chunk.usage][-1]
    usages.append((usage.prompt_tokens, usage.completion_tokens))
    sent[request_labels("openai", CHAT, "POST", 200)] += 2

    claude = anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0, timeout=120)
    message = claude.messages.create(model=MODEL, max_tokens=4, messages=MESSAGES, extra_headers=ids.header())
    with claude.messages.stream(model=MODEL, max_tokens=5, messages=MESSAGES, extra_headers=ids.header()) as stream:
        streamed = stream.get_final_message()
    for usage in (message.usage, streamed.usage):  # Anthropic's prompt: evaluated + read from cache
        usages.append((usage.input_tokens + (usage.cache_read_input_tokens or 0), usage.output_tokens))
    sent[request_labels("anthropic", "/v1/messages", "POST", 200)] += 2

    # Each with a context size of its own: a fresh runner, so no prompt tokens come from a cache
    # (Ollama's prompt_eval_count leaves those out, and its client is told nothing else).
    chat = ollama.Client(host=server.url, timeout=120, headers=ids.header()).chat(
        model=MODEL, messages=MESSAGES, options={"num_predict": 4, "num_ctx": 2048})
    last = list(ollama.Client(host=server.url, timeout=120, headers=ids.header()).chat(
        model=MODEL, messages=MESSAGES, options={"num_predict": 5, "num_ctx": 1024}, stream=True))[-1]
    usages += [(chat.prompt_eval_count, chat.eval_count), (last.prompt_eval_count, last.eval_count)]
    sent[request_labels("ollama", "/api/chat", "POST", 200)] += 2

    missing = requests.post(server.url + CHAT, json={"model": "ai/nothing", "messages": MESSAGES},
                            headers=ids.header(), timeout=30)  # fmt: skip
    assert missing.status_code == 404
    sent[request_labels("openai", CHAT, "POST", 404)] += 1
    return sent, usages


def test_metrics_count_real_traffic_across_web_workers(observed_server):
    server, ids = observed_server, RequestIds()
    requests.post(server.url + CHAT, json={"model": MODEL, "messages": MESSAGES, "max_tokens": 1},
                  headers=ids.header(), timeout=120)  # fmt: skip
    spread_over_both_workers(server, ids)
    before = scrape(server, ids)
    sent, usages = traffic(server, ids)
    ids.wait_until_ended(server)
    after = scrape(server)

    sent[request_labels("dmr", "/metrics", "GET", 200)] += 1  # the first scrape
    assert grown(before, after, "dmr_http_requests_total") == dict(sent)
    durations = collections.Counter()
    for labels, count in sent.items():
        durations[frozenset((k, v) for k, v in labels if k in ("dialect", "route"))] += count
    assert grown(before, after, "dmr_http_request_duration_seconds_count") == dict(durations)

    model = frozenset({"model": MODEL}.items())
    assert grown(before, after, "dmr_prompt_tokens_total") == {model: sum(p for p, _ in usages)}
    assert grown(before, after, "dmr_completion_tokens_total") == {model: sum(c for _, c in usages)}
    assert grown(before, after, "dmr_time_to_first_token_seconds_count") == {model: sum(c >= 1 for _, c in usages)}
    assert grown(before, after, "dmr_inter_token_latency_seconds_count") == {model: sum(c >= 2 for _, c in usages)}
    buckets = by_name(after, "dmr_time_to_first_token_seconds_bucket")
    ttft_count = by_name(after, "dmr_time_to_first_token_seconds_count")[model]
    assert buckets[frozenset({"model": MODEL, "le": "+Inf"}.items())] == ttft_count

    # The scrape itself, summed over the live workers.
    assert by_name(after, "dmr_http_requests_in_flight") == {frozenset(): 1.0}
    assert by_name(after, "dmr_pool_up") == {frozenset(): 1.0}
    runner = frozenset({"engine": "llama.cpp", "model": MODEL, "mode": "completion"}.items())
    assert by_name(after, "dmr_runners_loaded") == {runner: 3.0}  # the default context, and Ollama's two num_ctx
    assert by_name(after, "dmr_runner_memory_bytes")[runner] > 100e6
    assert by_name(after, "dmr_queue_depth") == {frozenset({"model": MODEL}.items()): 0.0}
    assert by_name(after, "dmr_inference_worker_up") == {frozenset({"worker": "0", "device": "cpu"}.items()): 1.0}


def test_a_dead_web_worker_leaves_no_live_gauge(observed_server):
    """``child_exit`` marks a killed worker dead: its in-flight gauge stops counting."""
    server = observed_server
    spread_over_both_workers(server, RequestIds())
    victim = server.web_worker_pids()[0]
    livesum = server.pool_dir / "metrics" / f"gauge_livesum_{victim}.db"
    assert livesum.exists()
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: not livesum.exists(), timeout=15)
    assert wait_until(lambda: len(server.web_worker_pids()) == 2 and victim not in server.web_worker_pids(), 30)
    assert by_name(scrape(server), "dmr_http_requests_in_flight") == {frozenset(): 1.0}


def test_pulled_bytes_are_counted(observed_server, registry):
    server, ids = observed_server, RequestIds()
    store = ModelStore(server.store)
    name = f"{registry.host}/ai/smollm2:latest"
    store.add_tag(MODEL, name)
    list(push_model(store, name))
    model_id = store.resolve(name).id
    assert requests.delete(server.url + f"/models/{model_id}", params={"force": "true"}, timeout=60).status_code == 200
    before = scrape(server, ids)
    pulled = requests.post(server.url + "/models/create", json={"from": name},
                           headers={"Accept": "application/json", **ids.header()}, timeout=300)  # fmt: skip
    assert pulled.status_code == 200, pulled.text
    events = [json.loads(line) for line in pulled.text.splitlines() if line]
    assert events[-1]["type"] == "success"
    manifest = requests.get(f"http://{registry.host}/v2/ai/smollm2/manifests/latest", timeout=30,
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).json()  # fmt: skip
    layers = sum(layer["size"] for layer in manifest["layers"])
    assert {event["total"] for event in events if event["type"] == "progress"} == {layers}
    ids.wait_until_ended(server)
    after = scrape(server)
    # Every blob was downloaded: the layers and the config.
    assert grown(before, after, "dmr_pull_bytes_total") == {frozenset(): float(layers + manifest["config"]["size"])}
    store.add_tag(name, MODEL)  # as it was, for any later test
