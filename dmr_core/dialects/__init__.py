"""API dialects: each a blueprint plus I/O-free translation to and from :mod:`dmr_core.generation`."""
