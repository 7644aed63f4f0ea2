"""dmr's own test support: real registries, the thinking server, tiny GGUF models of every kind.

None of this ships: only dmr's suites use it. What engine authors use (the fixtures for real
servers and models, the conformance suite) is the installed :mod:`dmr_core.testing`. Importable as
``tests.support`` from every suite of the checkout (``pythonpath = .`` in setup.cfg).
"""
