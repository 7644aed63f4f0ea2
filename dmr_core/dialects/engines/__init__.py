"""DMR's scheduler API under ``/engines``: status, ps, df, unload and ``_configure``."""

from dmr_core import hookimpl


@hookimpl
def dmr_register_dialects(registry):
    from dmr_core.dialects.engines.routes import PATTERNS, PREFIXES, blueprint
    from dmr_core.dialects.native.errors import render_error
    from dmr_core.dialects.registry import Dialect

    registry.add(Dialect("engines", blueprint, prefixes=PREFIXES, render_error=render_error, patterns=PATTERNS))
