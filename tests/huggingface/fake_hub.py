"""A stand-in for the Hugging Face Hub, serving just what huggingface-hub 2.x asks for during a pull.

It exists only because the real Hub is unreachable where these tests run: the client code under
test is huggingface-hub's own, unmodified, pointed here with ``HF_ENDPOINT``. Two servers on
127.0.0.1 play the Hub and its CDN; they are different origins, so huggingface-hub drops the token
when it follows the redirect, as it does for the real Hub's CDN hosts.

Hub:
  ``GET /api/models/{repo}/revision/{rev}`` (``HfApi.model_info(files_metadata=True)``): id, sha and
  siblings with size, blobId and ``lfs`` {size, sha256, pointerSize}.
  ``HEAD /{repo}/resolve/{rev}/{path}`` (``hf_hub_download``'s metadata call): for LFS files a 302 to the
  CDN carrying ``X-Repo-Commit``, ``X-Linked-Etag`` (the sha256), ``X-Linked-Size`` and ``ETag``; plain
  git files answer 200 with the same headers. ``GET`` of the same path answers the same way, with a body.
  Errors carry the Hub's ``X-Error-Code`` (RepoNotFound, GatedRepo, RevisionNotFound, EntryNotFound),
  from which huggingface-hub picks its exception class.
CDN:
  ``GET /lfs/{sha256}``: the bytes, no authentication (the real CDN takes signed URLs).

Every request is recorded, so tests can count them and see which carried a token.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

_MODEL_INFO = re.compile(r"/api/models/([^/]+/[^/]+)/revision/([^/]+)")
_RESOLVE = re.compile(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)")
_CDN_BLOB = re.compile(r"/lfs/([a-f0-9]{64})")
_LFS_POINTER_SIZE = 134
_CDN_BLOCK = 64 * 1024


@dataclass
class FakeRepo:
    files: dict[str, bytes]
    #: A gated repository: only ``Authorization: Bearer <token>`` gets in.
    token: str | None = None
    commit: str = field(default_factory=lambda: secrets.token_hex(20))

    def is_lfs(self, path: str) -> bool:
        return path.endswith(".gguf")  # as on the Hub, where model weights are LFS (or Xet) files


@dataclass(frozen=True)
class Request:
    server: str
    method: str
    path: str
    authorization: str | None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """The Hub and its CDN for ``repos`` (``"org/name"`` → :class:`FakeRepo`); ``start()``, ``stop()``."""

    def __init__(self, repos: dict[str, FakeRepo]) -> None:
        self.repos = repos
        self.requests: list[Request] = []
        self.blobs = {sha256(data): data for repo in repos.values() for data in repo.files.values()}
        #: Seconds the CDN waits before each 64 KiB it sends: a slow network, for tests that interrupt.
        self.cdn_delay = 0.0
        self._lock = threading.Lock()
        self._hub = _Server(self, _HubHandler)
        self._cdn = _Server(self, _CdnHandler)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._hub.server_port}"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.1:{self._cdn.server_port}"

    def start(self) -> FakeHub:
        for server in (self._hub, self._cdn):
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        for server in (self._hub, self._cdn):
            server.shutdown()
            server.server_close()

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def downloads(self) -> list[str]:
        """The sha256 of every blob fetched from the CDN, in order."""
        return [r.path.rsplit("/", 1)[-1] for r in self.requests if r.server == "cdn" and r.method == "GET"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeHub, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    name = ""

    def do_GET(self) -> None:
        self._handle(body=True)

    def do_HEAD(self) -> None:
        self._handle(body=False)

    def _handle(self, body: bool) -> None:
        path = urlsplit(self.path).path
        self.server.fake.record(Request(self.name, self.command, path, self.headers.get("Authorization")))
        self.route(path, body)

    def route(self, path: str, body: bool) -> None:
        raise NotImplementedError

    def reply(self, status: int, headers: dict[str, str], data: bytes = b"", body: bool = True) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": str(len(data)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def hub_error(self, status: int, code: str, message: str, extra: dict[str, str] | None = None) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
        self.reply(status, {**headers, **(extra or {})}, json.dumps({"error": message}).encode())

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep pytest's output clean


class _HubHandler(_Handler):
    name = "hub"

    def route(self, path: str, body: bool) -> None:
        if match := _MODEL_INFO.fullmatch(path):
            self._model_info(unquote(match[1]), unquote(match[2]), body)
        elif match := _RESOLVE.fullmatch(path):
            self._resolve(unquote(match[1]), unquote(match[2]), unquote(match[3]), body)
        else:
            self.hub_error(404, "NotFound", f"no route for {path}")

    def _model_info(self, repo_id: str, revision: str, body: bool) -> None:
        repo = self._accessible(repo_id, revision)
        if repo is None:
            return
        siblings = [_sibling(repo, path, data) for path, data in sorted(repo.files.items())]
        info = {"_id": repo.commit[:24], "id": repo_id, "modelId": repo_id, "sha": repo.commit, "private": False,
                "gated": "manual" if repo.token else False, "siblings": siblings}  # fmt: skip
        self.reply(200, {"Content-Type": "application/json"}, json.dumps(info).encode(), body)

    def _resolve(self, repo_id: str, revision: str, path: str, body: bool) -> None:
        repo = self._accessible(repo_id, revision)
        if repo is None:
            return
        data = repo.files.get(path)
        if data is None:
            self.hub_error(404, "EntryNotFound", f"{path} does not exist", {"X-Repo-Commit": repo.commit})
            return
        headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{git_blob_id(data)}"'}
        if not repo.is_lfs(path):
            self.reply(200, headers, data, body)
            return
        headers.update({"X-Linked-Etag": f'"{sha256(data)}"', "X-Linked-Size": str(len(data)),
                        "Location": f"{self.server.fake.cdn}/lfs/{sha256(data)}"})  # fmt: skip
        self.reply(302, headers, b"", body)

    def _accessible(self, repo_id: str, revision: str) -> FakeRepo | None:
        """The repository, or None once the Hub's error for it has been sent."""
        repo = self.server.fake.repos.get(repo_id)
        authorization = self.headers.get("Authorization")
        if repo is None:
            # The Hub answers 401 to anonymous requests for missing repos (it cannot tell them from private ones).
            self.hub_error(404 if authorization else 401, "RepoNotFound", "Repository not found")
        elif repo.token and authorization != f"Bearer {repo.token}":
            self.hub_error(403 if authorization else 401, "GatedRepo", f"Access to model {repo_id} is restricted.")
        elif revision not in ("main", repo.commit):
            self.hub_error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        else:
            return repo
        return None


def _sibling(repo: FakeRepo, path: str, data: bytes) -> dict:
    if not repo.is_lfs(path):
        return {"rfilename": path, "size": len(data), "blobId": git_blob_id(data)}
    pointer = {"size": len(data), "sha256": sha256(data), "pointerSize": _LFS_POINTER_SIZE}
    return {"rfilename": path, "size": len(data), "blobId": git_blob_id(data), "lfs": pointer}


class _CdnHandler(_Handler):
    name = "cdn"

    def route(self, path: str, body: bool) -> None:
        match = _CDN_BLOB.fullmatch(path)
        data = self.server.fake.blobs.get(match[1]) if match else None
        if data is None:
            self.reply(404, {}, b"no such blob", body)
            return
        self.reply(200, {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))}, b"", False)
        for start in range(0, len(data) if body else 0, _CDN_BLOCK):
            time.sleep(self.server.fake.cdn_delay)
            try:
                self.wfile.write(data[start:start + _CDN_BLOCK])
            except (BrokenPipeError, ConnectionResetError):
                return  # the client hung up: that is what the interrupting tests want
