"""Reference normalisation follows DMR; anything that could escape the store is refused."""

from __future__ import annotations

import time

import pytest

from dmr_core.errors import InvalidReference
from dmr_core.store.references import Reference, model_id_query, parse_reference

HEX = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("text", "name", "familiar"),
    [
        ("ai/x", "docker.io/ai/x:latest", "ai/x:latest"),
        ("x", "docker.io/ai/x:latest", "ai/x:latest"),
        ("x:tag", "docker.io/ai/x:tag", "ai/x:tag"),
        ("docker.io/ai/x:latest", "docker.io/ai/x:latest", "ai/x:latest"),
        ("myorg/m", "docker.io/myorg/m:latest", "myorg/m:latest"),
        ("localhost:5000/team/m:v2", "localhost:5000/team/m:v2", "localhost:5000/team/m:v2"),
        ("localhost/m", "localhost/m:latest", "localhost/m:latest"),
        ("hf.co/org/Repo:Q4_K_M", "huggingface.co/org/repo:Q4_K_M", "huggingface.co/org/repo:Q4_K_M"),
        ("  AI/SmolLM2:360M-Q4_K_M\n", "docker.io/ai/smollm2:360M-Q4_K_M", "ai/smollm2:360M-Q4_K_M"),
        ("registry.example.com:443/a/b/c", "registry.example.com:443/a/b/c:latest",
         "registry.example.com:443/a/b/c:latest"),
        ("ai/my_model.v2-x", "docker.io/ai/my_model.v2-x:latest", "ai/my_model.v2-x:latest"),
    ],
)
def test_names_are_normalised_like_dmr(text: str, name: str, familiar: str) -> None:
    reference = parse_reference(text)
    assert reference.name == name
    assert str(reference) == name
    assert reference.familiar == familiar


def test_reference_fields() -> None:
    assert parse_reference("localhost:5000/team/m:v2") == Reference("localhost:5000", "team/m", "v2")
    assert parse_reference("smollm2") == Reference("docker.io", "ai/smollm2", "latest", None)


def test_tag_case_is_kept_but_name_is_lowered() -> None:
    reference = parse_reference("MyOrg/Model:Q4_K_M")
    assert (reference.repository, reference.tag) == ("myorg/model", "Q4_K_M")


def test_digest_reference() -> None:
    reference = parse_reference(f"ai/x@sha256:{HEX.upper()}")
    assert reference.digest == f"sha256:{HEX}"
    assert reference.name == f"docker.io/ai/x@sha256:{HEX}"


def test_default_registry_can_be_overridden() -> None:
    assert parse_reference("m", default_registry="registry.local:5000").name == "registry.local:5000/ai/m:latest"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("../../etc/passwd", "'..'"),
        ("ai/../../../x", "'..'"),
        ("ai/./x", "'.'"),
        ("..", "'..'"),
        ("/etc/passwd", "absolute"),
        ("ai//x", "empty path component"),
        ("ai\\x", "backslash"),
        ("..\\..\\x", "backslash"),
        ("ai/x\x00y", "control"),
        ("ai/x\x1b", "control"),
        ("ai/my model", "whitespace"),
        ("ai/x:", "tag"),
        ("ai/x:-bad", "tag"),
        ("ai/x:" + "t" * 129, "tag"),
        ("ai/x@sha256:abc", "digest"),
        ("ai/x@md5:" + HEX, "digest"),
        ("ai/-x", "path component"),
        ("ai/x..y", "path component"),
        ("ai/x$", "path component"),
        ("bad_host.com/x", "registry"),
        ("ai/" + "a" * 253, "longer than 255"),
        ("a" * 10_000, "longer than 255"),
    ],
)
def test_invalid_names_are_refused_with_the_reason(text: str, problem: str) -> None:
    with pytest.raises(InvalidReference) as caught:
        parse_reference(text)
    assert problem in caught.value.message
    assert caught.value.status == 400


def test_adversarial_component_does_not_backtrack() -> None:
    # The OCI regex written with [-]* backtracks exponentially on this in Python's engine.
    started = time.perf_counter()
    with pytest.raises(InvalidReference):
        parse_reference("ai/" + "a" * 40 + "!")
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("text", "query"),
    [
        (f"sha256:{HEX}", f"sha256:{HEX}"),
        (f"SHA256:{HEX.upper()}", f"sha256:{HEX}"),
        (HEX, f"sha256:{HEX}"),
        (HEX[:12], HEX[:12]),
        (f" {HEX[:12]} ", HEX[:12]),
        (HEX[:20], HEX[:20]),
        (HEX[:11], None),
        ("smollm2", None),
        (f"sha256:{HEX[:12]}", None),
        ("ai/" + HEX[:12], None),
        ("zzzzzzzzzzzz", None),
    ],
)
def test_model_id_query(text: str, query: str | None) -> None:
    assert model_id_query(text) == query
