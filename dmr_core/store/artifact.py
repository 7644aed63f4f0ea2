"""The bytes of a DMR model artifact: its config blob and its OCI image manifest.

The model's id is the sha256 of the manifest bytes, so these are built once, written as they are,
and never re-serialised.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from dmr_core.store import mediatypes


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a manifest says about one blob."""

    media_type: str
    digest: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def sha256_digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def encode_json(value: Any) -> bytes:
    """Compact JSON, the way Go's ``json.Marshal`` lays it out."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def config_blob(config: dict[str, Any], layer_digests: list[str], created: datetime) -> bytes:
    """DMR's config file: the model config, when it was made, and the layers' diff ids."""
    return encode_json({
        "config": config,
        "descriptor": {"created": format_created(created)},
        "rootfs": {"type": "rootfs", "diff_ids": layer_digests},
    })


def manifest(config: Descriptor, layers: list[Descriptor]) -> bytes:
    return encode_json({
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    })


def format_created(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as Go's ``time.Time`` marshals."""
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def parse_created(text: Any) -> int:
    """Unix seconds from an RFC 3339 time (Go writes up to 9 fraction digits); 0 if unreadable."""
    if not isinstance(text, str):
        return 0
    # Python parses at most 6 fraction digits; the rest do not change the second.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.strip()).replace("Z", "+00:00").replace("z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return 0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp())
