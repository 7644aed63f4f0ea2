"""With one slot a loaded model runs one job at a time; at most ``max_queue`` more wait, the rest
get a 503 (test_parallel.py checks the same past two slots)."""

from dmr_core.testing import wait_until
from tests.engines.conftest import HeldStream, InThread, chat, ollama_generate


def test_full_queue_is_503(server_with):
    server = server_with(DMR_PARALLEL="1", DMR_MAX_QUEUE="1")
    running = HeldStream(server)
    try:
        waiting = InThread(lambda: chat(server, max_tokens=4))
        assert wait_until(lambda: server.worker_stats()["jobs"]["running"] == 2, timeout=30)
        refused = chat(server)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error"]["code"] == "queue_full"
        assert "too many requests queued" in refused.json()["error"]["message"]
        ollama_refused = ollama_generate(server)
        assert ollama_refused.status_code == 503 and ollama_refused.headers["Retry-After"] == "1"
        assert "too many requests queued" in ollama_refused.json()["error"]
    finally:
        running.close()
    assert waiting.result().status_code == 200
