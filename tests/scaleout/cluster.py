"""A scaled-out dmr on one machine: real dmr hosts (own stores, own ports) behind a real nginx running
the shipped ``deploy/nginx/dmr-cluster.conf`` with its njs script, all pulling from one real registry.

Only what cannot be the same on one machine is rewritten in the site file: the hosts' addresses
(127.0.0.1 and free ports), the listening port, the certificate (self-signed, made with openssl), the
access log's path and ``js_path`` (this checkout's deploy/nginx). nginx loads Debian's njs module
(libnginx-mod-http-js) itself, runs in the foreground under a prefix of its own and is always
stopped when the context ends.
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
from dataclasses import dataclass, field
from pathlib import Path

from dmr_core.settings import PROJECT_ROOT
from dmr_core.testing import DmrServer, free_port, short_tempdir
from tests.support.nginx import self_signed_certificate

SITE_FILE = PROJECT_ROOT / "deploy" / "nginx" / "dmr-cluster.conf"
NJS_MODULE = Path("/usr/lib/nginx/modules/ngx_http_js_module.so")
SHIPPED_SERVER = re.compile(r"^(\s*server )10\.0\.0\.\d+:12434( .*;)$", re.MULTILINE)

MAIN_CONF = """\
load_module {module};
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
{user}
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/dmr-cluster.conf;
}}
"""


@dataclass
class ClusterNginx:
    prefix: Path
    port: int
    certificate: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def error_log(self) -> str:
        return _read(self.prefix / "error.log")

    def access_lines(self) -> list[dict[str, str]]:
        """The site's ``dmr_cluster`` lines as ``{"request", "status", "upstream", "model"}``."""
        return [_parsed(line) for line in _read(self.prefix / "access.log").splitlines() if line.strip()]


_LINE = re.compile(r'"(?P<request>[^"]*)" (?P<status>\d{3}) \d+ upstream="(?P<upstream>[^"]*)" '
                   r'upstream_status="(?P<upstream_status>[^"]*)" model="(?P<model>[^"]*)"')  # fmt: skip


def _parsed(line: str) -> dict[str, str]:
    match = _LINE.search(line)
    assert match, f"access log line not in the site's dmr_cluster format: {line}"
    return match.groupdict()


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _replace(text: str, pattern: str, replacement: str, count: int) -> str:
    """``re.sub`` that insists on ``count`` matches: a site file that drifted fails loudly here."""
    result, found = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert found == count, f"{SITE_FILE}: expected {count} match(es) of {pattern!r}, found {found}"
    return result


def site_for_test(prefix: Path, hosts: list[str], port: int, cert: Path, key: Path) -> str:
    """The shipped site file, with ``hosts`` (``127.0.0.1:PORT``) in place of the shipped three."""
    text = SITE_FILE.read_text()
    shipped = SHIPPED_SERVER.findall(text)
    assert len(shipped) == len(hosts), f"{SITE_FILE} lists {len(shipped)} hosts; the test runs {len(hosts)}"
    for host in hosts:  # one at a time, keeping each line's own parameters (max_fails, fail_timeout)
        text = SHIPPED_SERVER.sub(lambda m, host=host: f"{m.group(1)}{host}{m.group(2)}", text, count=1)
    text = _replace(text, r'^js_path "[^"]*";', f'js_path "{SITE_FILE.parent}/";', 1)
    text = _replace(text, r"access_log /var/log/nginx/dmr-cluster\.access\.log dmr_cluster;",
                    f"access_log {prefix}/access.log dmr_cluster;", 1)  # fmt: skip
    text = _replace(text, r"listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;", 1)
    text = _replace(text, r"ssl_certificate\s+\S+;", f"ssl_certificate {cert};", 1)
    return _replace(text, r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};", 1)


def user_line() -> str:
    # As root, nginx's workers would drop to "nobody", who may not read this checkout's njs file.
    return f"user {getpass.getuser()};" if os.geteuid() == 0 else ""


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


@contextlib.contextmanager
def nginx_in_front_of(hosts: list[str], timeout: float = 30.0) -> Iterator[ClusterNginx]:
    """nginx on a free 127.0.0.1 port, spreading requests over ``hosts`` by model."""
    if shutil.which("nginx") is None or not NJS_MODULE.exists():
        raise RuntimeError("nginx with njs is missing: `make system-deps` installs nginx and libnginx-mod-http-js")
    prefix = short_tempdir("dmr-cluster-")
    cert, key = self_signed_certificate(prefix)
    nginx = ClusterNginx(prefix, free_port(), cert)
    (prefix / "dmr-cluster.conf").write_text(site_for_test(prefix, hosts, nginx.port, cert, key))
    (prefix / "nginx.conf").write_text(MAIN_CONF.format(module=NJS_MODULE, prefix=prefix, user=user_line()))
    command = ["nginx", "-c", str(prefix / "nginx.conf"), "-p", str(prefix), "-e", str(prefix / "error.log")]
    try:
        nginx.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not _listening(nginx.port):
            if nginx.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start:\n{nginx.error_log()}")
            time.sleep(0.05)
        yield nginx
    finally:
        _stop(nginx.process)
        shutil.rmtree(prefix, ignore_errors=True)


def _stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGQUIT)  # graceful: workers finish, then the master exits
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- the dmr hosts ---------------------------------------------------------------------------------


@dataclass
class Host:
    """One dmr host of the set: a real server with a store of its own."""

    name: str
    server: DmrServer
    killed: bool = field(default=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def all_pids(self) -> list[int]:
        """The gunicorn master, its web workers, the pool supervisor and the inference workers."""
        return [self.server.process.pid, *self.server.web_worker_pids(), *self.server.pool_pids()]

    def kill_everything(self) -> list[int]:
        """``kill -9`` every process of the host at once, as when the machine loses power."""
        pids = self.all_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.server.process.wait(10)
        self.killed = True
        return pids


def host_env(registry_url: str, peers: list[str], pull_on_demand: bool) -> dict[str, str]:
    """What each host is started with: one registry for all (as the Docker Hub mirror, the way
    DMR's MODEL_RUNNER_REGISTRY_MIRRORS names it), its peers, and small resource use."""
    return {"MODEL_RUNNER_REGISTRY_MIRRORS": registry_url, "DMR_PEERS": ",".join(peers),
            "DMR_PULL_ON_DEMAND": "1" if pull_on_demand else "0", "DMR_WEB_WORKERS": "1",
            "DMR_THREADS": "1", "DMR_KEEP_ALIVE": "-1"}  # fmt: skip
