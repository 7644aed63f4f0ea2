"""API keys, the CORS policy and per-key slots, without a server."""

import pytest

from dmr_core.auth import ApiKeys, accepted_key, key_id, presented_keys, read_key_file
from dmr_core.cors import CorsPolicy, is_preflight
from dmr_core.errors import TooManyConcurrentRequests
from dmr_core.keyslots import KeySlots
from dmr_core.settings import load_settings


def test_keys_from_the_setting_and_the_file(tmp_path):
    path = tmp_path / "keys"
    path.write_text("# comment\n\n  file-key  # trailing comment\nsecond\n")
    assert read_key_file(path) == ["file-key", "second"]
    keys = ApiKeys.from_settings(load_settings({}, api_keys=" a , b,", api_keys_file=str(path)))
    assert all(keys.accepts(k) for k in ("a", "b", "file-key", "second"))
    assert not any(keys.accepts(k) for k in ("", "c", "a ", "# comment", "A"))


def test_a_missing_key_file_stops_the_start(tmp_path):
    with pytest.raises(ValueError, match="api_keys_file"):
        ApiKeys.from_settings(load_settings({}, api_keys_file=str(tmp_path / "absent")))


def test_no_keys_configured_is_falsy():
    assert not ApiKeys.from_settings(load_settings({}))
    assert not ApiKeys([""])


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Authorization": "Bearer k1"}, ["k1"]), ({"Authorization": "bearer  k1 "}, ["k1"]),
    ({"x-api-key": "k2"}, ["k2"]), ({"Authorization": "Basic abc"}, []), ({"Authorization": "Bearer "}, []),
    ({"Authorization": "Bearer k1", "x-api-key": "k2"}, ["k1", "k2"]), ({}, []),
])  # fmt: skip
def test_presented_keys(headers, expected):
    assert presented_keys(headers) == expected


def test_accepted_key_tries_both_headers():
    keys = ApiKeys(["good"])
    assert accepted_key(keys, {"Authorization": "Bearer bad", "x-api-key": "good"}) == "good"
    assert accepted_key(keys, {"Authorization": "Bearer bad"}) is None


def test_key_id_does_not_contain_the_key():
    assert "secret" not in key_id("secret") and len(key_id("secret")) == 16


def test_api_keys_are_not_in_the_settings_repr():
    assert "s3cret" not in repr(load_settings({}, api_keys="s3cret"))


def test_cors_policy_is_exact_with_dmr_defaults():
    policy = CorsPolicy("https://ui.example, http://ui.example:8080/")
    assert policy.allows("https://ui.example") and policy.allows("http://ui.example:8080")
    assert policy.allows("http://localhost") and policy.allows("https://127.0.0.1")
    assert not policy.allows("http://ui.example") and not policy.allows("http://localhost:3000")
    assert CorsPolicy("*").allows("http://anything.example")
    assert load_settings({"DMR_ORIGINS": "https://ui.example"}).cors_origins == "https://ui.example"


def test_preflight_headers_add_what_was_asked():
    asked = {"Access-Control-Request-Headers": "X-Custom, authorization"}
    headers = CorsPolicy.preflight_headers("https://ui.example", asked)
    allowed = [h.strip() for h in headers["Access-Control-Allow-Headers"].split(",")]
    assert "X-Custom" in allowed and allowed.count("Authorization") == 1 and "authorization" not in allowed
    assert is_preflight("OPTIONS", {"Access-Control-Request-Method": "POST"}) and not is_preflight("OPTIONS", {})


def test_key_slots_bound_and_release(tmp_path):
    slots = KeySlots(tmp_path, 2)
    first, second = slots.take("k"), slots.take("k")
    with pytest.raises(TooManyConcurrentRequests):
        slots.take("k")
    other = slots.take("other")  # another key has slots of its own
    first.release()
    first.release()  # releasing twice is harmless
    third = slots.take("k")
    for slot in (second, third, other):
        slot.release()
