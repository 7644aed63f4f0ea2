"""Real registries for tests: the CNCF distribution registry, and a token service for it.

:class:`RegistryServer` runs Debian's ``docker-registry`` (CNCF distribution 2.8, the registry
behind Docker Hub's open-source ancestor) on 127.0.0.1, optionally behind htpasswd basic auth or
the distribution spec's token auth, with its storage kept across restarts so a test can kill it
mid-transfer. :class:`TokenService` is that token auth's ``realm``: it checks basic credentials and
signs RS256 JWTs with ``openssl``. The fixtures (``registry_server``, ``registry``) are at the end;
``tests/conftest.py`` makes them available to every test package.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from dmr_core.distribution.progress import ProgressEvent
from dmr_core.testing import free_port

REGISTRY_BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
TOKEN_SERVICE_NAME = "dmr-test-registry"
TOKEN_ISSUER = "dmr-test-token-service"


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    """bcrypt entries (the only kind distribution accepts), made by apache2-utils' ``htpasswd``."""
    lines = [subprocess.run(["htpasswd", "-Bbn", user, password], check=True, capture_output=True, text=True).stdout.strip()
             for user, password in users.items()]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def write_docker_config(directory: Path, registry: str, user: str, password: str) -> Path:
    """A Docker CLI ``config.json`` holding ``auths[registry].auth``; point ``DOCKER_CONFIG`` at it."""
    directory.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {registry: {"auth": auth}}}))
    return directory


@dataclass
class RegistryServer:
    """The real CNCF distribution registry (Debian's ``docker-registry``) on 127.0.0.1."""

    root: Path
    port: int = field(default_factory=free_port)
    htpasswd: Path | None = None
    token_service: TokenService | None = None
    process: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``: the registry part of references (plain HTTP, as for any loopback host)."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    @property
    def log_path(self) -> Path:
        return self.root / "registry.log"

    def start(self, timeout: float = 30.0) -> RegistryServer:
        config = self.root / "config.yml"
        config.write_text(self._config())
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([REGISTRY_BINARY, "serve", str(config)], stdout=log, stderr=log)
        self._wait_ready(timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate, wait, kill: never leaves the process behind."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash mid-transfer; :meth:`start` brings it back with the same storage."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def blob_data_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes (tests tamper with it)."""
        hex_digest = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"

    def blob_transfers(self, digest: str) -> list[tuple[int, int]]:
        """``(status, bytes written)`` of every completed ``GET`` of the blob, from the JSON log."""
        transfers = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            entry = _json_line(line)
            if entry.get("http.request.method") == "GET" and entry.get("http.request.uri", "").endswith(f"/blobs/{digest}"):
                transfers.append((entry.get("http.response.status"), entry.get("http.response.written")))
        return transfers

    def _config(self) -> str:
        lines = ["version: 0.1", "log:", "  level: info", "  formatter: json", "storage:", "  filesystem:",
                 f"    rootdirectory: {self.storage}", "  delete:", "    enabled: true", "http:",
                 f"  addr: 127.0.0.1:{self.port}", f"  secret: {secrets.token_hex(16)}"]  # fmt: skip
        if self.htpasswd is not None:
            lines += ["auth:", "  htpasswd:", "    realm: dmr-test", f"    path: {self.htpasswd}"]
        elif self.token_service is not None:
            service = self.token_service
            lines += ["auth:", "  token:", f"    realm: {service.realm}", f"    service: {TOKEN_SERVICE_NAME}",
                      f"    issuer: {TOKEN_ISSUER}", f"    rootcertbundle: {service.cert}"]  # fmt: skip
        return "\n".join(lines) + "\n"

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"docker-registry exited early:\n{self.log_path.read_text(errors='replace')}")
            try:
                if requests.get(f"{self.url}/v2/", timeout=1).status_code in (200, 401):
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"docker-registry not ready after {timeout}s")


class TokenService:
    """The distribution spec's token endpoint: basic credentials in, an RS256 JWT out.

    Known users get the actions they ask for; anonymous requests get a token with no access (so
    the registry answers 401, as Docker Hub does for a private repository).
    """

    def __init__(self, directory: Path, users: dict[str, str]) -> None:
        self.directory = directory
        self.users = users
        self.port = free_port()
        self.key, self.cert = directory / "token-key.pem", directory / "token-cert.pem"
        self.requests: list[tuple[str | None, list[str]]] = []
        #: OAuth2 refresh tokens (Docker's identity tokens) this service accepts, and their users.
        self.refresh_tokens: dict[str, str] = {}
        self._server: ThreadingHTTPServer | None = None

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def start(self) -> TokenService:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                        f"/CN={TOKEN_ISSUER}", "-keyout", str(self.key), "-out", str(self.cert)],
                       check=True, capture_output=True)  # fmt: skip
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _token_handler(self))
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def issue(self, user: str | None, scopes: list[str]) -> str:
        """A JWT granting ``user`` (nobody if ``None``) the actions ``scopes`` ask for."""
        now = int(time.time())
        claims = {"iss": TOKEN_ISSUER, "sub": user or "", "aud": TOKEN_SERVICE_NAME, "iat": now, "nbf": now - 10,
                  "exp": now + 600, "jti": uuid.uuid4().hex, "access": _access(scopes) if user else []}  # fmt: skip
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._certificate_der()]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=signing_input.encode(),
                                   check=True, capture_output=True).stdout  # fmt: skip
        return f"{signing_input}.{_b64url(signature)}"

    def new_refresh_token(self, user: str) -> str:
        """An identity token for ``user``, as ``docker login`` with OAuth would store in a keychain."""
        token = secrets.token_urlsafe(24)
        self.refresh_tokens[token] = user
        return token

    def _certificate_der(self) -> str:
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"], check=True,
                             capture_output=True).stdout  # fmt: skip
        return base64.b64encode(der).decode()

    def user_for(self, authorization: str | None) -> tuple[bool, str | None]:
        """``(credentials acceptable, user)``; no header at all is an anonymous request."""
        if not authorization:
            return True, None
        try:
            user, _, password = base64.b64decode(authorization.removeprefix("Basic ")).decode().partition(":")
        except ValueError:
            return False, None
        return self.users.get(user) == password, user


def _token_handler(service: TokenService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            scopes = parse_qs(urlsplit(self.path).query).get("scope", [])
            accepted, user = service.user_for(self.headers.get("Authorization"))
            self._answer(accepted, user, scopes)

        def do_POST(self) -> None:  # noqa: N802
            """OAuth2's refresh-token grant: ``grant_type=refresh_token&refresh_token=…&scope=a b``."""
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            user = service.refresh_tokens.get(form.get("refresh_token", ""))
            accepted = form.get("grant_type") == "refresh_token" and user is not None
            self._answer(accepted, user, form.get("scope", "").split())

        def _answer(self, accepted: bool, user: str | None, scopes: list[str]) -> None:
            service.requests.append((user, scopes))
            if not accepted:
                self.send_error(401)
                return
            token = service.issue(user, scopes)
            body = json.dumps({"token": token, "access_token": token, "expires_in": 600}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    return Handler


def _access(scopes: list[str]) -> list[dict]:
    access = []
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
    return access


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json_line(line: str) -> dict:
    try:
        entry = json.loads(line)
    except ValueError:
        return {}
    return entry if isinstance(entry, dict) else {}


# -- fixtures ------------------------------------------------------------------------------------

#: The one account of the authenticating registries.
REGISTRY_USERS = {"dmr-tester": "correct-horse-battery"}


def start_registry(directory: Path, auth: str | None = None) -> tuple[RegistryServer, TokenService | None]:
    """Start the real CNCF distribution registry in ``directory``.

    ``auth``: ``None`` (open), ``"htpasswd"`` (basic auth for :data:`REGISTRY_USERS`) or ``"token"``
    (bearer tokens from a :class:`TokenService` that knows :data:`REGISTRY_USERS`).
    """
    tokens = TokenService(directory, REGISTRY_USERS).start() if auth == "token" else None
    htpasswd = write_htpasswd(directory / "htpasswd", REGISTRY_USERS) if auth == "htpasswd" else None
    try:
        return RegistryServer(directory, htpasswd=htpasswd, token_service=tokens).start(), tokens
    except BaseException:
        if tokens is not None:
            tokens.stop()
        raise


@pytest.fixture
def registry_server(tmp_path_factory) -> Iterator:
    """Factory: ``registry_server(auth=None | "htpasswd" | "token") -> RegistryServer``.

    Each call starts the real CNCF distribution registry (Debian's ``docker-registry``, distribution
    2.8) on 127.0.0.1, on a free port, with its own storage directory; it answers ``GET /v2/``
    before the call returns. Every registry (and token service) is stopped in ``finally``:
    terminate, wait, kill.
    """
    started: list[tuple[RegistryServer, TokenService | None]] = []

    def start(auth: str | None = None) -> RegistryServer:
        started.append(start_registry(tmp_path_factory.mktemp("registry"), auth))
        return started[-1][0]

    try:
        yield start
    finally:
        for registry, tokens in started:
            registry.stop()
            if tokens is not None:
                tokens.stop()


@pytest.fixture
def registry(registry_server) -> RegistryServer:
    """One open (no auth) real registry for the test."""
    return registry_server()


def kill_registry_mid_transfer(registry: RegistryServer, events: Iterator[ProgressEvent],
                               after_bytes: int) -> tuple[list[ProgressEvent], BaseException | None]:  # fmt: skip
    """Consume pull/push ``events``; SIGKILL ``registry`` once a layer has moved ``after_bytes``.

    The generator is paused while the registry dies, so the transfer is cut mid-blob. Returns the
    events seen and the exception that ended them (``None`` if the transfer somehow finished).
    """
    seen: list[ProgressEvent] = []
    try:
        for event in events:
            seen.append(event)
            if event.type == "progress" and event.layer.current >= after_bytes:
                registry.kill()
    except Exception as exc:  # the error the transfer ends with is what the test examines
        return seen, exc
    return seen, None
