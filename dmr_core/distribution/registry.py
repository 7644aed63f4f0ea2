"""An OCI distribution client for one repository, built on ``requests``.

Only what model pull and push need: manifests (GET/HEAD/PUT), blobs (streamed GET with ``Range``
for resuming, HEAD, upload by POST + monolithic PUT, or cross-repository mount). Every failure
becomes a dmr error: 401/403 → :class:`Unauthorized`, a missing manifest or blob →
:class:`ModelNotFound`, an unreachable registry or a broken transfer → :class:`RegistryUnreachable`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import BinaryIO
from urllib.parse import quote, urljoin, urlsplit

import requests

from dmr_core import __version__
from dmr_core.distribution import endpoints
from dmr_core.distribution.auth import Authenticator, find_credentials
from dmr_core.errors import DigestMismatch, ModelNotFound, RegistryError, RegistryUnreachable, Unauthorized
from dmr_core.store import mediatypes
from dmr_core.store.references import Reference

#: (connect, read) seconds; the read timeout applies between chunks, not to a whole blob.
TIMEOUT = (10, 120)
CHUNK = 1 << 20
MAX_MANIFEST_BYTES = 4 << 20
ACCEPT_MANIFESTS = ", ".join(mediatypes.MANIFESTS)
USER_AGENT = f"dmr/{__version__} (model-distribution)"


class BlobStream:
    """An open blob download; ``resumed`` is true when the registry honoured the ``Range``."""

    def __init__(self, response: requests.Response, registry: str) -> None:
        self.response = response
        self.registry = registry
        self.resumed = response.status_code == 206

    def chunks(self) -> Iterator[bytes]:
        try:
            yield from self.response.iter_content(CHUNK)
        except requests.RequestException as exc:
            raise RegistryUnreachable(f"download from {self.registry} broke off: {exc}") from None

    def close(self) -> None:
        self.response.close()


class RegistryClient:
    """The distribution API of ``reference``'s repository; a context manager that closes its session."""

    def __init__(self, reference: Reference, *, bearer_token: str | None = None, push: bool = False,
                 mirror: str | None = None) -> None:  # fmt: skip
        """``mirror`` (an API root, see :mod:`~dmr_core.distribution.mirrors`) serves the repository
        instead of its registry, with the mirror's own credentials: a token for the origin stays there."""
        self.registry = urlsplit(mirror).netloc if mirror else reference.registry
        self.repository = reference.repository
        self.base = f"{mirror or endpoints.base_url(self.registry)}/v2/{self.repository}"
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        scope = f"repository:{self.repository}:{'pull,push' if push else 'pull'}"
        credentials = find_credentials(self.registry, None if mirror else bearer_token)
        self.auth = Authenticator(self.session, self.registry, credentials, scope)

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.session.close()

    # Manifests ---------------------------------------------------------------------------------

    def get_manifest(self, reference: str) -> tuple[bytes, str, str]:
        """``(raw bytes, media type, digest)`` of the manifest a tag or digest names."""
        response = self._checked("GET", f"{self.base}/manifests/{reference}", f"{self._name(reference)}",
                                 headers={"Accept": ACCEPT_MANIFESTS}, stream=True)  # fmt: skip
        with response:
            data = response.raw.read(MAX_MANIFEST_BYTES + 1, decode_content=True)
        if len(data) > MAX_MANIFEST_BYTES:
            raise RegistryError(f"manifest of {self._name(reference)} is over {MAX_MANIFEST_BYTES} bytes")
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatch(f"manifest of {self._name(reference)} has digest {digest}")
        return data, response.headers.get("Content-Type", "").split(";")[0].strip(), digest

    def head_manifest(self, reference: str) -> str | None:
        """The digest the registry reports for a tag or digest; ``None`` when it has no such manifest."""
        response = self._send("HEAD", f"{self.base}/manifests/{reference}", headers={"Accept": ACCEPT_MANIFESTS})
        if response.status_code == 404:
            return None
        self._raise_for(response, self._name(reference))
        return response.headers.get("Docker-Content-Digest")

    def put_manifest(self, tag: str, data: bytes, media_type: str) -> str:
        """Upload manifest bytes unchanged under ``tag``; returns their digest."""
        self._checked("PUT", f"{self.base}/manifests/{tag}", self._name(tag), data=data,
                      headers={"Content-Type": media_type})  # fmt: skip
        return f"sha256:{hashlib.sha256(data).hexdigest()}"

    # Blobs -------------------------------------------------------------------------------------

    def blob_exists(self, digest: str) -> bool:
        response = self._send("HEAD", f"{self.base}/blobs/{digest}")
        if response.status_code == 404:
            return False
        self._raise_for(response, f"blob {digest} of {self._name()}")
        return True

    def open_blob(self, digest: str, offset: int = 0) -> BlobStream:
        """Start downloading ``digest`` from byte ``offset`` (the registry may ignore the range)."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        response = self._checked("GET", f"{self.base}/blobs/{digest}", f"blob {digest} of {self._name()}",
                                 headers=headers, stream=True)  # fmt: skip
        return BlobStream(response, self.registry)

    def upload_blob(self, digest: str, size: int, body: BinaryIO, mount_from: str | None = None) -> None:
        """Upload ``size`` bytes of ``body``, unless a mount from ``mount_from`` makes it unneeded."""
        what = f"upload of {digest} to {self._name()}"
        params = {"mount": digest, "from": mount_from} if mount_from else None
        started = self._checked("POST", f"{self.base}/blobs/uploads/", what, params=params)
        if started.status_code == 201:
            return  # mounted: the registry already had it in the other repository
        location = urljoin(started.url, started.headers.get("Location", ""))
        separator = "&" if "?" in location else "?"
        self._checked("PUT", f"{location}{separator}digest={quote(digest)}", what, data=body, retry=False,
                      headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})  # fmt: skip

    # Requests ----------------------------------------------------------------------------------

    def _checked(self, method: str, url: str, what: str, **kwargs) -> requests.Response:
        response = self._send(method, url, **kwargs)
        self._raise_for(response, what)
        return response

    def _send(self, method: str, url: str, *, retry: bool = True, **kwargs) -> requests.Response:
        """Send, answering one authentication challenge (a streamed body cannot be sent twice)."""
        headers = kwargs.pop("headers", {})
        while True:
            if self.auth.header:
                headers["Authorization"] = self.auth.header
            try:
                response = self.session.request(method, url, headers=headers, timeout=TIMEOUT, **kwargs)
            except requests.RequestException as exc:
                raise RegistryUnreachable(f"cannot reach registry {self.registry}: {exc}") from None
            if response.status_code != 401 or not retry or not self.auth.answer(response.headers.get("WWW-Authenticate")):
                return response
            response.close()
            retry = False

    def _raise_for(self, response: requests.Response, what: str) -> None:
        status = response.status_code
        if status < 300:
            return
        detail = _error_detail(response)
        response.close()
        if status in (401, 403):
            raise Unauthorized(f"Unauthorized: {what}: {detail or 'authentication required'}")
        if status == 404:
            raise ModelNotFound(f"Model not found: {what}: {detail or 'not found'}", param="model")
        raise RegistryError(f"registry {self.registry} answered {status} to the {what}: {detail}")

    def _name(self, reference: str | None = None) -> str:
        name = f"{self.registry}/{self.repository}"
        if reference is None:
            return name
        return f"{name}@{reference}" if reference.startswith("sha256:") else f"{name}:{reference}"


def _error_detail(response: requests.Response) -> str:
    """The registry's own words: ``{"errors":[{"code":"MANIFEST_UNKNOWN","message":"…"}]}``."""
    if response.request.method == "HEAD":
        return response.reason or ""
    try:
        errors = response.json().get("errors") or []
        return "; ".join(f"{e.get('code', '')} {e.get('message', '')}".strip() for e in errors) or response.reason
    except (ValueError, AttributeError, requests.RequestException):
        return (response.reason or "").strip()
