"""Shared test configuration. Fixtures that start real processes live in ``dmr_core.testing``
(servers, models: the kit engine authors use too) and in ``tests/support/`` (dmr's own)."""

import pytest

from tests.support.registry import registry, registry_server  # noqa: F401 (fixtures for every test package)
from tests.support.thinking import thinking_server  # noqa: F401 (a fixture, for each dialect's reasoning tests)


def pytest_collection_modifyitems(items):
    # Slow suites run last, so a quick failure shows up first (as pytest's own suite does).
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)
