"""Optional API keys: ``api_keys`` (comma-separated) and ``api_keys_file`` (one per line).

A request presents a key as ``Authorization: Bearer KEY`` (the OpenAI SDK, the Anthropic SDK's
``auth_token`` and, from anthropic 2.x, its ``api_key``, ollama-python's ``OLLAMA_API_KEY`` or
``headers=``) or as ``x-api-key: KEY`` (the Anthropic SDK, Claude Code); either header is accepted
on every route. Keys are compared as SHA-256 digests with :func:`hmac.compare_digest`, against
every configured key without stopping at a match, so the time taken says nothing about which
bytes matched, nor about a key's length. No key is ever logged or put in an error message; the
per-key limits name a key by :func:`key_id`, a digest prefix.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from pathlib import Path

from dmr_core.settings import Settings


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def key_id(key: str) -> str:
    """A name for ``key`` that does not reveal it (file names, limits)."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def read_key_file(path: Path) -> list[str]:
    """The keys of a key file: one per line; blank lines and ``#`` comments are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:  # the server must not start without its keys
        raise ValueError(f"api_keys_file {path}: {exc}") from None
    keys = []
    for line in text.splitlines():
        key = line.split("#", 1)[0].strip()
        if key:
            keys.append(key)
    return keys


class ApiKeys:
    """The configured keys (empty: no key is needed)."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = tuple({_digest(key) for key in keys if key})

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        keys = [key.strip() for key in settings.api_keys.split(",")]
        if settings.api_keys_file:
            keys += read_key_file(Path(settings.api_keys_file).expanduser())
        return cls(keys)

    def __bool__(self) -> bool:
        return bool(self._digests)

    def accepts(self, presented: str) -> bool:
        """Whether ``presented`` is one of the keys, in time that depends on the key count only."""
        digest = _digest(presented)
        found = False
        for known in self._digests:
            found |= hmac.compare_digest(digest, known)
        return found


def presented_keys(headers: Mapping[str, str]) -> list[str]:
    """The keys a request carries: the ``Authorization: Bearer`` token and ``x-api-key``."""
    keys = []
    scheme, _, token = headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        keys.append(token.strip())
    if headers.get("x-api-key", "").strip():
        keys.append(headers["x-api-key"].strip())
    return keys


def accepted_key(keys: ApiKeys, headers: Mapping[str, str]) -> str | None:
    """The request's key that ``keys`` accepts, else None."""
    return next((key for key in presented_keys(headers) if keys.accepts(key)), None)
