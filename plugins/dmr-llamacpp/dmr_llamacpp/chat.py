"""Chat prompts from the model's own template (GGUF ``tokenizer.chat_template``), with tools.

The template is rendered with jinja2 as llama.cpp and Hugging Face do (llama-cpp-python's
``Jinja2ChatFormatter``). Whether it has tool syntax is found by rendering a probe tool and looking
for its name in the output (what llama.cpp's template-capability check does), never by model
name. A tool-aware template gets ``tools`` and OpenAI-shaped tool turns; any other template gets
:mod:`dmr_core.toolcalls`' generic format. A thinking template gets ``enable_thinking`` (when the
request sets ``think``), and its replies go through :class:`dmr_core.reasoning.ReasoningSplitter`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dmr_core import reasoning, toolcalls
from dmr_core.errors import InvalidRequest
from dmr_core.generation import GenerationRequest, ToolSpec

#: A chat template shipped beside the weights in a model bundle, which wins over the GGUF's own.
TEMPLATE_FILE = "template.jinja"
_PROBE = ToolSpec("dmr_probe_tool_8c1f", "probe", {"type": "object", "properties": {"q": {"type": "string"}}})


class ChatTemplate:
    """:param formatter: a ``Jinja2ChatFormatter`` for the model's template."""

    def __init__(self, formatter: Any) -> None:
        self._formatter = formatter
        self.native_tools = self._renders_tools()
        self.thinking = reasoning.template_supports_thinking(getattr(formatter, "template", ""))
        self._opens: dict[bool | None, bool] = {}  # think -> the generation prompt opens <think>

    @classmethod
    def from_model(cls, llama: Any, model_path: str) -> ChatTemplate | None:
        """The bundle's ``template.jinja`` if it has one (it overrides), else the GGUF's template,
        else None."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        override = Path(model_path).with_name(TEMPLATE_FILE)
        template = override.read_text() if override.is_file() else llama.metadata.get("tokenizer.chat_template")
        if not template:
            return None
        eos, bos = llama.token_eos(), llama.token_bos()
        text = llama._model.token_get_text
        return cls(Jinja2ChatFormatter(template=template, eos_token=text(eos) if eos != -1 else "",
                                       bos_token=text(bos) if bos != -1 else ""))  # fmt: skip

    def _renders_tools(self) -> bool:
        try:
            probe = toolcalls.openai_tools([_PROBE])
            rendered = self._formatter(messages=[{"role": "user", "content": "hi"}], tools=probe)
        except Exception:  # a template that chokes on tools has no tool syntax we can use
            return False
        return _PROBE.name in rendered.prompt

    def render(self, request: GenerationRequest) -> tuple[str, bool]:
        """The prompt text, and whether the template already added the BOS token.

        A trailing assistant message is a prefill (Anthropic's, and llama.cpp's server's, meaning):
        the earlier turns are rendered with the generation prompt, then the prefill text follows
        without an end-of-turn, so the model continues it.
        """
        prefill = _prefill(request.messages)
        history = request.messages[:-1] if prefill else request.messages
        messages = toolcalls.template_messages(history, native=self.native_tools)
        tools = None
        if toolcalls.enabled(request) and self.native_tools:
            tools = toolcalls.openai_tools(request.tools)
        elif toolcalls.enabled(request):
            section = toolcalls.system_section(request.tools, request.tool_choice)
            messages = toolcalls.with_system_section(messages, section)
        try:
            rendered = self._formatter(messages=messages, tools=tools, **_think_args(request.think))
        except Exception as exc:  # templates raise_exception() on turn orders they do not accept
            why = f"the model's chat template cannot render these messages: {exc}"
            raise InvalidRequest(why, param="messages") from exc
        return rendered.prompt + prefill, rendered.added_special


    def splitter(self, request: GenerationRequest) -> reasoning.ReasoningSplitter | None:
        """What splits reasoning off this request's reply; None when there is none to split."""
        if not self.thinking or request.think is False or not request.is_chat:
            return None
        opened = reasoning.ends_inside_reasoning(_prefill(request.messages), self._opens_reasoning(request.think))
        return reasoning.ReasoningSplitter(opened)

    def _opens_reasoning(self, think: bool | None) -> bool:
        """Whether the generation prompt leaves ``<think>`` open (the reply then starts inside it)."""
        if think not in self._opens:
            try:
                prompt = self._formatter(messages=[{"role": "user", "content": "hi"}], **_think_args(think)).prompt
            except Exception:
                prompt = ""
            self._opens[think] = reasoning.ends_inside_reasoning(prompt)
        return self._opens[think]


def _think_args(think: bool | None) -> dict:
    return {} if think is None else {"enable_thinking": think}


def _prefill(messages) -> str:
    last = messages[-1]
    if len(messages) > 1 and last.role == "assistant" and last.content and not last.tool_calls:
        return last.content
    return ""
