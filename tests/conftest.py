"""Shared test configuration. Fixtures that start real processes live in ``dmr_core.testing``."""

import pytest


def pytest_collection_modifyitems(items):
    # Slow suites run last, so a quick failure shows up first (as pytest's own suite does).
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)
