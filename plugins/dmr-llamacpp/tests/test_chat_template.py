"""Chat templates with and without tool syntax (rendered with jinja2, no model loaded)."""

import json

import pytest
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from dmr_core.errors import InvalidRequest
from dmr_core.generation import GenerationRequest, Message, ToolCall, ToolChoice, ToolSpec
from dmr_core.toolcalls import OPEN
from dmr_llamacpp.chat import ChatTemplate

# The shape of Qwen2.5's template: tools in the system turn, calls and results in its own tags.
TOOL_AWARE = """{%- if tools %}<|im_start|>system
# Tools
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}<|im_end|>
{% endif %}
{%- for m in messages %}
{%- if m.role == "tool" %}<|im_start|>user
<tool_response>{{ m.content }}</tool_response><|im_end|>
{% elif m.tool_calls %}<|im_start|>assistant
{%- for c in m.tool_calls %}
<tool_call>{{ {"name": c.function.name, "arguments": c.function.arguments} | tojson }}</tool_call>
{%- endfor %}<|im_end|>
{% else %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endif %}
{%- endfor %}<|im_start|>assistant
"""
PLAIN = """{% for m in messages %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endfor %}<|im_start|>assistant
"""
STRICT = (
    '{% for m in messages %}{% if m.role not in ["user", "assistant"] %}'
    '{{ raise_exception("roles must be user or assistant") }}{% endif %}{{ m.content }}{% endfor %}'
)
WEATHER = ToolSpec("get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}})
CALL = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
TURNS = (Message("user", "Weather in Paris?"), Message("assistant", "", tool_calls=(CALL,)),
         Message("tool", "18C", tool_call_id="call_1", name="get_weather"))  # fmt: skip


def template(source: str) -> ChatTemplate:
    return ChatTemplate(Jinja2ChatFormatter(template=source, eos_token="<|im_end|>", bos_token=""))


def render(source: str, **kwargs) -> str:
    return template(source).render(GenerationRequest("m", messages=TURNS, tools=(WEATHER,), **kwargs))[0]


def test_tool_syntax_is_detected_by_rendering_not_by_name():
    assert template(TOOL_AWARE).native_tools
    assert not template(PLAIN).native_tools
    assert not template(STRICT).native_tools  # raises on the probe: no usable tool syntax


def test_a_tool_aware_template_gets_tools_and_openai_shaped_turns():
    prompt = render(TOOL_AWARE)
    assert json.dumps(WEATHER.parameters) in prompt and "# Tools" in prompt
    assert '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>' in prompt
    assert "<tool_response>18C</tool_response>" in prompt


def test_a_plain_template_gets_the_generic_format():
    prompt = render(PLAIN)
    assert prompt.startswith("<|im_start|>system\n# Tools") and '"name": "get_weather"' in prompt
    assert f'{OPEN}\n{{"name": "get_weather", "arguments": {{"city": "Paris"}}}}' in prompt
    assert '<tool_response>\n{"name": "get_weather", "content": "18C"}\n</tool_response>' in prompt


def test_tool_choice_none_renders_no_tools_in_either_format():
    assert "# Tools" not in render(PLAIN, tool_choice=ToolChoice("none"))
    assert "# Tools" not in render(TOOL_AWARE, tool_choice=ToolChoice("none"))


def test_a_template_refusing_the_turns_is_a_400_on_messages():
    with pytest.raises(InvalidRequest) as caught:
        template(STRICT).render(GenerationRequest("m", messages=(Message("system", "x"),)))
    assert caught.value.param == "messages" and "roles must be user or assistant" in caught.value.message


class _FakeLlama:
    """Just what ChatTemplate.from_model reads from a loaded model."""

    metadata = {"tokenizer.chat_template": PLAIN}

    class _model:  # noqa: N801 (mirrors llama-cpp-python's attribute)
        token_get_text = staticmethod(lambda token: "<|im_end|>")

    token_eos, token_bos = staticmethod(lambda: 2), staticmethod(lambda: -1)


def test_a_bundle_template_overrides_the_gguf_template(tmp_path):
    (tmp_path / "template.jinja").write_text("{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}")
    bundled = ChatTemplate.from_model(_FakeLlama(), str(tmp_path / "model.gguf"))
    assert bundled.render(GenerationRequest("m", messages=(Message("user", "Hi"),)))[0] == "[user] Hi\n"
    plain = ChatTemplate.from_model(_FakeLlama(), str(tmp_path / "elsewhere" / "model.gguf"))
    assert plain.render(GenerationRequest("m", messages=(Message("user", "Hi"),)))[0].startswith("<|im_start|>user")


def test_a_thinking_template_gets_enable_thinking_and_says_where_replies_start():
    from tests.support.thinking import THINKING_TEMPLATE

    thinking, ask = template(THINKING_TEMPLATE), (Message("user", "2+2?"),)
    assert thinking.thinking and not template(PLAIN).thinking
    on, off, default = (GenerationRequest("m", messages=ask, think=think) for think in (True, False, None))
    assert thinking.render(on)[0].endswith("<|im_start|>assistant\n<think>\n")
    assert thinking.render(off)[0].endswith("<think>\n\n</think>\n\n")
    assert thinking.splitter(on).feed("so 4</think>4") == ("so 4", "4")  # the reply starts inside <think>
    assert thinking.splitter(default).feed("so 4</think>4") == ("so 4", "4")
    assert thinking.splitter(off) is None and template(PLAIN).splitter(on) is None
    prefilled = GenerationRequest("m", messages=(*ask, Message("assistant", "Sum.</think>The answer:")))
    assert thinking.splitter(prefilled).feed(" 4") == ("", " 4")  # the prefill closed the reasoning
