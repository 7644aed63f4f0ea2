"""DMR's native model API under ``/models``: pull, list, inspect, tag, push, delete, export, load."""

from dmr_core import hookimpl


@hookimpl
def dmr_register_dialects(registry):
    from dmr_core.dialects.native.errors import render_error
    from dmr_core.dialects.native.routes import blueprint
    from dmr_core.dialects.registry import Dialect

    registry.add(Dialect("native", blueprint, prefixes=("/models",), render_error=render_error))
