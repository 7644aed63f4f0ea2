"""``dmr serve`` runs the same server as ``conf/gunicorn.conf.py``: gevent workers and the pool."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from dmr_core.testing import free_port, pid_alive, short_tempdir, wait_until


def test_dmr_serve_answers_and_stops_cleanly(model_store):
    port = free_port()
    pool_dir = short_tempdir("dmr-serve-")
    env = {**os.environ, "DMR_POOL_DIR": str(pool_dir)}
    dmr = str(Path(sys.executable).parent / "dmr")
    process = subprocess.Popen([dmr, "serve", "--bind", f"127.0.0.1:{port}", "--store", str(model_store),
                                "--workers", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"

        def up():
            try:
                return requests.get(url + "/engines/v1/models", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        assert wait_until(up, timeout=60), process.stdout.read1().decode() if process.poll() is not None else "not up"
        assert requests.get(url + "/engines/v1/models").json()["data"][0]["id"] == "ai/smollm2:latest"
        reply = requests.post(url + "/v1/chat/completions", json={"model": "ai/smollm2", "max_tokens": 3,
                                                                  "messages": [{"role": "user", "content": "Hi"}]})  # fmt: skip
        assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"]
        status = requests.get(url + "/").text
        assert "running" in status
        from dmr_core.pool.client import PoolClient

        pool = PoolClient(pool_dir, connect_timeout=5).status()
        pids = [pool["pid"]] + [w["pid"] for w in pool["workers"]]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=15)
