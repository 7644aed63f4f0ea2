"""A server whose store also holds a thinking model: SmolLM2's weights with a Qwen3-style template.

Used by the reasoning tests of every dialect (``thinking_server``, made available to all of
``tests/`` by ``tests/conftest.py``) and by the llama.cpp plugin's chat-template tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dmr_core.store.layout import ModelStore
from dmr_core.testing import DmrServer, start_server, stop_server

#: A Qwen3-style chat template for SmolLM2's ChatML tokens: the generation prompt opens ``<think>``
#: unless ``enable_thinking`` is false (then it holds an empty, closed reasoning block).
THINKING_TEMPLATE = """{%- for message in messages %}
{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\n' }}
{%- if enable_thinking is defined and enable_thinking is false %}
{{- '<think>\n\n</think>\n\n' }}
{%- else %}
{{- '<think>\n' }}
{%- endif %}
{%- endif %}
"""
THINKING_MODEL = "ai/smollm2-thinking"


@pytest.fixture(scope="session")
def thinking_server(smollm2_gguf, tmp_path_factory) -> Iterator[DmrServer]:
    """A server whose store has ``ai/smollm2`` and :data:`THINKING_MODEL`: the same weights
    packaged with :data:`THINKING_TEMPLATE` as their chat-template layer."""
    root = tmp_path_factory.mktemp("thinking-store")
    template = root / "thinking.jinja"
    template.write_text(THINKING_TEMPLATE)
    store = ModelStore(root / "store")
    store.import_gguf(smollm2_gguf, "ai/smollm2")
    store.import_gguf(smollm2_gguf, THINKING_MODEL, chat_template=template)
    server = start_server(root / "store")
    try:
        yield server
    finally:
        stop_server(server)
