"""ctransformers passes the engine conformance suite every dmr engine must pass."""

import pytest

from dmr_core.conformance import EngineConformance
from dmr_ctransformers.engine import CTransformersEngine


class TestCTransformersConformance(EngineConformance):
    supports_logit_bias = False  # ctransformers' generate takes no biases

    @pytest.fixture(scope="class")
    @classmethod
    def engine_class(cls):
        return CTransformersEngine

    @pytest.fixture(scope="class")
    @classmethod
    def model_path(cls, tiny_spm_gguf):
        return tiny_spm_gguf
