"""dmr on a Unix socket (``DMR_BIND=unix:/path``): gunicorn's own ``unix:`` bind, the socket's
permissions (``bind_mode``), and clients that speak HTTP over it: Debian's curl, ``http.client``,
and the official OpenAI client through httpx's ``uds`` transport."""

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from dmr_core import unix_socket
from dmr_core.settings import load_settings
from dmr_core.testing import UnixHTTPConnection, pid_alive, short_tempdir, wait_until

MODEL = "ai/smollm2"


def mode_of(path: Path) -> int:
    info = os.stat(path)
    assert stat.S_ISSOCK(info.st_mode), f"{path} is not a socket"
    return stat.S_IMODE(info.st_mode)


def get(socket_path: Path, path: str) -> tuple[int, bytes]:
    connection = UnixHTTPConnection(socket_path)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def answers(socket_path: Path) -> bool:
    try:
        return get(socket_path, "/")[0] == 200
    except OSError:  # not there yet, or bound but not listening yet
        return False


@pytest.fixture
def no_config(tmp_path) -> str:
    """An empty settings file: only the defaults and the environment given count."""
    (tmp_path / "dmr.toml").write_text("")
    return str(tmp_path / "dmr.toml")


def test_tcp_stays_the_default(no_config):
    settings = load_settings(environ={"DMR_CONFIG": no_config})
    assert settings.bind == "127.0.0.1:12434"
    assert unix_socket.gunicorn_settings(settings) == {}  # gunicorn's own umask, untouched


def test_a_unix_bind_sets_gunicorns_umask_from_bind_mode(no_config):
    settings = load_settings(environ={"DMR_CONFIG": no_config, "DMR_BIND": "unix:/run/dmr/dmr.sock",
                                      "DMR_BIND_MODE": "0640"})  # fmt: skip
    assert unix_socket.socket_path(settings.bind) == "/run/dmr/dmr.sock"
    assert unix_socket.socket_path("unix:///run/dmr/dmr.sock") == "/run/dmr/dmr.sock"
    assert unix_socket.gunicorn_settings(settings) == {"umask": 0o137}


@pytest.mark.parametrize("mode", ["0999", "rw-rw----", "1777", ""])
def test_a_bad_bind_mode_is_a_clear_error(no_config, mode):
    settings = load_settings(environ={"DMR_CONFIG": no_config, "DMR_BIND": "unix:/x.sock", "DMR_BIND_MODE": mode})
    with pytest.raises(ValueError, match="bind_mode must be octal permissions such as 0660"):
        unix_socket.gunicorn_settings(settings)


def test_the_socket_has_the_default_mode_0660(unix_server):
    assert mode_of(unix_server.unix_socket) == 0o660


def test_curl_over_the_unix_socket(unix_server):
    reply = subprocess.run(["curl", "-sS", "--fail", "--unix-socket", str(unix_server.unix_socket),
                            "http://localhost/engines/v1/models"], capture_output=True, check=True, timeout=60)  # fmt: skip
    assert json.loads(reply.stdout)["data"][0]["id"] == "ai/smollm2:latest"


def test_curl_chat_over_the_unix_socket_as_in_dmrs_docs(unix_server):
    """DMR's own example, verbatim but for the socket: a chat under the Docker-socket prefix."""
    body = json.dumps({"model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]})
    reply = subprocess.run(["curl", "-sS", "--fail", "--unix-socket", str(unix_server.unix_socket),
                            "localhost/exp/vDD4.40/engines/v1/chat/completions",
                            "-H", "Content-Type: application/json", "-d", body],
                           capture_output=True, check=True, timeout=120)  # fmt: skip
    reply = json.loads(reply.stdout)
    assert reply["object"] == "chat.completion" and reply["choices"][0]["message"]["content"]


def test_the_openai_client_streams_over_the_unix_socket(unix_server):
    transport = httpx.HTTPTransport(uds=str(unix_server.unix_socket))
    with httpx.Client(transport=transport, timeout=120) as http_client:
        client = openai.OpenAI(base_url="http://localhost/engines/v1", api_key="unused", max_retries=0,
                               http_client=http_client, _strict_response_validation=True)  # fmt: skip
        stream = client.chat.completions.create(model=MODEL, max_tokens=8, stream=True,
                                                messages=[{"role": "user", "content": "Say hello"}])  # fmt: skip
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text


def test_dmr_serve_binds_a_unix_socket_with_the_mode_asked_for(model_store):
    """``dmr serve --bind unix:...`` with ``DMR_BIND_MODE=0600``; the socket is gone after SIGTERM."""
    pool_dir = short_tempdir("dmr-serve-")
    sock = pool_dir / "serve.sock"
    env = {**os.environ, "DMR_POOL_DIR": str(pool_dir), "DMR_BIND_MODE": "0600"}
    dmr = str(Path(sys.executable).parent / "dmr")
    process = subprocess.Popen([dmr, "serve", "--bind", f"unix:{sock}", "--store", str(model_store), "--workers", "1"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        assert wait_until(lambda: answers(sock), timeout=60), "dmr serve never answered on its socket"
        assert mode_of(sock) == 0o600
        status, body = get(sock, "/models")
        assert status == 200 and json.loads(body)[0]["tags"]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert not sock.exists()
    assert not pid_alive(process.pid)
