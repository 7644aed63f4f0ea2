"""The plugin manager: built-in plugins first, then the ``dmr`` setuptools entry points.

``DMR_LOAD_PLUGINS`` (comma-separated entry-point names) restricts which installed plugins load;
set it to an empty string to load only the built-ins. ``DMR_TRACE_PLUGINS=1`` logs every hook call.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading

import pluggy

from dmr_core import NAME, hookspecs

#: Modules of dmr itself that implement hooks, registered exactly as third-party plugins are.
DEFAULT_PLUGINS = (
    "dmr_core.default_engine_selection",
    "dmr_core.dialects.openai",
    "dmr_core.dialects.native",
    "dmr_core.dialects.anthropic",
    "dmr_core.dialects.ollama",
    "dmr_core.dialects.engines",
    "dmr_core.dialects.rerank",
    "dmr_core.dialects.images",
)

log = logging.getLogger(__name__)
_lock = threading.Lock()
_manager: pluggy.PluginManager | None = None


def _allowed_entry_points() -> set[str] | None:
    raw = os.environ.get("DMR_LOAD_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    allowed = _allowed_entry_points()
    if allowed is None:
        pm.load_setuptools_entrypoints(NAME)
        return
    for name in allowed:
        pm.load_setuptools_entrypoints(NAME, name=name)


def build_plugin_manager() -> pluggy.PluginManager:
    """A fresh manager with the hookspecs, the built-ins and the installed plugins loaded."""
    pm = pluggy.PluginManager(NAME)
    pm.add_hookspecs(hookspecs)
    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
    _load_entry_points(pm)
    # A misspelt hook implementation fails here instead of being silently ignored (tox does this).
    pm.check_pending()
    if os.environ.get("DMR_TRACE_PLUGINS"):
        pm.trace.root.setwriter(log.info)
        pm.enable_tracing()
    return pm


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide manager, built on first use (idempotent, thread-safe)."""
    global _manager
    with _lock:
        if _manager is None:
            _manager = build_plugin_manager()
        return _manager
