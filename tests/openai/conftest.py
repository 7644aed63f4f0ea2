"""What the OpenAI-dialect tests share beyond dmr_core.testing's fixtures."""

import pytest


@pytest.fixture(scope="session")
def smollm2_vocabulary(smollm2_gguf):
    """The default model's vocabulary alone (no weights), loaded once: what its ids are, in the test process."""
    import llama_cpp

    vocab = llama_cpp.Llama(model_path=str(smollm2_gguf), vocab_only=True, verbose=False)
    try:
        yield vocab
    finally:
        vocab.close()
