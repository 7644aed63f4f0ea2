"""Where engine classes are collected, keyed by :attr:`Engine.name`."""

from __future__ import annotations

from dmr_core.engines.base import Engine
from dmr_core.errors import EngineNotFound


class EngineRegistry:
    """Filled by the ``dmr_register_engines`` hook; looked up by name."""

    def __init__(self) -> None:
        self._engines: dict[str, type[Engine]] = {}

    def add(self, engine: type[Engine]) -> None:
        """Register ``engine`` under its ``name``; a second class with the same name is an error."""
        if not issubclass(engine, Engine):
            raise TypeError(f"{engine!r} is not a dmr_core.engines.base.Engine subclass")
        existing = self._engines.get(engine.name)
        if existing is not None and existing is not engine:
            raise ValueError(f"engine name {engine.name!r} registered twice: {existing!r} and {engine!r}")
        self._engines[engine.name] = engine

    def get(self, name: str) -> type[Engine]:
        try:
            return self._engines[name]
        except KeyError:
            raise EngineNotFound(f"backend not found: {name}") from None

    def names(self) -> list[str]:
        return sorted(self._engines)

    def __contains__(self, name: object) -> bool:
        return name in self._engines
