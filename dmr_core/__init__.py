"""dmr: a model runner that speaks Docker Model Runner's, OpenAI's, Anthropic's and Ollama's APIs.

What a plugin author needs from this package is :data:`hookimpl`, the marker for hook
implementations (see :mod:`dmr_core.hookspecs` for the contract), and the engine base class in
:mod:`dmr_core.engines.base`.
"""

import pluggy

__version__ = "0.1.0"

#: The project name, used for the plugin manager and the setuptools entry-point group.
NAME = "dmr"

#: Marker for hook implementations: ``@hookimpl def dmr_register_engines(registry): ...``.
hookimpl = pluggy.HookimplMarker(NAME)

__all__ = ["NAME", "__version__", "hookimpl"]
