"""The CLI's client side without a server: addresses, error lines, progress events, tables; and
``/version`` and ``/logs`` through the Flask app."""

import json
from datetime import datetime, timezone

import pytest
import requests

from dmr_core import __version__
from dmr_core.api_client import ApiClient, base_url, error_text, status_line
from dmr_core.cli_remote import ago, human_size, table
from dmr_core.distribution.progress import LayerProgress, ProgressEvent
from dmr_core.server_log import read_log


def response(status: int, body: str, reason: str = "Not Found") -> requests.Response:
    answer = requests.Response()
    answer.status_code, answer.reason, answer._content = status, reason, body.encode()
    return answer


@pytest.mark.parametrize(("host", "url"), [
    (None, "http://127.0.0.1:12434"), ("10.0.0.2:8080", "http://10.0.0.2:8080"),
    ("https://models.example/", "https://models.example"),
])  # fmt: skip
def test_dmr_host(monkeypatch, host, url):
    monkeypatch.delenv("DMR_HOST", raising=False)
    if host:
        monkeypatch.setenv("DMR_HOST", host)
    assert base_url() == url


def test_the_key_is_sent_as_a_bearer_token(monkeypatch):
    monkeypatch.setenv("DMR_API_KEY", "k-123")
    assert ApiClient.from_environment()._headers()["Authorization"] == "Bearer k-123"
    monkeypatch.delenv("DMR_API_KEY")
    assert "Authorization" not in ApiClient.from_environment()._headers()


@pytest.mark.parametrize(("body", "message"), [
    ("model not found\n", "model not found"),  # DMR's plain text
    ('{"error": {"message": "bad temperature", "type": "invalid_request_error"}}', "bad temperature"),  # OpenAI
    ('{"type": "error", "error": {"type": "not_found_error", "message": "no such model"}}', "no such model"),
    ('{"error": "model \\"x\\" not found"}', 'model "x" not found'),  # Ollama
])  # fmt: skip
def test_every_dialects_error_is_one_line(body, message):
    assert error_text(response(404, body)) == message
    assert status_line(response(404, body)) == f"404 Not Found: {message}"


def test_progress_events_read_back_from_the_server_stream():
    event = ProgressEvent("progress", "Downloaded: 1.00 MB", 300, LayerProgress("sha256:ab", 200, 100))
    assert ProgressEvent.from_dict(json.loads(event.to_json())) == event
    done = {"type": "success", "message": "Model pulled successfully", "total": 0, "layer": {"size": 0, "current": 0},
            "mode": "pull"}  # fmt: skip
    assert ProgressEvent.from_dict(done) == ProgressEvent("success", "Model pulled successfully")


def test_tables_sizes_and_times():
    assert table(["A", "LONG NAME"], [["x", 1], ["yyyy", ""]]).splitlines() == ["A      LONG NAME", "x      1", "yyyy"]
    assert [human_size(n) for n in (512, 93_810_000, 2_500_000_000)] == ["512 B", "93.81 MB", "2.50 GB"]
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert ago("0001-01-01T00:00:00Z", now) == "in use"
    assert ago("2026-01-01T11:57:30Z", now) == "2 minutes ago"
    assert ago("2026-01-01T11:59:59Z", now) == "1 second ago" and ago("2026-01-01T12:00:00Z", now) == "just now"


def test_read_log_follows_until_the_client_goes(tmp_path):
    log = tmp_path / "dmr.log"
    log.write_bytes(b"one\n")
    assert b"".join(read_log(log, follow=False, gone=lambda: False)) == b"one\n"
    checks = []

    def gone():  # the client leaves at the second quiet check; a line arrives in between
        checks.append(True)
        if len(checks) == 1:
            log.write_bytes(b"one\ntwo\n")
        return len(checks) > 1

    assert b"".join(read_log(log, follow=True, gone=gone, poll=0)) == b"one\ntwo\n"


def test_version_and_logs_routes(tmp_path):
    from dmr_core.app import create_app
    from dmr_core.settings import load_settings

    def client(**settings):
        return create_app(load_settings(store=str(tmp_path / "store"), pool_dir=str(tmp_path / "pool"),
                                        **settings)).test_client()  # fmt: skip

    plain = client()
    assert plain.get("/version").get_json() == {"version": __version__}
    missing = plain.get("/logs")
    assert missing.status_code == 404 and missing.mimetype == "text/plain"
    assert "DMR_LOG_FILE" in missing.get_data(as_text=True)
    (tmp_path / "dmr.log").write_text("started\n")
    assert client(log_file=str(tmp_path / "dmr.log")).get("/logs").get_data(as_text=True) == "started\n"
