"""A real nginx (Debian's package) in front of a dmr server on a Unix socket, running the shipped
site file ``conf/nginx.conf``.

Only what cannot be the same in a test is rewritten: the socket path, the ports (free ones on
127.0.0.1, no IPv6), the certificate (a self-signed one for ``localhost``, made with ``openssl``)
and the access log's path (the site's own ``dmr`` format is kept). nginx runs in the foreground
(``daemon off``) under a prefix of its own, with its pid, logs and temporary files there, and is
always stopped when the fixture ends.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dmr_core.settings import PROJECT_ROOT
from dmr_core.testing import free_port, short_tempdir

SITE_FILE = PROJECT_ROOT / "conf" / "nginx.conf"
SHIPPED_SOCKET = "unix:/run/dmr/dmr.sock"

#: The main configuration around the site file: what /etc/nginx/nginx.conf would hold.
MAIN_CONF = """\
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
{user}
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/dmr-site.conf;
}}
"""


@dataclass
class Nginx:
    prefix: Path
    https_port: int
    http_port: int
    certificate: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"https://localhost:{self.https_port}"

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def access_log(self) -> str:
        path = self.prefix / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _replace(text: str, pattern: str, replacement: str, count: int) -> str:
    """``re.sub`` that insists on ``count`` matches: a site file that drifted fails loudly here."""
    result, found = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert found == count, f"conf/nginx.conf: expected {count} match(es) of {pattern!r}, found {found}"
    return result


def site_for_test(nginx: Nginx, socket_path: Path, key: Path) -> str:
    text = SITE_FILE.read_text()
    text = _replace(text, r"access_log /var/log/nginx/\S+ dmr;", f"access_log {nginx.prefix}/access.log dmr;", 1)
    text = _replace(text, re.escape(SHIPPED_SOCKET) + ";", f"unix:{socket_path};", 1)
    text = _replace(text, r"^\s*listen \[::\]:\d+.*\n", "", 2)
    text = _replace(text, r"listen 443 ssl;", f"listen 127.0.0.1:{nginx.https_port} ssl;", 1)
    text = _replace(text, r"listen 80;", f"listen 127.0.0.1:{nginx.http_port};", 1)
    text = _replace(text, r"ssl_certificate\s+\S+;", f"ssl_certificate {nginx.certificate};", 1)
    return _replace(text, r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};", 1)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)  # fmt: skip
    return cert, key


def _user_line() -> str:
    # As root, nginx's workers would drop to "nobody", who may not connect to dmr's socket (0660).
    return f"user {getpass.getuser()};" if os.geteuid() == 0 else ""


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _stop(nginx: Nginx) -> None:
    if nginx.process is None or nginx.process.poll() is not None:
        return
    nginx.process.send_signal(signal.SIGQUIT)  # graceful: workers finish, then the master exits
    try:
        nginx.process.wait(10)
    except subprocess.TimeoutExpired:
        nginx.process.kill()
        nginx.process.wait()


def _start(nginx: Nginx, timeout: float = 30.0) -> None:
    command = ["nginx", "-c", str(nginx.prefix / "nginx.conf"), "-p", str(nginx.prefix),
               "-e", str(nginx.prefix / "error.log")]  # fmt: skip
    nginx.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while not _listening(nginx.https_port):
        if nginx.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"nginx did not start:\n{nginx.error_log()}")
        time.sleep(0.05)


@contextlib.contextmanager
def nginx_in_front_of(socket_path: Path) -> Iterator[Nginx]:
    """nginx on free 127.0.0.1 ports, proxying to the dmr server listening on ``socket_path``."""
    if shutil.which("nginx") is None:
        raise RuntimeError("nginx is not installed: `make system-deps` installs it (Debian's nginx package)")
    prefix = short_tempdir("dmr-nginx-")
    cert, key = self_signed_certificate(prefix)
    nginx = Nginx(prefix, free_port(), free_port(), cert)
    (prefix / "dmr-site.conf").write_text(site_for_test(nginx, socket_path, key))
    (prefix / "nginx.conf").write_text(MAIN_CONF.format(prefix=prefix, user=_user_line()))
    try:
        _start(nginx)
        yield nginx
    finally:
        _stop(nginx)
        shutil.rmtree(prefix, ignore_errors=True)
