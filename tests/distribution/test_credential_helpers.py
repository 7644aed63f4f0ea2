"""Docker credential helpers (``credsStore``, ``credHelpers``) against the real registry.

The helper is a real program speaking the real docker-credential-helpers protocol, written by the
fixture into a directory on ``PATH``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from dmr_core.distribution.auth import Credentials, find_credentials
from dmr_core.distribution.pull import pull_model
from dmr_core.errors import CredentialHelperFailed, Unauthorized
from tests.support.registry import REGISTRY_USERS

from .conftest import content_files, publish_gguf

USER, PASSWORD = next(iter(REGISTRY_USERS.items()))

HELPER = '''#!{python}
"""docker-credential-dmrtest: stands in for osxkeychain, pass or secretservice, which cannot run here.

It speaks their protocol: ``get`` reads a server URL on stdin and prints
{{"ServerURL","Username","Secret"}} from keychain.json beside it, or says the credentials are not
found and exits 1. Every server URL asked for is appended to asked.log.
"""
import json, pathlib, sys

here = pathlib.Path(__file__).resolve().parent
server = sys.stdin.read().strip()
with open(here / "asked.log", "a") as log:
    log.write(server + "\\n")
if sys.argv[1:] != ["get"]:
    sys.exit(2)
entry = json.loads((here / "keychain.json").read_text()).get(server)
if entry is None:
    print("credentials not found in native keychain")
    sys.exit(1)
print(json.dumps({{"ServerURL": server, "Username": entry[0], "Secret": entry[1]}}))
'''


class Keychain:
    """The helper's directory (on ``PATH``): what it holds, and which server URLs it was asked for."""

    def __init__(self, directory: Path, docker_config: Path) -> None:
        self.directory, self.docker_config = directory, docker_config
        self.hold({})

    def hold(self, entries: dict[str, tuple[str, str]]) -> None:
        (self.directory / "keychain.json").write_text(json.dumps(entries))

    def configure(self, **config: object) -> None:
        (self.docker_config / "config.json").write_text(json.dumps(config))

    @property
    def asked(self) -> list[str]:
        log = self.directory / "asked.log"
        return log.read_text().split() if log.exists() else []


@pytest.fixture
def keychain(tmp_path, clean_credentials, monkeypatch) -> Keychain:
    directory = tmp_path / "helper-bin"
    directory.mkdir()
    program = directory / "docker-credential-dmrtest"
    program.write_text(HELPER.format(python=sys.executable))
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")
    return Keychain(directory, clean_credentials)


def _pull(store, name: str) -> list[str]:
    return [event.message for event in pull_model(store, name, mirrors="")]


def test_creds_store_credentials_pull_from_a_basic_auth_registry(registry_server, keychain, make_gguf, tmp_path,
                                                                 fresh_store) -> None:  # fmt: skip
    registry = registry_server(auth="htpasswd")
    keychain.configure(credsStore="dmrtest")
    keychain.hold({registry.host: (USER, PASSWORD)})
    pushed = publish_gguf(registry, make_gguf(), tmp_path / "src")

    assert _pull(fresh_store, pushed.name)[-1] == "Model pulled successfully"
    assert fresh_store.resolve(pushed.name).id == pushed.model.id
    assert set(keychain.asked) == {registry.host}


def test_cred_helpers_entry_wins_over_creds_store_and_auths(registry_server, keychain, make_gguf, tmp_path,
                                                            fresh_store) -> None:  # fmt: skip
    registry = registry_server(auth="htpasswd")
    keychain.hold({registry.host: (USER, PASSWORD)})
    wrong = {"auth": "ZG1yLXRlc3Rlcjp3cm9uZw=="}  # dmr-tester:wrong
    keychain.configure(credHelpers={registry.host: "dmrtest"}, credsStore="not-installed", auths={registry.host: wrong})
    pushed = publish_gguf(registry, make_gguf(), tmp_path / "src")

    assert _pull(fresh_store, pushed.name)[-1] == "Model pulled successfully"


def test_wrong_credentials_from_the_helper_are_unauthorized(registry_server, keychain, make_gguf, tmp_path,
                                                            fresh_store) -> None:  # fmt: skip
    registry = registry_server(auth="htpasswd")
    keychain.configure(credsStore="dmrtest")
    keychain.hold({registry.host: (USER, PASSWORD)})
    pushed = publish_gguf(registry, make_gguf(), tmp_path / "src")
    keychain.hold({registry.host: (USER, "wrong")})

    with pytest.raises(Unauthorized, match="^Unauthorized: ") as caught:
        _pull(fresh_store, pushed.name)
    assert caught.value.status == 401
    assert fresh_store.list_models() == [] and content_files(fresh_store.root) == []


def test_credentials_not_in_the_keychain_mean_anonymous(registry, keychain, make_gguf, tmp_path, fresh_store) -> None:
    pushed = publish_gguf(registry, make_gguf(), tmp_path / "src")
    keychain.configure(credsStore="dmrtest", auths={registry.host: {"auth": "ZG1yLXRlc3Rlcjp3cm9uZw=="}})

    assert _pull(fresh_store, pushed.name)[-1] == "Model pulled successfully"
    assert registry.host in keychain.asked
    assert find_credentials(registry.host) is None, "with a helper configured, auths is not read (as in Docker)"


def test_a_helper_missing_from_path_is_a_clear_error(registry, keychain, fresh_store) -> None:
    keychain.configure(credHelpers={registry.host: "not-installed"})

    with pytest.raises(CredentialHelperFailed, match="docker-credential-not-installed") as caught:
        _pull(fresh_store, f"{registry.host}/ai/smollm2")
    assert caught.value.status == 401 and caught.value.message.startswith("Unauthorized: ")


def test_identity_token_is_exchanged_with_the_refresh_token_grant(registry_server, keychain, make_gguf, tmp_path,
                                                                  fresh_store) -> None:  # fmt: skip
    registry = registry_server(auth="token")
    keychain.configure(credsStore="dmrtest")
    keychain.hold({registry.host: (USER, PASSWORD)})
    pushed = publish_gguf(registry, make_gguf(), tmp_path / "src")
    keychain.hold({registry.host: ("<token>", registry.token_service.new_refresh_token(USER))})
    asked_before = len(registry.token_service.requests)

    assert _pull(fresh_store, pushed.name)[-1] == "Model pulled successfully"
    assert registry.token_service.requests[asked_before:] == [(USER, ["repository:ai/smollm2:pull"])]


def test_a_revoked_identity_token_is_unauthorized(registry_server, keychain, fresh_store) -> None:
    registry = registry_server(auth="token")
    keychain.configure(credsStore="dmrtest")
    keychain.hold({registry.host: ("<token>", "revoked")})
    with pytest.raises(Unauthorized, match="refused the credentials"):
        _pull(fresh_store, f"{registry.host}/ai/smollm2")


def test_docker_hub_is_asked_for_under_its_index_url(keychain) -> None:
    keychain.configure(credsStore="dmrtest")
    keychain.hold({"https://index.docker.io/v1/": ("hub-user", "hub-secret")})
    assert find_credentials("docker.io") == Credentials("hub-user", "hub-secret")
    assert keychain.asked == ["https://index.docker.io/v1/"]


def test_docker_hub_environment_credentials_when_the_helper_has_none(keychain, monkeypatch) -> None:
    keychain.configure(credsStore="dmrtest")
    monkeypatch.setenv("DOCKER_HUB_USER", "env-user")
    monkeypatch.setenv("DOCKER_HUB_PASSWORD", "env-password")
    assert find_credentials("docker.io") == Credentials("env-user", "env-password")
