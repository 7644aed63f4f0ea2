"""One view, many URL prefixes: DMR serves each API under several (``/v1``, ``/engines/v1``, …)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flask import Blueprint


def prefixed_route(blueprint: Blueprint, prefixes: Iterable[str]) -> Callable:
    """A ``route(rule, **options)`` decorator that adds ``rule`` under every prefix of ``blueprint``.

    A prefix may hold ``<engine>``; the view then takes ``engine`` (None under the other prefixes).
    """
    prefixes = tuple(prefixes)

    def route(rule: str, **options):
        def register(view):
            for prefix in prefixes:
                blueprint.add_url_rule(prefix + rule, view_func=view, **options)
            return view

        return register

    return route
