"""The bytes of a DMR model artifact: its config blob and its OCI image manifest.

The model's id is the sha256 of the manifest bytes, so these are built once, written as they are,
and never re-serialised. Manifests that come from outside (a registry, an archive) are parsed by
:func:`parse_manifest`, which refuses any digest that is not ``sha256:<64 hex>``: digests become
file names in the store.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from dmr_core.store import mediatypes


DIGEST = re.compile(r"sha256:([a-f0-9]{64})")


class ManifestError(ValueError):
    """A manifest that is not a well-formed OCI image manifest."""


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a manifest says about one blob."""

    media_type: str
    digest: str
    size: int
    #: The file's path inside the model (the ``org.cncf.model.filepath`` annotation), if it has one.
    filepath: str | None = None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.filepath is not None:
            document["annotations"] = {mediatypes.FILEPATH_ANNOTATION: self.filepath}
        return document


@dataclass(frozen=True)
class ParsedManifest:
    """What the store needs from a manifest: its config blob and its layers, in order."""

    config: Descriptor
    layers: tuple[Descriptor, ...]

    @property
    def blob_digests(self) -> tuple[str, ...]:
        """Every blob, layers first and config last (the order of ``models.json`` ``files``)."""
        return tuple(dict.fromkeys([layer.digest for layer in self.layers] + [self.config.digest]))

    @property
    def layers_size(self) -> int:
        return sum(layer.size for layer in self.layers)


def parse_manifest(data: bytes) -> ParsedManifest:
    """Parse and validate an OCI (or Docker v2) image manifest; :class:`ManifestError` if malformed."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"manifest is not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("schemaVersion") != 2:
        raise ManifestError("manifest is not an image manifest with schemaVersion 2")
    layers = document.get("layers")
    if not isinstance(layers, list):
        raise ManifestError("manifest has no layers list")
    return ParsedManifest(_descriptor(document.get("config")), tuple(map(_descriptor, layers)))


def _descriptor(value: Any) -> Descriptor:
    if not isinstance(value, dict):
        raise ManifestError("manifest descriptor is not an object")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise ManifestError(f"invalid digest {digest!r}: must be sha256:<64 hex digits>")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"invalid size {size!r} for {digest}")
    if not isinstance(media_type, str):
        raise ManifestError(f"missing media type for {digest}")
    return Descriptor(media_type, digest, size, _filepath(value.get("annotations")))


def _filepath(annotations: Any) -> str | None:
    """The layer's file path annotation; where it is not a string, the layer has none."""
    path = annotations.get(mediatypes.FILEPATH_ANNOTATION) if isinstance(annotations, dict) else None
    return path if isinstance(path, str) else None


def model_details(blob: dict[str, Any], media_type: str) -> tuple[int, dict[str, Any]]:
    """``(created, config)`` from a config blob; ModelPack configs are mapped onto DMR's fields."""
    if media_type != mediatypes.CNCF_MODEL_CONFIG_V1:
        return parse_created((blob.get("descriptor") or {}).get("created")), blob.get("config") or {}
    pack = blob.get("config") or {}
    config = {"format": pack.get("format"), "quantization": pack.get("quantization"),
              "parameters": pack.get("paramSize"), "architecture": pack.get("architecture")}  # fmt: skip
    created = parse_created((blob.get("descriptor") or {}).get("createdAt"))
    return created, {key: value for key, value in config.items() if value}


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
