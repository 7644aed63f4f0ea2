"""ggml's extra CPU buffers (AMX) are used only where a throwaway child proved them safe.

The fallback is tested with the probe's answer forced (its child kills itself with SIGSEGV, as a
faulting AMX kernel does), so it is covered on every CPU, AMX or not.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from dmr_core.testing import openai_client_for, pid_alive, start_server, stop_server, wait_until
from dmr_llamacpp import extra_buffers, probe_cache
from dmr_llamacpp.extra_buffers import AMX_FLAGS, FORCE, SETTING, decide, run_probe

NO_AMX = frozenset({"fpu", "sse2", "avx2", "avx512f"})


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv(SETTING, raising=False)
    monkeypatch.delenv(FORCE, raising=False)
    return monkeypatch


@pytest.mark.parametrize("setting, expected", [("on", True), ("off", False), ("OFF", False)])
def test_the_operator_forces_either_way_without_a_probe(clean_env, setting, expected):
    clean_env.setenv(FORCE, "crash")  # a probe would say "off": it must not run
    verdict = decide(setting, flags=AMX_FLAGS)
    assert verdict.use_extra_buffers is expected and SETTING in verdict.reason


def test_a_bad_setting_is_refused(clean_env):
    with pytest.raises(ValueError, match="on, off"):
        decide("sometimes", flags=AMX_FLAGS)


def test_a_cpu_without_amx_keeps_the_extra_buffers_unprobed(clean_env):
    verdict = decide("auto", flags=NO_AMX)
    assert verdict.use_extra_buffers and "no AMX" in verdict.reason


def test_a_probe_that_dies_turns_the_extra_buffers_off(clean_env):
    clean_env.setenv(FORCE, "crash")
    verdict = decide("auto", flags=NO_AMX)  # a forced answer is probed on any CPU
    assert not verdict.use_extra_buffers
    assert "SIGSEGV" in verdict.reason


def test_the_probe_verdict_is_safe_on_this_cpu(clean_env, smollm2_gguf):
    """Whatever this CPU is, the path the probe picks runs the real model in a fresh process."""
    verdict = run_probe() if AMX_FLAGS <= extra_buffers.cpu_flags() else decide("auto")
    code = f"""
import llama_cpp
from dmr_llamacpp.extra_buffers import model_defaults
with model_defaults({verdict.use_extra_buffers}):
    llama = llama_cpp.Llama({str(smollm2_gguf)!r}, n_ctx=256, n_threads=1, verbose=False)
assert llama.model_params.use_extra_bufts is {verdict.use_extra_buffers}
print(llama("Once upon a time", max_tokens=4, temperature=0)["choices"][0]["text"])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (verdict, done.returncode, done.stderr[-2000:])
    assert done.stdout.strip()


def test_model_defaults_applies_only_inside(smollm2_gguf):
    import llama_cpp
    import llama_cpp.llama_cpp as native

    original = native.llama_model_default_params
    with extra_buffers.model_defaults(False):
        assert native.llama_model_default_params().use_extra_bufts is False
        llama = llama_cpp.Llama(str(smollm2_gguf), n_ctx=256, n_threads=1, vocab_only=True, verbose=False)
    assert native.llama_model_default_params is original
    assert native.llama_model_default_params().use_extra_bufts is True
    assert llama.model_params.use_extra_bufts is False
    llama.close()


@pytest.mark.parametrize("env, words", [
    ({FORCE: "crash", SETTING: "auto"}, "AMX probe died with SIGSEGV; extra buffers off"),
    ({SETTING: "off"}, f"{SETTING}=off"),
])  # fmt: skip
def test_the_server_serves_on_the_fallback_path_and_says_so(model_store, env, words):
    server = start_server(model_store, **env)
    try:
        reply = openai_client_for(server).chat.completions.create(
            model="ai/smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=8, temperature=0)
        assert reply.choices[0].message.content
        assert [m["settings"]["use_extra_bufts"] for m in server.worker_stats()["models"]] == [False]
        assert f"llama.cpp CPU path: {words}" in server.log()
    finally:
        stop_server(server)


def test_the_probes_verdict_is_kept_for_the_next_worker(clean_env, tmp_path):
    clean_env.setenv(FORCE, "crash")
    first = decide("auto", flags=AMX_FLAGS, cache_dir=tmp_path)
    second = decide("auto", flags=AMX_FLAGS, cache_dir=tmp_path)  # no child this time
    assert "SIGSEGV" in first.reason and "kept" not in first.reason
    assert second.use_extra_buffers is False and "SIGSEGV" in second.reason
    assert "kept from an earlier probe" in second.reason


def test_a_verdict_kept_for_another_cpu_or_answer_is_not_used(tmp_path):
    path = tmp_path / probe_cache.FILE_NAME
    probe_cache.save(path, probe_cache.probe_key("crash"), True, "AMX probe passed")
    assert probe_cache.load(path, probe_cache.probe_key("crash")) == (True, "AMX probe passed")
    assert probe_cache.load(path, probe_cache.probe_key("")) is None  # not forced: another key
    other_cpu = tmp_path / "cpuinfo"
    other_cpu.write_text("processor\t: 0\nmodel name\t: Another Xeon\nflags\t\t: fpu amx_tile amx_int8\n")
    assert probe_cache.probe_key("crash", other_cpu) != probe_cache.probe_key("crash")
    path.write_text("{not json")
    assert probe_cache.load(path, probe_cache.probe_key("crash")) is None


def test_a_respawned_worker_takes_the_kept_verdict_instead_of_probing(model_store):
    server = start_server(model_store, **{FORCE: "crash", SETTING: "auto"})
    try:
        chat = dict(model="ai/smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=1)
        openai_client_for(server).chat.completions.create(**chat)
        worker = server.pool_status()["workers"][0]["pid"]
        os.kill(worker, signal.SIGKILL)
        assert wait_until(lambda: not pid_alive(worker), timeout=15)
        assert openai_client_for(server).chat.completions.create(**chat).choices
        paths = [line for line in server.log().splitlines() if "llama.cpp CPU path:" in line]
        assert len(paths) == 2, paths
        assert "kept from an earlier probe" not in paths[0] and "kept from an earlier probe" in paths[1]
    finally:
        stop_server(server)
