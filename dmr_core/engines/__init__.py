"""Inference engines: the :class:`~dmr_core.engines.base.Engine` contract and the registry."""
