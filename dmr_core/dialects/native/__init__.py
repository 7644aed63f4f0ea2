"""DMR's native model API under ``/models``: pull, list, inspect, tag, push, delete, export, load;
and the server's own ``/version`` and ``/logs``."""

from dmr_core import hookimpl


@hookimpl
def dmr_register_dialects(registry):
    from dmr_core.dialects.native import server_routes
    from dmr_core.dialects.native.errors import render_error
    from dmr_core.dialects.native.routes import blueprint
    from dmr_core.dialects.registry import Dialect

    registry.add(Dialect("native", blueprint, prefixes=("/models",), render_error=render_error))
    registry.add(Dialect("server", server_routes.blueprint, prefixes=server_routes.PREFIXES, render_error=render_error))
