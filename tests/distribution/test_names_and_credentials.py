"""Where a reference is pulled from, over which scheme, and with which credentials (no network)."""

from __future__ import annotations

import base64
import json

import pytest

from dmr_core.distribution.auth import Credentials, find_credentials, parse_challenge
from dmr_core.distribution.endpoints import base_url
from dmr_core.distribution.pull import pull_reference
from dmr_core.errors import InvalidReference
from dmr_core.store import ModelStore
from dmr_core.store.references import parse_reference

HEX = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("ai/x", "docker.io/ai/x:latest"),
        ("x", "docker.io/ai/x:latest"),
        ("docker.io/ai/x:latest", "docker.io/ai/x:latest"),
        ("ai/x:Q4_K_M", "docker.io/ai/x:Q4_K_M"),
        ("myorg/x", "docker.io/myorg/x:latest"),
        ("127.0.0.1:5000/team/x", "127.0.0.1:5000/team/x:latest"),
        (f"ai/x@sha256:{HEX}", f"docker.io/ai/x@sha256:{HEX}"),
        (HEX[:12], f"docker.io/ai/{HEX[:12]}:latest"),  # a short id is also a valid name
    ],
)
def test_pull_references_are_normalised_like_dmr(text: str, name: str) -> None:
    assert pull_reference(text).name == name


def test_default_registry_setting(monkeypatch) -> None:
    monkeypatch.setenv("DEFAULT_REGISTRY", "registry.local:5000")
    assert pull_reference("smollm2").name == "registry.local:5000/ai/smollm2:latest"
    assert parse_reference("docker.io/ai/x").name == "docker.io/ai/x:latest"


def test_store_lookups_follow_the_default_registry(monkeypatch, make_gguf, tmp_path) -> None:
    store = ModelStore(tmp_path / "store")
    monkeypatch.setenv("DEFAULT_REGISTRY", "registry.local:5000")
    model = store.import_gguf(make_gguf(), "smollm2")
    assert model.tags == ("registry.local:5000/ai/smollm2:latest",)
    assert store.resolve("ai/smollm2") == model


@pytest.mark.parametrize(
    ("registry", "url"),
    [
        ("docker.io", "https://registry-1.docker.io"),
        ("index.docker.io", "https://registry-1.docker.io"),
        ("ghcr.io", "https://ghcr.io"),
        ("localhost:5000", "http://localhost:5000"),
        ("localhost", "http://localhost"),
        ("127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("registry.local:5000", "http://registry.local:5000"),
        ("registry.example.com:5000", "https://registry.example.com:5000"),
    ],
)
def test_registry_urls(registry: str, url: str) -> None:
    assert base_url(registry) == url


@pytest.mark.parametrize("variable", ["INSECURE_REGISTRY", "DMR_INSECURE_REGISTRY"])
def test_insecure_registry_setting(monkeypatch, variable: str) -> None:
    monkeypatch.setenv(variable, "true")
    assert base_url("registry.example.com") == "http://registry.example.com"
    monkeypatch.setenv(variable, "false")
    assert base_url("registry.example.com") == "https://registry.example.com"


def test_challenges_are_parsed() -> None:
    challenge = parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                                'scope="repository:ai/smollm2:pull"')  # fmt: skip
    assert challenge.scheme == "bearer"
    assert challenge.params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                                "scope": "repository:ai/smollm2:pull"}  # fmt: skip
    assert parse_challenge('Basic realm="dmr-test"').scheme == "basic"
    assert parse_challenge("Bearer realm=https://x/token, service=reg").params == {"realm": "https://x/token",
                                                                                     "service": "reg"}
    assert parse_challenge(None) is None and parse_challenge("") is None


def _docker_config(directory, auths: dict) -> None:
    (directory / "config.json").write_text(json.dumps({"auths": auths}))


def _auth(user: str, password: str) -> dict:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_credentials_come_from_the_docker_config(clean_credentials) -> None:
    _docker_config(clean_credentials, {"https://index.docker.io/v1/": _auth("hub", "pw1"),
                                       "ghcr.io": _auth("gh", "pw:with:colons"),
                                       "http://localhost:5000": {"username": "lo", "password": "pw3"}})  # fmt: skip
    assert find_credentials("docker.io") == Credentials("hub", "pw1")
    assert find_credentials("ghcr.io") == Credentials("gh", "pw:with:colons")
    assert find_credentials("localhost:5000") == Credentials("lo", "pw3")
    assert find_credentials("quay.io") is None


def test_explicit_token_wins_over_everything(clean_credentials, monkeypatch) -> None:
    _docker_config(clean_credentials, {"ghcr.io": _auth("gh", "pw")})
    monkeypatch.setenv("DOCKER_HUB_USER", "u")
    monkeypatch.setenv("DOCKER_HUB_PASSWORD", "p")
    assert find_credentials("ghcr.io", "tok") == Credentials(token="tok")
    assert find_credentials("docker.io", "tok") == Credentials(token="tok")


def test_docker_hub_environment_credentials_are_for_docker_hub_only(monkeypatch) -> None:
    monkeypatch.setenv("DOCKER_HUB_USER", "u")
    monkeypatch.setenv("DOCKER_HUB_PASSWORD", "p")
    assert find_credentials("docker.io") == Credentials("u", "p")
    assert find_credentials("ghcr.io") is None


def test_unreadable_docker_config_means_no_credentials(clean_credentials) -> None:
    (clean_credentials / "config.json").write_text("{not json")
    assert find_credentials("ghcr.io") is None
    _docker_config(clean_credentials, {"ghcr.io": {"auth": "%%%not-base64"}})
    assert find_credentials("ghcr.io") is None


def test_pull_rejects_a_digest_as_a_name() -> None:
    with pytest.raises(InvalidReference):
        pull_reference(f"sha256:{HEX}")
