"""llama.cpp passes the engine conformance suite every dmr engine must pass."""

import pytest

from dmr_core.conformance import EngineConformance
from dmr_llamacpp.engine import LlamaCppEngine


class TestLlamaCppConformance(EngineConformance):
    @pytest.fixture(scope="class")
    @classmethod
    def engine_class(cls):
        return LlamaCppEngine

    @pytest.fixture(scope="class")
    @classmethod
    def model_path(cls, smollm2_gguf):
        return smollm2_gguf
