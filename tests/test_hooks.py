"""The plugin contract: every hook documented, built-ins and entry points registered through it."""

import re
from pathlib import Path

import pytest

from dmr_core import hookspecs
from dmr_core.engines.registry import EngineRegistry
from dmr_core.plugins import DEFAULT_PLUGINS, build_plugin_manager
from dmr_core.settings import PROJECT_ROOT

HOOK_NAMES = sorted(name for name in dir(hookspecs) if name.startswith("dmr_"))
DOCS = (PROJECT_ROOT / "docs" / "plugin_hooks.md").read_text()


def test_there_are_hooks():
    assert "dmr_register_engines" in HOOK_NAMES and len(HOOK_NAMES) >= 5


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_every_hook_has_a_section_in_the_docs(name):
    assert re.search(rf"^## `?{name}\(", DOCS, re.MULTILINE), f"docs/plugin_hooks.md has no section for {name}"


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_every_hookspec_has_a_docstring_with_params(name):
    doc = getattr(hookspecs, name).__doc__ or ""
    assert len(doc.strip()) > 40


def test_docs_name_no_hook_that_does_not_exist():
    documented = set(re.findall(r"^## `?(dmr_\w+)\(", DOCS, re.MULTILINE))
    assert documented == set(HOOK_NAMES)


def test_llamacpp_engine_is_found_through_its_entry_point():
    pm = build_plugin_manager()
    assert "llamacpp" in {name for name, _ in pm.list_name_plugin()}
    registry = EngineRegistry()
    pm.hook.dmr_register_engines(registry=registry)
    assert "llama.cpp" in registry


def test_builtins_register_through_the_same_hooks():
    pm = build_plugin_manager()
    names = {name for name, _ in pm.list_name_plugin()}
    assert set(DEFAULT_PLUGINS) <= names


def test_load_plugins_allow_list_excludes_entry_points(monkeypatch):
    monkeypatch.setenv("DMR_LOAD_PLUGINS", "")
    pm = build_plugin_manager()
    registry = EngineRegistry()
    pm.hook.dmr_register_engines(registry=registry)
    assert "llama.cpp" not in registry


def test_engine_class_module_imports_without_llama_cpp():
    # Web workers import engine classes to list them; llama_cpp must load only in load().
    import subprocess
    import sys

    code = "import sys, dmr_llamacpp.engine; assert 'llama_cpp' not in sys.modules, 'llama_cpp imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
