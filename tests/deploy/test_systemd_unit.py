"""``conf/dmr.service`` as docs/deploy.md describes it: systemd's own parser accepts it, a stop
waits out dmr's graceful timeout, its paths agree with ``conf/nginx.conf`` and with dmr's settings,
and gunicorn really tells systemd it is ready (``Type=notify`` from the main process).

systemd is not PID 1 here, so the unit is not started by systemd: ``systemd-analyze verify`` (Debian's
systemd package, offline) checks it, and the readiness message is caught on a socket of the test's
own, as systemd would receive it.
"""

import inspect
import re
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from dmr_core import unix_socket
from dmr_core.bytesize import parse_size
from dmr_core.pool.keeper import PoolKeeper
from dmr_core.serving import gunicorn_settings
from dmr_core.settings import PROJECT_ROOT, Settings, load_settings
from dmr_core.testing import short_tempdir, start_unix_server, stop_server

UNIT_FILE = PROJECT_ROOT / "conf" / "dmr.service"
SITE_FILE = PROJECT_ROOT / "conf" / "nginx.conf"
SETTINGS_FILE = PROJECT_ROOT / "conf" / "dmr.toml"
INSTALLED_ROOT = "/opt/dmr"


def read_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file's ``Key=value`` lines by section; a key may repeat (``Environment=``)."""
    sections: dict[str, dict[str, list[str]]] = {}
    section = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = sections.setdefault(line[1:-1], {})
        elif line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            section.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return read_unit(UNIT_FILE.read_text())["Service"]


def unit_environment(service) -> dict[str, str]:
    return dict(line.partition("=")[::2] for line in service["Environment"])


def nginx_directive(name: str) -> str:
    match = re.search(rf"^\s*{name}\s+([^;]+);", SITE_FILE.read_text(), flags=re.MULTILINE)
    assert match, f"conf/nginx.conf has no {name}"
    return match.group(1).strip()


def systemd_verify(unit_text: str, directory: Path) -> str:
    """What ``systemd-analyze verify`` says about the unit (nothing: all is well), with the install's
    paths (``/opt/dmr``) moved to this checkout, so that ExecStart names a gunicorn that exists."""
    systemd_analyze = shutil.which("systemd-analyze")
    assert systemd_analyze, "systemd-analyze is missing: `make system-deps` installs Debian's systemd package"
    venv = Path(sys.executable).parent.parent
    unit_text = unit_text.replace(f"{INSTALLED_ROOT}/.venv", str(venv)).replace(INSTALLED_ROOT, str(PROJECT_ROOT))
    (directory / "dmr.service").write_text(unit_text)
    result = subprocess.run([systemd_analyze, "verify", "./dmr.service"], cwd=directory, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    return result.stderr if result.returncode == 0 else f"exit {result.returncode}: {result.stderr}"


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    assert systemd_verify(UNIT_FILE.read_text(), tmp_path) == ""


def test_systemd_analyze_verify_would_catch_a_typo(tmp_path):
    """The check above can fail: a misspelt kill mode is reported (systemd would ignore the line)."""
    assert "kill mode" in systemd_verify(UNIT_FILE.read_text().replace("KillMode=mixed", "KillMode=mixd"), tmp_path)


def test_a_stop_lets_requests_finish_and_then_the_pool_stop(service):
    """TERM to the master alone; systemd's kill comes after the graceful timeout and the pool's stop."""
    assert service["KillMode"] == ["mixed"] and service["KillSignal"] == ["SIGTERM"]
    pool_stop = inspect.signature(PoolKeeper.stop).parameters["timeout"].default
    assert int(service["TimeoutStopSec"][0]) > Settings().graceful_timeout + pool_stop


def test_reload_is_sighup_to_the_master_and_settings_come_from_the_env_file(service):
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service["EnvironmentFile"] == ["-/etc/dmr/dmr.env"]
    assert service["ExecStart"] == [f"{INSTALLED_ROOT}/.venv/bin/gunicorn -c conf/gunicorn.conf.py"]
    assert (PROJECT_ROOT / "conf" / "gunicorn.conf.py").is_file() and service["WorkingDirectory"] == [INSTALLED_ROOT]


def test_the_units_environment_is_a_socket_nginx_proxies_to_and_a_store_systemd_makes(service):
    settings = load_settings(environ={**unit_environment(service), "DMR_CONFIG": str(SETTINGS_FILE)})
    path = Path(unix_socket.socket_path(settings.bind))
    assert nginx_directive("server") == f"unix:{path}"
    assert path.parent == Path("/run") / service["RuntimeDirectory"][0]
    assert unix_socket.socket_mode(settings) == 0o660
    assert settings.store_path.is_relative_to(Path("/var/lib") / service["StateDirectory"][0])
    assert service["LogsDirectory"] == ["dmr"]  # /var/log/dmr, where docs/deploy.md puts DMR_LOG_FILE


def test_nginx_takes_every_body_dmr_takes_and_drops_idle_connections_first():
    assert parse_size(nginx_directive("client_max_body_size"), "client_max_body_size") >= Settings().max_body
    nginx_idle = int(nginx_directive("keepalive_timeout").removesuffix("s"))
    assert nginx_idle < gunicorn_settings(Settings())["keepalive"]


def ready_message(listener: socket.socket) -> tuple[str, int]:
    """The first sd_notify datagram and the pid that sent it (SO_PASSCRED, as systemd reads it)."""
    message, ancillary, _, _ = listener.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("iII")))
    credentials = next(data for level, kind, data in ancillary if kind == socket.SCM_CREDENTIALS)
    return message.decode(), struct.unpack("iII", credentials[: struct.calcsize("iII")])[0]


def test_gunicorns_master_tells_systemd_it_is_ready(model_store, service):
    """Type=notify, NotifyAccess=main: READY=1 must come, and from gunicorn's master itself."""
    assert service["Type"] == ["notify"] and service["NotifyAccess"] == ["main"]
    directory = short_tempdir("dmr-notify-")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        listener.bind(str(directory / "notify.sock"))
        listener.settimeout(60)
        server = start_unix_server(model_store, NOTIFY_SOCKET=str(directory / "notify.sock"))
        try:
            message, sender = ready_message(listener)
        finally:
            stop_server(server)
            shutil.rmtree(directory, ignore_errors=True)
    assert "READY=1" in message.split("\n")
    assert sender == server.process.pid
