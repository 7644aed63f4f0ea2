import pytest

from tests.support.tiny_spm_llama import write_tiny_llama_gguf


@pytest.fixture(scope="session")
def tiny_spm_gguf(tmp_path_factory):
    """A tiny random llama GGUF (v3) with a SentencePiece vocabulary."""
    return write_tiny_llama_gguf(tmp_path_factory.mktemp("ct") / "tiny-spm.gguf")
