"""Generations a test holds open: they must run to their ``max_tokens``, not end with the story.

At temperature 1.0 SmolLM2 sometimes ends a "very long story" within a second or two (a stream
that ended before the signal a test sent it was once a CI failure). OpenAI's ``logit_bias`` bans
the model's end-of-generation tokens (``<|endoftext|>`` 0, ``<|im_end|>`` 2, ``<file_sep>`` 4:
those ``llama_vocab_is_eog`` names), so only ``max_tokens``, the context or the test ends it.
"""

LONG_STORY = [{"role": "user", "content": "Write a very long story about ships."}]

#: OpenAI ``logit_bias`` that leaves SmolLM2 no way to end a generation on its own.
NEVER_ENDS = {"0": -100, "2": -100, "4": -100}
