"""The plugin contract of dmr: every hook a plugin may implement.

Plugins are found through the setuptools entry-point group ``dmr`` (and the built-ins in
:data:`dmr_core.plugins.DEFAULT_PLUGINS` register through exactly the same hooks). Implement a
hook by decorating a function of the same name with :data:`dmr_core.hookimpl`::

    from dmr_core import hookimpl

    @hookimpl
    def dmr_register_engines(registry):
        from my_engine.engine import MyEngine   # the class module must import cheaply
        registry.add(MyEngine)

Plugins are loaded in several processes (the gunicorn master, every web worker, every inference
worker), so a hook implementation must not have side effects beyond what it is asked to do.
Every hook here is documented in ``docs/plugin_hooks.md``; a test fails when one is not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

from dmr_core import NAME

if TYPE_CHECKING:
    from flask import Flask

    from dmr_core.dialects.registry import DialectRegistry
    from dmr_core.engines.registry import EngineRegistry
    from dmr_core.pool.workerinfo import WorkerInfo
    from dmr_core.settings import Settings
    from dmr_core.store.layout import Model

hookspec = pluggy.HookspecMarker(NAME)


# -- Registration --------------------------------------------------------------------------------


@hookspec
def dmr_register_engines(registry: EngineRegistry) -> None:
    """Register inference engine classes.

    :param registry: call ``registry.add(EngineClass)`` for each
        :class:`dmr_core.engines.base.Engine` subclass the plugin provides. Names must be unique.

    Called once per process when plugins are loaded.
    """


@hookspec
def dmr_register_dialects(registry: DialectRegistry) -> None:
    """Register API dialects: a Flask blueprint plus the error shape for its URLs.

    :param registry: call ``registry.add(Dialect(...))``; see
        :class:`dmr_core.dialects.registry.Dialect`.

    Called once per web worker, while the app factory builds the app.
    """


# -- Routing -------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def dmr_select_engine(
    model: Model, requested: str | None, engines: EngineRegistry, settings: Settings
) -> str | None:
    """Pick the engine that serves ``model``.

    :param model: the resolved store entry (``model.config["format"]`` tells its format).
    :param requested: the engine named in the URL (``/engines/{engine}/...``), or None.
    :param engines: the registry, to check which engines exist.
    :param settings: the server's :class:`dmr_core.settings.Settings` (``default_engine``).
    :return: an engine name, or None to let the next implementation decide.

    Stops at the first non-None result. The built-in implementation runs last: it honours the
    requested engine, else the configured default engine.
    """


# -- Lifecycle -----------------------------------------------------------------------------------


@hookspec
def dmr_worker_started(worker: WorkerInfo) -> None:
    """Called in each inference worker after it is pinned to its device, before any model loads.

    :param worker: the worker's device, process id and socket path. ``CUDA_VISIBLE_DEVICES`` is
        already set in ``os.environ``, so this is the place to initialise device libraries.
    """


@hookspec
def dmr_startup(app: Flask) -> None:
    """Called in each web worker once the Flask app is built.

    :param app: the application; dmr's runtime is ``app.extensions["dmr"]``.
    """
