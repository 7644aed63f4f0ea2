"""The built-in engine choice by model format: diffusers models (both forms, and DMR's ``dduf``
format name) go to the engine named "diffusers", GGUF models never do, and a diffusers model with
no diffusers engine registered is a clear 503, never the default engine."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dmr_core.engines.registry import EngineRegistry
from dmr_core.errors import EngineUnavailable
from dmr_core.plugins import build_plugin_manager
from dmr_core.settings import load_settings
from dmr_core.store import ModelStore
from tests.support.diffusers_files import write_dduf, write_diffusers_folder


@pytest.fixture(scope="module")
def plugins():
    pm = build_plugin_manager()
    engines = EngineRegistry()
    pm.hook.dmr_register_engines(registry=engines)
    return pm, engines, load_settings(environ={})


def _choose(plugins, model, requested=None, engines=None):
    pm, registered, settings = plugins
    return pm.hook.dmr_select_engine(model=model, requested=requested, engines=engines or registered, settings=settings)


@pytest.fixture(scope="module")
def diffusers_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("selection")
    folder = write_diffusers_folder(root / "tiny-sd")
    store = ModelStore(root / "store")
    dduf = write_dduf(root / "t.dduf", folder)
    return store.import_diffusers(folder, "me/folder"), store.import_dduf(dduf, "me/dduf")


def test_diffusers_models_go_to_the_diffusers_engine(plugins, diffusers_models) -> None:
    assert "diffusers" in plugins[1], "the dmr-diffusers plugin is installed in this environment"
    assert [_choose(plugins, model) for model in diffusers_models] == ["diffusers", "diffusers"]


def test_dmrs_dduf_format_name_also_goes_there(plugins) -> None:
    from dmr_core.store.model import Model

    model = Model("sha256:" + "0" * 64, (), 0, {"format": "dduf"}, (), SimpleNamespace(), ("x.dduf",))
    assert model.format == "diffusers" and _choose(plugins, model) == "diffusers"


def test_gguf_models_stay_on_the_default_engine(plugins) -> None:
    assert _choose(plugins, SimpleNamespace(config={"format": "gguf"})) == "llama.cpp"


def test_without_a_diffusers_engine_the_error_names_it(plugins, diffusers_models) -> None:
    only_default = EngineRegistry()
    only_default.add(plugins[1].get("llama.cpp"))
    with pytest.raises(EngineUnavailable) as caught:
        _choose(plugins, diffusers_models[0], engines=only_default)
    assert caught.value.status == 503
    assert caught.value.message == ('model me/folder:latest is a diffusers model and the engine that loads it, '
                                    '"diffusers", is not installed (install the dmr-diffusers plugin)')  # fmt: skip
