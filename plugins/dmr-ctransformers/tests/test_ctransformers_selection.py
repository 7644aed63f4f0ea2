"""Engine choice: ``ggml`` models go to ctransformers through the plugin's ``dmr_select_engine``."""

from types import SimpleNamespace

import pytest

from dmr_core.plugins import build_plugin_manager
from dmr_core.settings import load_settings


@pytest.fixture(scope="module")
def choose():
    pm = build_plugin_manager()
    from dmr_core.engines.registry import EngineRegistry

    engines = EngineRegistry()
    pm.hook.dmr_register_engines(registry=engines)
    assert "ctransformers" in engines.names()
    settings = load_settings(environ={})

    def choose(model_format, requested=None):
        model = SimpleNamespace(config={"format": model_format})  # the store imports only GGUF today
        return pm.hook.dmr_select_engine(model=model, requested=requested, engines=engines, settings=settings)

    return choose


def test_ggml_models_go_to_ctransformers(choose):
    assert choose("ggml") == "ctransformers"


def test_gguf_models_stay_on_the_default_engine(choose):
    assert choose("gguf") == "llama.cpp"


def test_the_url_still_decides(choose):
    assert choose("gguf", requested="ctransformers") == "ctransformers"
    assert choose("ggml", requested="llama.cpp") == "llama.cpp"
