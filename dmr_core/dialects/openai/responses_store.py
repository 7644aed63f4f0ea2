"""Stored responses, shared by every web worker: one JSON file per response, kept for an hour.

DMR keeps responses in memory for an hour (for ``previous_response_id`` and GET by id); with several
web worker processes, memory is not shared, so dmr keeps them as files next to the model store.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from dmr_core.errors import NotFound
from dmr_core.store.atomicfile import write_atomic

TTL_SECONDS = 3600
_ID = re.compile(r"resp_[0-9a-f]{32}")


class ResponseStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, response_id: str) -> Path:
        if not _ID.fullmatch(response_id):
            raise NotFound(f"response with id '{response_id}' not found", param="response_id")
        return self.root / f"{response_id}.json"

    def save(self, response: dict[str, Any], items: list[dict[str, Any]], history: list[dict[str, Any]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        record = {"response": response, "input_items": items, "history": history}
        write_atomic(self._path(response["id"]), json.dumps(record).encode())
        self._expire()

    def get(self, response_id: str) -> dict[str, Any]:
        path = self._path(response_id)
        try:
            if time.time() - path.stat().st_mtime > TTL_SECONDS:
                path.unlink(missing_ok=True)
                raise FileNotFoundError
            return json.loads(path.read_bytes())
        except FileNotFoundError:
            raise NotFound(f"response with id '{response_id}' not found", param="response_id") from None

    def conversation(self, response_id: str) -> list[dict[str, Any]]:
        """Every item so far: the earlier turns, this response's input, and its output."""
        record = self.get(response_id)
        return record["history"] + record["input_items"] + record["response"]["output"]

    def delete(self, response_id: str) -> None:
        self.get(response_id)
        self._path(response_id).unlink(missing_ok=True)

    def _expire(self) -> None:
        cutoff = time.time() - TTL_SECONDS
        for path in self.root.glob("resp_*.json"):
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
