"""Device parsing and CPU thread sharing: CPU workers never oversubscribe the cores."""

import pytest

from dmr_core.pool.devices import Device, parse_devices, share_cpu_threads


def test_parse_cpu_and_gpus():
    assert parse_devices("cpu") == [Device("cpu")]
    devices = parse_devices("cuda:0, cuda:1")
    assert [d.cuda_visible for d in devices] == ["0", "1"] and all(d.is_gpu for d in devices)
    with pytest.raises(ValueError):
        parse_devices("tpu:0")


def test_a_single_cpu_worker_keeps_the_engine_default():
    assert share_cpu_threads([Device("cpu")], threads=0, cores=8) == [Device("cpu")]


def test_several_cpu_workers_split_the_cores():
    shared = share_cpu_threads(parse_devices("cpu,cpu,cuda:0"), threads=0, cores=8)
    assert [d.threads for d in shared] == [4, 4, 0]
    assert shared[0].pinned_environ({})["DMR_THREADS"] == "4"
    assert "DMR_THREADS" not in shared[2].pinned_environ({})
    assert [d.threads for d in share_cpu_threads(parse_devices("cpu,cpu,cpu"), 0, 2)] == [1, 1, 1]


def test_explicit_threads_win():
    assert share_cpu_threads(parse_devices("cpu,cpu"), threads=2, cores=2) == parse_devices("cpu,cpu")


def test_cpu_worker_hides_every_gpu():
    assert Device("cpu").pinned_environ({"CUDA_VISIBLE_DEVICES": "0,1"})["CUDA_VISIBLE_DEVICES"] == ""
