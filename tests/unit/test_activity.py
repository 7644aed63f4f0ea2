"""The worker's activity record: what the supervisor names when a worker dies in native code."""

import os

from dmr_core.pool.activity import ActivityRecord, activity_path, crash_report, describe

JOB = {"op": "generate", "engine": "llama.cpp", "model": "ai/smollm2",
       "request": {"model_path": "/store/blobs/sha256/ab"}}  # fmt: skip


def test_the_record_sits_beside_the_worker_socket(tmp_path):
    assert activity_path(tmp_path / "worker-3.sock") == tmp_path / "worker-3.activity"


def test_a_job_in_flight_is_named_with_its_model(tmp_path):
    record = ActivityRecord(tmp_path / "w.activity")
    with record.doing(describe(JOB)):
        report = crash_report(record.path, os.getpid())
    assert report == "while running generate on ai/smollm2 (/store/blobs/sha256/ab)"


def test_an_idle_worker_names_its_last_operation(tmp_path):
    record = ActivityRecord(tmp_path / "w.activity")
    with record.doing(describe({"op": "load", "model_path": "/m.gguf"})):
        pass
    assert crash_report(record.path, os.getpid()) == "while idle; its last operation was load on ? (/m.gguf)"


def test_concurrent_jobs_are_all_named(tmp_path):
    record = ActivityRecord(tmp_path / "w.activity")
    with record.doing(describe(JOB)), record.doing(describe({**JOB, "op": "embed", "model": "ai/embed"})):
        report = crash_report(record.path, os.getpid())
    assert "generate on ai/smollm2" in report and "embed on ai/embed" in report


def test_an_earlier_workers_record_is_not_blamed(tmp_path):
    record = ActivityRecord(tmp_path / "w.activity")
    with record.doing(describe(JOB)):
        assert crash_report(record.path, os.getpid() + 1) == "before it ran any operation"
    assert crash_report(tmp_path / "missing.activity", 1) == "before it ran any operation"
