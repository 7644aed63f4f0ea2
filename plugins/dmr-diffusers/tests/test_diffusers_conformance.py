"""The diffusers engine passes the conformance suite of image engines, from a folder and from a DDUF file."""

import pytest

from dmr_core.conformance import ImageEngineConformance
from dmr_diffusers.engine import DiffusersEngine
from tests.support.tiny_diffusers import NATIVE_SIDE


class TestDiffusersFolderConformance(ImageEngineConformance):
    size = (NATIVE_SIDE, NATIVE_SIDE)
    oversize = (NATIVE_SIDE * 4 + 8, NATIVE_SIDE)

    @pytest.fixture(scope="class")
    @classmethod
    def engine_class(cls):
        return DiffusersEngine

    @pytest.fixture(scope="class")
    @classmethod
    def model_path(cls, tiny_diffusers_dir):
        return tiny_diffusers_dir


class TestDiffusersDdufConformance(TestDiffusersFolderConformance):
    @pytest.fixture(scope="class")
    @classmethod
    def model_path(cls, tiny_dduf):
        return tiny_dduf
