"""``dmr run MODEL PROMPT`` and the server verbs (ps, df, unload, configure, status, logs, version)
as a user runs them: the real ``dmr`` command against a real server with API keys on."""

from __future__ import annotations

import json
import subprocess

import requests
from click.testing import CliRunner

from dmr_core import __version__, cli, cli_remote
from dmr_core.testing import free_port, wait_until
from tests.cli.conftest import API_KEY, DMR, cli_env, dmr

MODEL = "ai/smollm2"


def loaded(server) -> list[dict]:
    return requests.get(server.url + "/engines/ps", headers={"Authorization": f"Bearer {API_KEY}"}).json()


def test_run_with_a_prompt_prints_one_answer_and_exits(cli_server):
    done = dmr(cli_server, "run", MODEL, "Say hello.", "--max-tokens", "12")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() and done.stdout.endswith("\n")
    assert "Traceback" not in done.stderr and "Pulling" not in done.stderr  # the model was there


def test_piped_text_comes_before_the_prompt(cli_server, monkeypatch):
    sent = []
    real_send = cli_remote.send
    monkeypatch.setattr(cli_remote, "send", lambda api, body: sent.append(body) or real_send(api, body))
    for name, value in cli_env(cli_server).items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli.main, ["run", MODEL, "Summarise this.", "--max-tokens", "8"],
                                input="The cat sat on the mat.\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sent[0]["messages"] == [{"role": "user", "content": "The cat sat on the mat.\n\nSummarise this."}]
    assert result.stdout.strip()


def test_piped_text_alone_is_the_prompt(cli_server):
    done = dmr(cli_server, "run", MODEL, "--max-tokens", "8", stdin="Write one word.\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_ps_unload_and_their_json(cli_server):
    assert dmr(cli_server, "run", MODEL, "Hi", "--max-tokens", "2").returncode == 0
    assert wait_until(lambda: loaded(cli_server) and not loaded(cli_server)[0].get("in_use"), timeout=30)
    rows = json.loads(dmr(cli_server, "ps", "--json").stdout)
    assert [r["model_name"] for r in rows] == [MODEL] and rows[0]["backend_name"] == "llama.cpp"
    table = dmr(cli_server, "ps").stdout.splitlines()
    assert table[0].split()[:3] == ["MODEL", "NAME", "BACKEND"]
    assert table[1].split()[:3] == [MODEL, "llama.cpp", "completion"] and table[1].endswith(("ago", "just now"))

    unloaded = dmr(cli_server, "unload", MODEL)
    assert unloaded.returncode == 0 and unloaded.stdout.strip() == "Unloaded 1 model(s)."
    assert json.loads(dmr(cli_server, "ps", "--json").stdout) == []
    assert json.loads(dmr(cli_server, "unload", "--all", "--json").stdout) == {"unloaded_runners": 0}
    assert dmr(cli_server, "ps").stdout.strip() == "MODEL NAME   BACKEND   MODE   CONTEXT   KEEP ALIVE   LAST USED"


def test_df_status_and_version(cli_server):
    usage = json.loads(dmr(cli_server, "df", "--json").stdout)
    assert usage["models_disk_usage"] > 50_000_000  # SmolLM2-135M's GGUF
    table = dmr(cli_server, "df").stdout.splitlines()
    assert table[0].split() == ["TYPE", "SIZE"] and table[1].startswith("Models") and table[1].endswith("MB")

    engines = json.loads(dmr(cli_server, "status", "--json").stdout)
    assert engines["llama.cpp"].startswith("Running: llama.cpp")
    status = dmr(cli_server, "status").stdout
    assert f"dmr is running at http://127.0.0.1:{cli_server.port}" in status and "llama.cpp" in status

    assert dmr(cli_server, "version").stdout.splitlines() == [
        f"Client: dmr {__version__}", f"Server: dmr {__version__} at http://127.0.0.1:{cli_server.port}"]
    both = json.loads(dmr(cli_server, "version", "--json").stdout)
    assert both["client"] == {"version": __version__} and both["server"]["version"] == __version__


def test_configure_sends_the_context_size_and_flags(cli_server):
    done = dmr(cli_server, "configure", MODEL, "--context-size", "1024", "--", "--threads", "1")
    assert done.returncode == 0, done.stderr
    configs = requests.get(cli_server.url + "/engines/_configure", params={"model": MODEL},
                           headers={"Authorization": f"Bearer {API_KEY}"}).json()  # fmt: skip
    assert configs[0]["Config"]["ContextSize"] == 1024 and configs[0]["Config"]["RuntimeFlags"] == ["--threads", "1"]
    # An earlier test's request may still be loading the model (configure answers 409 while it is in use).
    assert wait_until(lambda: dmr(cli_server, "configure", MODEL, "--context-size", "-1").returncode == 0, timeout=60)


def test_server_errors_are_one_line_with_the_status(cli_server):
    for args in (["unload", "ai/no-such-model"], ["configure", MODEL, "--", "--model", "x"], ["ps"]):
        done = dmr(cli_server, *args, key=None if args == ["ps"] else API_KEY)
        assert done.returncode == 1, (args, done.stdout)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("Error: 401 UNAUTHORIZED: a valid API key is required")  # no DMR_API_KEY
    missing = dmr(cli_server, "unload", "ai/no-such-model").stderr
    assert missing.startswith("Error: 404 NOT FOUND: ") and "no-such-model" in missing
    bad_flag = dmr(cli_server, "configure", MODEL, "--", "--model", "x").stderr
    assert bad_flag.startswith("Error: 400 BAD REQUEST: runtime flag '--model' is not allowed")


def test_no_server_is_one_line_saying_how_to_start_one():
    env = {**cli_env_without_server(), "DMR_HOST": f"127.0.0.1:{free_port()}"}
    for args in (["run", MODEL, "Hi"], ["ps"], ["status"]):
        done = subprocess.run([DMR, *args], env=env, input="", capture_output=True, text=True, timeout=60)
        assert done.returncode == 1
        assert done.stderr.strip().splitlines() == [
            f"Error: no dmr server answers at {env['DMR_HOST'].join(['http://', ''])}: start one with `make run` "
            "or `dmr serve` (or set DMR_HOST)"]  # fmt: skip


def cli_env_without_server() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("DMR_HOST", "DMR_API_KEY")}


def test_logs_prints_and_follows_the_server_log(cli_server):
    assert "inference pool started" in dmr(cli_server, "logs").stdout
    assert "inference pool started" in cli_server.log()  # the file is a copy: the terminal keeps the log too
    follow = subprocess.Popen([DMR, "logs", "-f"], env=cli_env(cli_server), stdout=subprocess.PIPE, text=True)
    try:
        assert "inference pool started" in follow.stdout.readline() + follow.stdout.readline()
        marker = "/models/ai/followed-marker"
        requests.get(cli_server.url + marker, headers={"Authorization": f"Bearer {API_KEY}"})  # a 404, logged
        assert wait_until(lambda: marker in follow.stdout.readline(), timeout=30)
    finally:
        follow.terminate()
        follow.wait(timeout=10)
