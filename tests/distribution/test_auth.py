"""Registry authentication against the real registry: htpasswd basic auth and bearer tokens."""

from __future__ import annotations

import pytest

from dmr_core.distribution.pull import pull_model, remote_model
from dmr_core.distribution.push import push_model
from dmr_core.errors import Unauthorized
from dmr_core.store import ModelStore
from tests.support.registry import REGISTRY_USERS, write_docker_config

from .conftest import content_files, publish_gguf

USER, PASSWORD = next(iter(REGISTRY_USERS.items()))


@pytest.fixture
def login(clean_credentials):
    """``login(registry, user, password)``: what ``docker login`` leaves in the Docker config."""
    return lambda registry, user=USER, password=PASSWORD: write_docker_config(clean_credentials, registry.host, user, password)


def _pull(store: ModelStore, name: str, **kwargs) -> list[str]:
    return [event.message for event in pull_model(store, name, **kwargs)]


# htpasswd (Basic challenge) ---------------------------------------------------------------------


def test_basic_auth_with_docker_config_credentials(registry_server, login, make_gguf, tmp_path, fresh_store) -> None:
    registry = registry_server(auth="htpasswd")
    login(registry)
    pushed = publish_gguf(registry, make_gguf(), tmp_path / "src")

    assert _pull(fresh_store, pushed.name)[-1] == "Model pulled successfully"
    assert fresh_store.resolve(pushed.name).id == pushed.model.id


def test_basic_auth_without_credentials_is_unauthorized(registry_server, login, make_gguf, tmp_path,
                                                        fresh_store, clean_credentials) -> None:  # fmt: skip
    registry = registry_server(auth="htpasswd")
    login(registry)
    pushed = publish_gguf(registry, make_gguf(), tmp_path / "src")
    (clean_credentials / "config.json").unlink()

    with pytest.raises(Unauthorized) as caught:
        _pull(fresh_store, pushed.name)
    assert caught.value.status == 401
    assert caught.value.message.startswith("Unauthorized: ")
    assert fresh_store.list_models() == [] and content_files(fresh_store.root) == []


def test_basic_auth_with_a_wrong_password_is_unauthorized(registry_server, login, make_gguf, tmp_path) -> None:
    registry = registry_server(auth="htpasswd")
    login(registry, password="wrong")
    source = ModelStore(tmp_path / "src")
    name = f"{registry.host}/ai/smollm2"
    source.import_gguf(make_gguf(), name)
    with pytest.raises(Unauthorized):
        list(push_model(source, name))


# Token auth (Bearer challenge) --------------------------------------------------------------------


def test_token_auth_with_docker_config_credentials(registry_server, login, make_gguf, tmp_path, fresh_store) -> None:
    registry = registry_server(auth="token")
    login(registry)
    pushed = publish_gguf(registry, make_gguf(), tmp_path / "src")

    assert _pull(fresh_store, pushed.name)[-1] == "Model pulled successfully"
    asked = {(user, scope.rpartition(":")[0], frozenset(scope.rpartition(":")[2].split(",")))
             for user, scopes in registry.token_service.requests for scope in scopes}  # fmt: skip
    assert asked == {(USER, "repository:ai/smollm2", frozenset({"pull", "push"})),
                     (USER, "repository:ai/smollm2", frozenset({"pull"}))}  # fmt: skip


def test_token_auth_with_an_explicit_bearer_token(registry_server, login, make_gguf, tmp_path, fresh_store,
                                                  clean_credentials) -> None:  # fmt: skip
    registry = registry_server(auth="token")
    login(registry)
    pushed = publish_gguf(registry, make_gguf(), tmp_path / "src")
    (clean_credentials / "config.json").unlink()
    token = registry.token_service.issue(USER, ["repository:ai/smollm2:pull"])
    asked_before = len(registry.token_service.requests)

    assert _pull(fresh_store, pushed.name, bearer_token=token)[-1] == "Model pulled successfully"
    assert len(registry.token_service.requests) == asked_before, "an explicit token is sent as it is"
    assert remote_model(pushed.name, bearer_token=token)[0] == pushed.model.id


def test_token_auth_anonymous_is_unauthorized(registry_server, login, make_gguf, tmp_path, fresh_store,
                                              clean_credentials) -> None:  # fmt: skip
    registry = registry_server(auth="token")
    login(registry)
    pushed = publish_gguf(registry, make_gguf(), tmp_path / "src")
    (clean_credentials / "config.json").unlink()

    with pytest.raises(Unauthorized, match="^Unauthorized: "):
        _pull(fresh_store, pushed.name)
    assert (None, ["repository:ai/smollm2:pull"]) in registry.token_service.requests
    assert fresh_store.list_models() == []


def test_token_auth_with_a_wrong_password_is_unauthorized(registry_server, login, fresh_store) -> None:
    registry = registry_server(auth="token")
    login(registry, password="wrong")
    with pytest.raises(Unauthorized, match="refused the credentials"):
        _pull(fresh_store, f"{registry.host}/ai/smollm2")


def test_a_bad_explicit_token_is_unauthorized(registry_server, fresh_store) -> None:
    registry = registry_server(auth="token")
    with pytest.raises(Unauthorized):
        _pull(fresh_store, f"{registry.host}/ai/smollm2", bearer_token="not-a-token")
