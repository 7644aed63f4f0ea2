"""The CLI's side of the HTTP API: a running dmr at ``DMR_HOST``, with ``DMR_API_KEY`` when set.

Every failure is a :class:`ClientError` whose message is one line (the CLI prints it and exits 1):
no server answering, or the server's own error text with its HTTP status. Nothing here prints.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests

from dmr_core.distribution.progress import ProgressEvent

DEFAULT_HOST = "127.0.0.1:12434"
#: Seconds to wait for a connection; answers themselves (a model loading, a pull) may take long.
CONNECT_TIMEOUT = 5.0


class ClientError(Exception):
    """A one-line failure of a CLI request."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def base_url(host: str | None = None) -> str:
    """``DMR_HOST`` as a URL: ``host:port`` or a full ``http(s)://`` URL (a trailing ``/`` dropped)."""
    host = (host or os.environ.get("DMR_HOST") or DEFAULT_HOST).strip().rstrip("/")
    return host if host.startswith(("http://", "https://")) else f"http://{host}"


def error_text(response: requests.Response) -> str:
    """The server's message: DMR's plain text, or the ``message`` of any dialect's JSON error."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip().splitlines()[0] if response.text.strip() else response.reason or ""
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def status_line(response: requests.Response) -> str:
    """``404 Not Found: model not found`` (one line; the CLI puts ``Error:`` before it)."""
    return f"{response.status_code} {response.reason}: {error_text(response)}"


@dataclass
class ApiClient:
    """Requests to one dmr server. ``stream=True`` answers are read lazily (and closed by the reader)."""

    url: str
    api_key: str | None = None

    @classmethod
    def from_environment(cls) -> ApiClient:
        return cls(base_url(), os.environ.get("DMR_API_KEY") or None)

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"User-Agent": "dmr-cli"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return {**headers, **(extra or {})}

    def request(self, method: str, path: str, *, stream: bool = False, headers: dict | None = None,
                **kwargs: Any) -> requests.Response:  # fmt: skip
        """The response to a request; a :class:`ClientError` for no server or an error status."""
        try:
            response = requests.request(method, self.url + path, headers=self._headers(headers), stream=stream,
                                        timeout=(CONNECT_TIMEOUT, None), **kwargs)  # fmt: skip
        except requests.ConnectionError as exc:
            raise ClientError(self.unreachable_message()) from exc
        except requests.RequestException as exc:
            raise ClientError(f"{self.url}{path}: {exc}") from exc
        if response.status_code >= 400:
            message = status_line(response)
            response.close()
            raise ClientError(message)
        return response

    def unreachable_message(self) -> str:
        return f"no dmr server answers at {self.url}: start one with `make run` or `dmr serve` (or set DMR_HOST)"

    def get_json(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None).json()

    def post_json(self, path: str, body: dict) -> requests.Response:
        return self.request("POST", path, json=body)

    def has_model(self, name: str) -> bool:
        try:
            self.request("GET", f"/models/{name}")
        except ClientError as exc:
            if exc.message.startswith("404 "):
                return False
            raise
        return True

    def pull_events(self, name: str) -> Iterator[ProgressEvent]:
        """The server's pull progress (``POST /models/create``, JSON lines) as progress events."""
        response = self.request("POST", "/models/create", json={"from": name}, stream=True,
                                headers={"Accept": "application/json"})  # fmt: skip
        with response:
            for line in response.iter_lines():
                if line.strip():
                    event = ProgressEvent.from_dict(json.loads(line))
                    if event.type == "error":
                        raise ClientError(event.message.removeprefix("Error: "))
                    yield event

    def stream_lines(self, path: str, body: dict) -> Iterator[bytes]:
        """The lines of a streamed POST answer; closing this generator closes the connection, which
        is how the server learns that nobody reads any more (and stops generating)."""
        response = self.request("POST", path, json=body, stream=True, headers={"Accept": "text/event-stream"})
        with response:
            yield from response.iter_lines()
