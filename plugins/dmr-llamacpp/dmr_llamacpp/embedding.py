"""One embedding from token ids, as ``Llama.embed`` makes it from text (which it alone tokenizes).

Text inputs are tokenized by the engine and go this same way, so an input sent as token ids gets
exactly the vector of the text those tokens spell. The steps are ``Llama.embed``'s for one
sequence: clear the KV cache, decode the input with every token an output (llama.cpp pools over
all of them), and read the pooled vector of sequence 0.
"""

from __future__ import annotations

from typing import Any


def embed_tokens(llama: Any, tokens: list[int]) -> list[float]:
    """The pooled (not yet normalised) embedding of ``tokens``, which must fit one batch."""
    import llama_cpp

    batch, context = llama._batch, llama._ctx
    batch.reset()
    batch.add_sequence(tokens, 0, True)
    context.kv_cache_clear()
    context.decode(batch)
    batch.reset()
    return llama_cpp.llama_get_embeddings_seq(context.ctx, 0)[: llama.n_embd()]
