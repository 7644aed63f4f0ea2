"""Access-log lines, request ids, the pool's gauges and the switches, without a server."""

from __future__ import annotations

import json
import os

import pytest
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import Client

from dmr_core import accesslog, metrics
from dmr_core.exchanges import Exchange
from dmr_core.metrics_collector import runner_metrics, waiting
from dmr_core.settings import load_settings


def exchange(**environ) -> Exchange:
    return Exchange({"REQUEST_METHOD": "POST", "PATH_INFO": "/v1/chat/completions", "REMOTE_ADDR": "10.0.0.7",
                     **environ})  # fmt: skip


def test_incoming_request_ids_are_kept_only_when_sane():
    assert exchange(HTTP_X_REQUEST_ID="0f3a-b.c:d_e").id == "0f3a-b.c:d_e"
    for odd in ("", "a b", "x" * 129, 'a"b', "a\nb", "é"):
        made = exchange(HTTP_X_REQUEST_ID=odd).id
        assert made != odd and len(made) == 32 and int(made, 16) >= 0


def test_text_lines_escape_what_could_forge_a_line():
    entry = exchange(PATH_INFO='/v1/x\nid=forged "q"')
    entry.status, entry.model = 404, "ai/smollm2"
    line = accesslog.as_text(accesslog.fields(entry, 0.25))
    assert "\n" not in line and line.count(" id=") == 1
    assert 'path="/v1/x\\nid=forged \\"q\\""' in line
    assert " status=404 model=ai/smollm2 prompt_tokens=- completion_tokens=- ttft=- duration=0.25" in line


def test_json_lines_carry_tokens_and_ttft():
    entry = exchange()
    entry.status = 200
    entry.first_output = entry.started + 0.125
    entry.add_usage(30, 5)
    entry.add_usage(30, 7)  # a second choice
    values = json.loads(accesslog.as_json(accesslog.fields(entry, 1.5)))
    assert {k: values[k] for k in ("method", "remote", "status", "prompt_tokens", "completion_tokens", "ttft")} == {
        "method": "POST", "remote": "10.0.0.7", "status": 200, "prompt_tokens": 60, "completion_tokens": 12,
        "ttft": 0.125}  # fmt: skip
    assert values["time"].endswith("Z") and values["duration"] == 1.5


def test_settings_for_metrics_and_logs():
    assert load_settings({"DISABLE_METRICS": "1"}).disable_metrics is True
    assert load_settings({}).disable_metrics is False
    assert load_settings({"DMR_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(ValueError, match="log_format"):
        accesslog.AccessLog.from_settings(load_settings({}, log_format="xml"))


def test_disabled_metrics_answer_404(tmp_path, monkeypatch):
    from dmr_core.app import create_app

    monkeypatch.setattr(metrics, "enabled", metrics.enabled)  # restored after the test
    app = create_app(load_settings({}, store=str(tmp_path / "store"), disable_metrics=True, access_log="off"))
    reply = Client(app).get("/metrics")
    assert reply.status_code == 404 and reply.headers["X-Request-Id"]
    reply.close()


def test_pool_gauges_from_runner_rows():
    rows = [{"engine": "llama.cpp", "model_name": "ai/a", "mode": "completion", "loading": False, "refs": 5,
             "slots": 2, "memory": 100},
            {"engine": "llama.cpp", "model_name": "ai/a", "mode": "completion", "loading": True, "refs": 1,
             "slots": 1, "memory": 50},
            {"engine": "llama.cpp", "model_name": "ai/b", "mode": "embedding", "loading": False, "refs": 1,
             "slots": 2, "memory": 7}]  # fmt: skip
    assert [waiting(row) for row in rows] == [3, 1, 0]
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in runner_metrics(rows) for s in f.samples}
    a = (("engine", "llama.cpp"), ("mode", "completion"), ("model", "ai/a"))
    b = (("engine", "llama.cpp"), ("mode", "embedding"), ("model", "ai/b"))
    assert samples == {("dmr_runners_loaded", a): 1, ("dmr_runner_memory_bytes", a): 150,
                       ("dmr_runners_loaded", b): 1, ("dmr_runner_memory_bytes", b): 7,
                       ("dmr_queue_depth", (("model", "ai/a"),)): 4, ("dmr_queue_depth", (("model", "ai/b"),)): 0}


def test_scrape_without_a_multiprocess_directory_reads_this_process(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setattr(metrics, "enabled", True)
    metrics.generation_finished("unit/model", 11, 4, 0.02)
    families = {f.name: f for f in text_string_to_metric_families(metrics.scrape().decode())}
    tokens = {s.labels["model"]: s.value for s in families["dmr_prompt_tokens"].samples if s.name.endswith("_total")}
    assert tokens["unit/model"] >= 11


def test_the_multiprocess_directory_is_named_and_emptied_at_start(tmp_path, monkeypatch):
    from dmr_core import metrics_dir

    monkeypatch.setenv(metrics_dir.ENV, "")  # restored after the test, whatever prepare() sets
    settings = load_settings({}, store=str(tmp_path / "store"), pool_dir=str(tmp_path / "pool"))
    own = tmp_path / "pool" / "metrics"
    own.mkdir(parents=True)
    (own / "counter_4242.db").write_bytes(b"stale")
    assert metrics_dir.prepare(settings) == own
    assert list(own.iterdir()) == [] and os.environ[metrics_dir.ENV] == str(own)
    operators = tmp_path / "prom"
    operators.mkdir()
    (operators / "gauge_livesum_7.db").write_bytes(b"stale")
    (operators / "keep.txt").write_text("not ours")
    monkeypatch.setenv(metrics_dir.ENV, str(operators))
    assert metrics_dir.prepare(settings) == operators
    assert [p.name for p in operators.iterdir()] == ["keep.txt"]
