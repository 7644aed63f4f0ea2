"""Where API dialects are collected; also picks the dialect whose error shape a URL gets."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from flask import Blueprint, Response

from dmr_core.errors import DmrError
from dmr_core.fastpath import BodyProducer


@dataclass(frozen=True)
class Dialect:
    """An API dialect.

    :param name: short name (``"openai"``).
    :param blueprint: the Flask blueprint with its routes.
    :param prefixes: URL path prefixes whose errors this dialect renders; the longest match wins,
        so ``/v1/messages`` (Anthropic) can sit inside ``/v1/`` (OpenAI).
    :param render_error: turns a :class:`~dmr_core.errors.DmrError` into this dialect's response.
    :param fast_gets: exact GET paths answered without Flask (see :mod:`dmr_core.fastpath`),
        each mapped to the producer its Flask route also uses.
    :param patterns: regular expressions (``re.match`` from the path's start) also owned by this
        dialect, for URLs a prefix cannot describe (``/engines/{engine}/v1/messages``); the
        length of the match competes with the prefixes' lengths.
    """

    name: str
    blueprint: Blueprint
    prefixes: tuple[str, ...]
    render_error: Callable[[DmrError], Response]
    fast_gets: Mapping[str, BodyProducer] = field(default_factory=dict)
    patterns: tuple[str, ...] = ()

    def claim(self, path: str) -> int:
        """How strongly this dialect owns ``path``: the longest prefix or pattern match, else -1."""
        lengths = [len(p) for p in self.prefixes if path.startswith(p)]
        lengths += [m.end() for m in (re.match(p, path) for p in self.patterns) if m]
        return max(lengths, default=-1)


class DialectRegistry:
    def __init__(self) -> None:
        self._dialects: dict[str, Dialect] = {}

    def add(self, dialect: Dialect) -> None:
        if dialect.name in self._dialects:
            raise ValueError(f"dialect {dialect.name!r} registered twice")
        self._dialects[dialect.name] = dialect

    def __iter__(self):
        return iter(self._dialects.values())

    def for_path(self, path: str) -> Dialect | None:
        """The dialect owning the longest prefix of ``path``, if any."""
        best, best_len = None, -1
        for dialect in self._dialects.values():
            claim = dialect.claim(path)
            if claim > best_len:
                best, best_len = dialect, claim
        return best
