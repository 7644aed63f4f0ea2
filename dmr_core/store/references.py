"""Model references: DMR's name normalisation plus the OCI distribution grammar.

``smollm2`` means ``docker.io/ai/smollm2:latest``; ``hf.co/org/Repo:Q4_K_M`` means
``huggingface.co/org/repo:Q4_K_M``. Every name that reaches the store went through
:func:`parse_reference`, so no name can carry ``..``, a separator or a control character into a
path.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from dmr_core.errors import InvalidReference

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
DEFAULT_NAMESPACE = "ai"
#: docker/distribution's NameTotalLengthMax.
MAX_NAME_LENGTH = 255

# The OCI grammar writes the separator as ``[-]*``; that makes ``(a+(-*a+)*)`` backtrack
# exponentially in Python's engine (Go's RE2 does not care). ``-+`` accepts the same language.
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_HOST_LABEL = r"(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])"
_REGISTRY = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*(?::[0-9]+)?")
_HEX64 = re.compile(r"[a-f0-9]{64}")
_SHORT_ID = re.compile(r"[a-f0-9]{12,63}")
_HF_ALIAS = "hf.co/"
_HF_REGISTRY = "huggingface.co/"


@dataclass(frozen=True)
class Reference:
    """A normalised model reference, as stored in ``models.json`` tags."""

    registry: str
    repository: str
    tag: str = DEFAULT_TAG
    digest: str | None = None

    @property
    def name(self) -> str:
        """``docker.io/ai/smollm2:latest``, or ``registry/repo@sha256:…`` for a digest reference."""
        if self.digest:
            return f"{self.registry}/{self.repository}@{self.digest}"
        return f"{self.registry}/{self.repository}:{self.tag}"

    @property
    def familiar(self) -> str:
        """The name as users type it: ``ai/smollm2:latest`` (only ``docker.io/`` is dropped)."""
        return familiar_name(self.name)

    def __str__(self) -> str:
        return self.name


def familiar_name(name: str) -> str:
    """Strip the default registry from a stored full name (``docker.io/ai/x:1`` → ``ai/x:1``)."""
    prefix = f"{DEFAULT_REGISTRY}/"
    return name[len(prefix):] if name.startswith(prefix) else name


def configured_default_registry() -> str:
    """``docker.io``, or the registry the ``DEFAULT_REGISTRY`` environment variable names (as DMR)."""
    return os.environ.get("DEFAULT_REGISTRY", "").strip().lower() or DEFAULT_REGISTRY


def parse_reference(text: str, default_registry: str | None = None) -> Reference:
    """Normalise ``text`` the way DMR does and validate it; raise :class:`InvalidReference`."""
    default_registry = default_registry or configured_default_registry()
    text = _checked_characters(text.strip() if isinstance(text, str) else "")
    if text.lower().startswith(_HF_ALIAS):
        text = _HF_REGISTRY + text[len(_HF_ALIAS):]
    remainder, digest = _split_digest(text)
    path, tag = _split_tag(remainder)
    registry, repository = _split_registry(path.lower(), default_registry)
    _check_repository(repository)
    _check_registry(registry)
    if len(registry) + 1 + len(repository) > MAX_NAME_LENGTH:
        raise InvalidReference(f"invalid reference {text!r}: name longer than {MAX_NAME_LENGTH} characters")
    return Reference(registry, repository, tag, digest)


def model_id_query(text: str) -> str | None:
    """``sha256:<64hex>`` or bare 64-hex → ``sha256:<hex>``; 12–63 hex → that prefix; else None."""
    text = text.strip().lower()
    if text.startswith("sha256:") and _HEX64.fullmatch(text[len("sha256:"):]):
        return text
    if _HEX64.fullmatch(text):
        return f"sha256:{text}"
    return text if _SHORT_ID.fullmatch(text) else None


def _checked_characters(text: str) -> str:
    if not text:
        raise InvalidReference("invalid reference: empty model name")
    if any(ch.isspace() for ch in text):
        raise InvalidReference(f"invalid reference {text!r}: contains whitespace")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise InvalidReference(f"invalid reference {text!r}: contains control characters")
    if "\\" in text:
        raise InvalidReference(f"invalid reference {text!r}: contains a backslash")
    # Checked before any regex so a huge input costs nothing.
    if len(text) > 2 * MAX_NAME_LENGTH:
        raise InvalidReference(f"invalid reference: name longer than {MAX_NAME_LENGTH} characters")
    return text


def _split_digest(text: str) -> tuple[str, str | None]:
    if "@" not in text:
        return text, None
    remainder, digest = text.rsplit("@", 1)
    digest = digest.lower()
    if not digest.startswith("sha256:") or not _HEX64.fullmatch(digest[len("sha256:"):]):
        raise InvalidReference(f"invalid reference {text!r}: digest must be sha256:<64 hex digits>")
    return remainder, digest


def _split_tag(text: str) -> tuple[str, str]:
    """The tag is what follows the last ``:`` after the last ``/`` (a registry port is not a tag)."""
    colon = text.rfind(":")
    if colon <= text.rfind("/"):
        return text, DEFAULT_TAG
    tag = text[colon + 1:]
    if not _TAG.fullmatch(tag):
        raise InvalidReference(f"invalid reference {text!r}: invalid tag {tag!r}")
    return text[:colon], tag


def _split_registry(path: str, default_registry: str) -> tuple[str, str]:
    if path.startswith("/"):
        raise InvalidReference(f"invalid reference {path!r}: absolute paths are not model names")
    if "/" not in path:
        return default_registry, f"{DEFAULT_NAMESPACE}/{path}"
    first, rest = path.split("/", 1)
    if "." in first or ":" in first or first == "localhost":
        if first in {".", ".."}:
            raise InvalidReference(f"invalid reference {path!r}: '{first}' path component")
        return first, rest
    return default_registry, path


def _check_repository(repository: str) -> None:
    for component in repository.split("/"):
        if component in {"", ".", ".."}:
            problem = "empty path component" if not component else f"'{component}' path component"
            raise InvalidReference(f"invalid reference {repository!r}: {problem}")
        if not _COMPONENT.fullmatch(component):
            raise InvalidReference(
                f"invalid reference {repository!r}: path component {component!r} must match "
                "[a-z0-9]+ joined by '.', '_', '__' or '-'"
            )


def _check_registry(registry: str) -> None:
    if not _REGISTRY.fullmatch(registry):
        raise InvalidReference(f"invalid reference: invalid registry {registry!r}")
