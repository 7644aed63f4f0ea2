"""An example dmr engine plugin: ``echo``. Importing this module is cheap (the hook imports lazily)."""

from dmr_core import hookimpl


@hookimpl
def dmr_register_engines(registry):
    from dmr_echo.engine import EchoEngine

    registry.add(EchoEngine)
