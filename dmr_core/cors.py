"""CORS as DMR does it (``pkg/middleware/cors.go``), with the preflight a browser needs for keys.

A request without ``Origin`` is not a cross-origin browser request: it passes untouched. An
``Origin`` must equal an allowed origin exactly (scheme, host and port; no patterns), else 403
``Origin not allowed``, preflight or not. Allowed: DMR's defaults, ``http(s)://localhost``,
``http(s)://127.0.0.1`` and ``http(s)://0.0.0.0`` (port-less, so a page on ``localhost:3000`` is
not allowed until listed), plus the ``cors_origins`` setting (DMR's ``DMR_ORIGINS``); ``*``
in it allows every origin. An allowed origin is echoed in ``Access-Control-Allow-Origin`` (never
``*``), with credentials allowed, as DMR.

Where dmr differs from DMR: the preflight lists its headers (DMR sends ``Allow-Headers: *``,
which a browser never applies to ``Authorization``, so a page could not send a key), echoes what
the browser asked for, and says how long it may be cached (``Access-Control-Max-Age``).
"""

from __future__ import annotations

from collections.abc import Mapping

from dmr_core.settings import Settings

DMR_DEFAULT_ORIGINS = tuple(f"{scheme}://{host}" for host in ("localhost", "127.0.0.1", "0.0.0.0")
                            for scheme in ("http", "https"))  # fmt: skip
ALLOWED_METHODS = "GET, POST, DELETE"
#: Request headers every preflight allows (the SDKs' and DMR's), besides those the browser asks for.
ALLOWED_HEADERS = ("Authorization", "Content-Type", "X-Api-Key", "Anthropic-Version", "Anthropic-Beta",
                   "X-Preload-Only", "X-Request-Id")  # fmt: skip
#: Response headers a page's script may read.
EXPOSED_HEADERS = "Retry-After, Request-Id, X-Request-Id"
#: Seconds a browser may reuse a preflight's answer (Chromium caps it at 7200).
MAX_AGE = 600


class CorsPolicy:
    def __init__(self, configured: str) -> None:
        listed = [origin.strip().rstrip("/") for origin in configured.split(",") if origin.strip()]
        self.allow_all = "*" in listed
        self.origins = frozenset(DMR_DEFAULT_ORIGINS) | frozenset(listed)

    @classmethod
    def from_settings(cls, settings: Settings) -> CorsPolicy:
        return cls(settings.cors_origins)

    def allows(self, origin: str, host: str | None = None) -> bool:
        """``origin`` is listed, or it is the server's own page: the scheme and ``Host`` the request
        was sent to, whose name without its port is allowed (a browser sends ``Origin`` on every
        POST, even to its own server: dmr's page at ``http://127.0.0.1:12434/`` must reach the API).
        A rebinding page (``http://evil.example:12434``) stays refused: its host is not allowed."""
        if self.allow_all or origin in self.origins:
            return True
        scheme, _, rest = origin.partition("://")
        name = rest.rsplit(":", 1)[0] if rest.count(":") == 1 else rest
        return host is not None and rest == host and f"{scheme}://{name}" in self.origins

    @staticmethod
    def response_headers(origin: str) -> dict[str, str]:
        """Headers of any answer to an allowed ``origin``."""
        return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true",
                "Access-Control-Expose-Headers": EXPOSED_HEADERS}  # fmt: skip

    @staticmethod
    def preflight_headers(origin: str, request_headers: Mapping[str, str]) -> dict[str, str]:
        """Headers of the 204 answering a preflight from an allowed ``origin``."""
        asked = [h.strip() for h in request_headers.get("Access-Control-Request-Headers", "").split(",") if h.strip()]
        known = {h.lower() for h in ALLOWED_HEADERS}
        allowed = list(ALLOWED_HEADERS) + [h for h in asked if h.lower() not in known]
        return {**CorsPolicy.response_headers(origin), "Access-Control-Allow-Methods": ALLOWED_METHODS,
                "Access-Control-Allow-Headers": ", ".join(allowed), "Access-Control-Max-Age": str(MAX_AGE)}  # fmt: skip


def is_preflight(method: str, headers: Mapping[str, str]) -> bool:
    return method == "OPTIONS" and "Access-Control-Request-Method" in headers
