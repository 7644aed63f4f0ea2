"""dmr's image generation engine plugin. Importing this module is cheap: torch and diffusers load in ``load()``."""

from dmr_core import hookimpl


@hookimpl
def dmr_register_engines(registry):
    from dmr_diffusers.engine import DiffusersEngine

    registry.add(DiffusersEngine)
