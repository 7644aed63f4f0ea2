"""Where a layer's ``org.cncf.model.filepath`` annotation may place its file inside a bundle.

The annotation comes from whoever packaged the model (a registry, an archive), so it is checked
before it becomes a path: relative, ``/``-separated, no ``.``/``..``/empty parts, no NUL, and no
two layers on one path or one file where another needs a directory.
"""

from __future__ import annotations

from collections.abc import Iterable

from dmr_core.errors import InvalidRequest


def safe_filepath(text: str | None) -> str | None:
    """``text`` if a bundle may use it as a relative path, else ``None``."""
    if not text or "\0" in text or "\\" in text or text.startswith("/"):
        return None
    parts = text.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    return text


def check_filepaths(paths: Iterable[str | None]) -> None:
    """:class:`InvalidRequest` unless every annotated path is safe and they fit in one tree."""
    seen: set[str] = set()
    for path in paths:
        if path is None:
            continue
        if safe_filepath(path) is None:
            raise InvalidRequest(f"invalid model: unsafe file path {path!r} in a layer annotation")
        if path in seen:
            raise InvalidRequest(f"invalid model: two layers have the file path {path!r}")
        seen.add(path)
    directories = {path.rsplit("/", 1)[0] for path in seen if "/" in path}
    clash = sorted(seen & {prefix for d in directories for prefix in _prefixes(d)})
    if clash:
        raise InvalidRequest(f"invalid model: {clash[0]!r} is both a file and a directory")


def _prefixes(directory: str) -> list[str]:
    """``a/b/c`` → ``["a", "a/b", "a/b/c"]``."""
    parts = directory.split("/")
    return ["/".join(parts[: index + 1]) for index in range(len(parts))]
