"""Settings precedence: defaults < TOML file < DMR_* environment < keyword overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dmr_core import settings as settings_module
from dmr_core.settings import DEFAULT_CONFIG_FILE, Settings, load_settings


@pytest.fixture(autouse=True)
def no_models_path(monkeypatch):
    # The store default reads MODELS_PATH from the process environment.
    monkeypatch.delenv("MODELS_PATH", raising=False)


@pytest.fixture
def config(tmp_path):
    """Write a TOML config file and return the environment that points DMR_CONFIG at it."""

    def write(text: str, **env: str) -> dict[str, str]:
        path = tmp_path / "dmr.toml"
        path.write_text(text)
        return {"DMR_CONFIG": str(path), **env}

    return write


def no_file(tmp_path: Path, **env: str) -> dict[str, str]:
    """An environment whose config file sets nothing."""
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    return {"DMR_CONFIG": str(empty), **env}


# -- precedence ----------------------------------------------------------------------------------


def test_defaults_apply_without_file_env_or_overrides(tmp_path):
    assert load_settings(no_file(tmp_path)) == Settings()


def test_default_values(tmp_path):
    s = load_settings(no_file(tmp_path))
    assert s.bind == "127.0.0.1:12434"
    assert s.web_workers == 2
    assert s.devices == "cpu"
    assert s.default_engine == "llama.cpp"
    assert s.max_body == 10 * 1024 * 1024
    assert s.stream_flush_interval == 0.05
    assert s.store == str(Path.home() / ".dmr" / "models")


def test_file_beats_defaults(config):
    s = load_settings(config('bind = "0.0.0.0:9000"\nweb_workers = 5\n'))
    assert (s.bind, s.web_workers) == ("0.0.0.0:9000", 5)
    assert s.devices == "cpu"  # untouched keys keep their default


def test_env_beats_file(config):
    s = load_settings(config("web_workers = 5\nmax_context = 2048\n", DMR_WEB_WORKERS="7"))
    assert s.web_workers == 7
    assert s.max_context == 2048


def test_overrides_beat_env_and_file(config):
    env = config('bind = "file:1"\n', DMR_BIND="env:2")
    assert load_settings(env, bind="override:3").bind == "override:3"


def test_every_layer_contributes_its_own_keys(config):
    env = config('devices = "cuda:0"\n', DMR_THREADS="3")
    s = load_settings(env, log_level="debug")
    assert (s.devices, s.threads, s.log_level, s.bind) == ("cuda:0", 3, "debug", "127.0.0.1:12434")


def test_process_environment_is_read_when_none_is_given(monkeypatch, tmp_path):
    monkeypatch.setenv("DMR_CONFIG", no_file(tmp_path)["DMR_CONFIG"])
    monkeypatch.setenv("DMR_DEFAULT_ENGINE", "other")
    assert load_settings().default_engine == "other"


def test_given_environment_replaces_the_process_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DMR_BIND", "from-process:1")
    assert load_settings(no_file(tmp_path)).bind == "127.0.0.1:12434"


def test_without_dmr_config_the_project_file_is_read():
    assert DEFAULT_CONFIG_FILE.name == "dmr.toml" and DEFAULT_CONFIG_FILE.parent.name == "conf"
    s = load_settings({})
    expected = settings_module._from_file(DEFAULT_CONFIG_FILE, required=True)
    for key, value in expected.items():
        assert getattr(s, key) == value


def test_empty_config_file_sets_nothing(tmp_path):
    assert load_settings(no_file(tmp_path), web_workers=9).web_workers == 9


def test_models_path_in_the_process_environment_sets_the_default_store(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELS_PATH", "/srv/models")
    monkeypatch.setenv("DMR_CONFIG", no_file(tmp_path)["DMR_CONFIG"])
    assert load_settings().store == "/srv/models"


def test_dmr_store_beats_models_path(tmp_path):
    assert load_settings(no_file(tmp_path, MODELS_PATH="/srv/models", DMR_STORE="/data/dmr")).store == "/data/dmr"


# -- types ---------------------------------------------------------------------------------------


def test_env_values_are_parsed_as_int(tmp_path):
    s = load_settings(no_file(tmp_path, DMR_WEB_WORKERS="4", DMR_MAX_BODY="1024"))
    assert s.web_workers == 4 and isinstance(s.web_workers, int)
    assert s.max_body == 1024


def test_env_values_are_parsed_as_float(tmp_path):
    s = load_settings(no_file(tmp_path, DMR_STREAM_FLUSH_INTERVAL="0.025"))
    assert s.stream_flush_interval == 0.025 and isinstance(s.stream_flush_interval, float)


def test_string_env_values_are_kept_verbatim(tmp_path):
    assert load_settings(no_file(tmp_path, DMR_DEVICES="cuda:0,cuda:1")).devices == "cuda:0,cuda:1"


def test_malformed_int_in_env_raises(tmp_path):
    with pytest.raises(ValueError):
        load_settings(no_file(tmp_path, DMR_WEB_WORKERS="two"))


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", " yes ", "on"])
def test_truthy_strings_coerce_to_true(raw):
    assert settings_module._coerce(raw, bool) is True


@pytest.mark.parametrize("raw", ["0", "false", "no", "off", "", "maybe"])
def test_other_strings_coerce_to_false(raw):
    assert settings_module._coerce(raw, bool) is False


def test_every_field_has_a_coercible_type():
    assert set(settings_module._field_types()) == {f.name for f in dataclasses.fields(Settings)}
    assert set(settings_module._field_types().values()) <= {str, int, float, bool}


def test_toml_values_keep_their_toml_types(config):
    s = load_settings(config("stream_flush_interval = 0.5\ncontext_size = 8192\n"))
    assert (s.stream_flush_interval, s.context_size) == (0.5, 8192)


# -- the file ------------------------------------------------------------------------------------


def test_unknown_key_in_the_file_raises_value_error_naming_it(config):
    with pytest.raises(ValueError, match="web_worker"):
        load_settings(config("web_worker = 3\n"))


def test_invalid_toml_raises(config):
    with pytest.raises(ValueError):
        load_settings(config("bind = \n"))


def test_unknown_override_is_rejected(tmp_path):
    with pytest.raises(TypeError):
        load_settings(no_file(tmp_path), not_a_setting=1)


def test_unknown_dmr_env_vars_are_ignored(tmp_path):
    assert load_settings(no_file(tmp_path, DMR_NOT_A_SETTING="1")) == Settings()


# -- derived paths -------------------------------------------------------------------------------


def test_pool_path_defaults_under_the_store(tmp_path):
    s = load_settings(no_file(tmp_path, DMR_STORE="/srv/models"))
    assert s.pool_path == Path("/srv/models/.pool")


def test_pool_dir_replaces_the_default_pool_path(tmp_path):
    assert load_settings(no_file(tmp_path), store="/srv/models", pool_dir="/run/dmr").pool_path == Path("/run/dmr")


def test_home_is_expanded_in_store_and_pool_paths(tmp_path):
    s = load_settings(no_file(tmp_path), store="~/models")
    assert s.store_path == Path.home() / "models"
    assert s.pool_path == Path.home() / "models" / ".pool"
    assert s.replace(pool_dir="~/pool").pool_path == Path.home() / "pool"


def test_settings_are_immutable_and_replace_returns_a_copy():
    s = Settings(store="/a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.store = "/b"  # type: ignore[misc]
    t = s.replace(store="/b")
    assert (s.store, t.store) == ("/a", "/b")


def test_a_missing_dmr_config_file_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="not a file"):
        load_settings({"DMR_CONFIG": str(tmp_path / "absent.toml")})


def test_toml_values_are_type_checked(config):
    with pytest.raises(ValueError, match="web_workers"):
        load_settings(config('web_workers = "two"\n'))
    assert load_settings(config("stream_flush_interval = 1\n")).stream_flush_interval == 1.0


def test_models_path_from_the_given_environment_is_the_store_default(tmp_path):
    assert load_settings(no_file(tmp_path, MODELS_PATH="/srv/m")).store == "/srv/m"
    assert load_settings(no_file(tmp_path, MODELS_PATH="/srv/m", DMR_STORE="/srv/d")).store == "/srv/d"
