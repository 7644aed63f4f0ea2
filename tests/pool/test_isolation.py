"""Web workers never load an engine: only inference workers map the llama library."""

from pathlib import Path


def maps_llama(pid: int) -> bool:
    return "libllama" in Path(f"/proc/{pid}/maps").read_text()


def test_only_inference_workers_map_llama(dmr_server, openai_client):
    openai_client.chat.completions.create(model="ai/smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    web = dmr_server.web_worker_pids()
    assert len(web) == 2
    assert not any(maps_llama(pid) for pid in web + [dmr_server.process.pid])
    worker = dmr_server.pool_status()["workers"][0]["pid"]
    assert maps_llama(worker)  # proves the check can see the library where it is loaded


def test_worker_is_pinned_to_its_device(dmr_server):
    worker = dmr_server.pool_status()["workers"][0]
    environ = Path(f"/proc/{worker['pid']}/environ").read_bytes().split(b"\0")
    assert worker["device"] == "cpu"
    assert b"CUDA_VISIBLE_DEVICES=" in environ  # empty: no GPU is visible to a CPU worker
