"""Scale-out on one machine: three real dmr hosts (own stores, own ports) behind a real nginx running
``deploy/nginx/dmr-cluster.conf`` (model affinity with njs, passive health checks), all pulling from
one real registry on demand (as their Docker Hub mirror).

What it shows, in order: a model's requests land on one host and another model's on another (read
from each host's ``/engines/ps``); the registry serves each blob once per host that holds the model,
even to a burst of requests for a cold model; after ``kill -9`` of every process of one host, its
model's requests move to a survivor (which pulls it) within the health-check interval and all
succeed, while the other hosts keep their models and serve throughout. Figures are printed
(``pytest -s``) and quoted in docs/scaling.md.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests

from dmr_core.store.layout import ModelStore
from dmr_core.store.references import parse_reference
from dmr_core.testing import DmrServer, free_port, short_tempdir, wait_until
from tests.scaleout.cluster import SITE_FILE, ClusterNginx, Host, host_env, nginx_in_front_of

pytestmark = pytest.mark.slow

HOSTS = 3
#: The shipped passive health check: how long nginx keeps a failed host out.
FAIL_TIMEOUT_S = int(re.search(r"fail_timeout=(\d+)s", SITE_FILE.read_text()).group(1))
CANDIDATES = [f"ai/scale-{i}" for i in range(64)]
BURST = 3
LIMIT_S = 120  # any one request; every wait below is bounded
PACE_S = 0.05  # between two requests of one client: steady traffic, not a load test


@dataclass
class Cluster:
    nginx: ClusterNginx
    hosts: list[Host]

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.nginx.url + path, verify=str(self.nginx.certificate), timeout=LIMIT_S, **kwargs)

    def chat(self, model: str, headers: dict | None = None) -> tuple[requests.Response, float]:
        body = {"model": model, "messages": [{"role": "user", "content": "the cat"}], "max_tokens": 8}
        started = time.monotonic()
        # verify= on each call: requests lets REQUESTS_CA_BUNDLE override a Session's own verify.
        response = requests.post(f"{self.nginx.url}/engines/v1/chat/completions", json=body, headers=headers or {},
                                 verify=str(self.nginx.certificate), timeout=LIMIT_S)  # fmt: skip
        return response, time.monotonic() - started

    def logged(self, count: int) -> list[dict[str, str]]:
        """The access log once it has ``count`` lines (nginx writes a line after the response)."""
        assert wait_until(lambda: len(self.nginx.access_lines()) >= count, timeout=10), "access log lines missing"
        return self.nginx.access_lines()

    def host_at(self, address: str) -> Host:
        return next(host for host in self.hosts if host.address == address)


@pytest.fixture
def cluster(registry, stopped_at_end, tmp_path):
    ports = [free_port() for _ in range(HOSTS)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    hosts = []
    for index, port in enumerate(ports):
        env = host_env(registry.url, [url for url in urls if url != urls[index]], pull_on_demand=True)
        server = DmrServer(store=tmp_path / f"host-{index}", pool_dir=short_tempdir("dmr-pool-"), port=port,
                           extra_env=env)  # fmt: skip
        stopped_at_end.append(server)
        hosts.append(Host(f"host-{index}", server.start()))
    with nginx_in_front_of([host.address for host in hosts]) as nginx:
        yield Cluster(nginx, hosts)


def _loaded(host: Host) -> set[str]:
    rows = requests.get(f"{host.server.url}/engines/ps", timeout=30).json()
    return {parse_reference(row["model_name"]).name for row in rows}


def _stored(host: Host) -> set[str]:
    return {tag for model in ModelStore(host.server.store).list_models() for tag in model.tags}


def _full(name: str) -> str:
    return parse_reference(name).name


def _placements(cluster: Cluster) -> dict[str, str]:
    """Where nginx sends each candidate name: probed with a cheap GET carrying ``X-DMR-Model``."""
    for name in CANDIDATES:
        assert cluster.get("/engines/ps", headers={"X-DMR-Model": name}).ok
    lines = cluster.logged(len(CANDIDATES))[-len(CANDIDATES):]
    return {name: line["upstream"] for name, line in zip(CANDIDATES, lines)}


def _two_models_on_two_hosts(cluster: Cluster, tiny_models, registry) -> tuple[str, str]:
    placements = _placements(cluster)
    model_a = CANDIDATES[0]
    model_b = next(name for name in CANDIDATES if placements[name] != placements[model_a])
    tiny_models[0].publish(registry, model_a)
    tiny_models[1].publish(registry, model_b)
    return model_a, model_b


def _blob_gets(registry, tiny) -> list[int]:
    return [len([s for s, _ in registry.blob_transfers(blob) if s == 200]) for blob in tiny.blobs()]


def test_affinity_one_pull_per_host_and_failover_after_kill_9(cluster: Cluster, tiny_models, registry) -> None:
    model_a, model_b = _two_models_on_two_hosts(cluster, tiny_models, registry)
    before = len(cluster.nginx.access_lines())

    # A burst for each cold model: each host pulls its model once, the burst waits on that pull.
    with ThreadPoolExecutor(max_workers=2 * BURST) as pool:
        cold = list(pool.map(cluster.chat, [model_a] * BURST + [model_b] * BURST))
    assert [response.status_code for response, _ in cold] == [200] * (2 * BURST), [r.text for r, _ in cold]
    warm = [cluster.chat(model_a)[1] for _ in range(5)]
    # Every spelling of a model is one key: "scale-0" is ai/scale-0:latest on Docker Hub.
    short = model_a.removeprefix("ai/")
    for spelling in (f"docker.io/{model_a}:latest", f"{model_a}:latest", short, short.upper()):
        assert cluster.chat(spelling)[0].status_code == 200, spelling
    lines = cluster.logged(before + 2 * BURST + 9)[before:]
    hosts_of = [{line["upstream"] for line in lines if line["model"] == _full(model)} for model in (model_a, model_b)]
    assert [len(addresses) for addresses in hosts_of] == [1, 1], f"each model on one host: {hosts_of}"
    host_a, host_b = (cluster.host_at(addresses.pop()) for addresses in hosts_of)
    assert host_b is not host_a
    idle = next(host for host in cluster.hosts if host not in (host_a, host_b))
    assert (_loaded(host_a), _loaded(host_b), _loaded(idle)) == ({_full(model_a)}, {_full(model_b)}, set())
    assert _blob_gets(registry, tiny_models[0]) == [1] * len(tiny_models[0].blobs())
    assert _blob_gets(registry, tiny_models[1]) == [1] * len(tiny_models[1].blobs())
    print(f"\ncold burst of {BURST} (pull + load + answer): {max(t for _, t in cold[:BURST]):.2f}s; "
          f"warm request: median {sorted(warm)[len(warm) // 2] * 1000:.0f} ms")

    _kill_and_fail_over(cluster, host_a, host_b, idle, model_a, model_b, registry, tiny_models)


def _kill_and_fail_over(cluster, host_a, host_b, idle, model_a, model_b, registry, tiny_models) -> None:
    b_results, stop = [], threading.Event()

    def keep_asking_for_b() -> None:  # the other host's traffic goes on through the failure
        while not stop.wait(PACE_S):
            b_results.append(cluster.chat(model_b)[0].status_code)

    background = threading.Thread(target=keep_asking_for_b)
    background.start()
    try:
        before = len(cluster.nginx.access_lines())
        host_a.kill_everything()
        killed_at = time.monotonic()
        a_results = []
        while time.monotonic() - killed_at < FAIL_TIMEOUT_S + 5:
            response, took = cluster.chat(model_a)
            a_results.append((time.monotonic() - killed_at, response.status_code, took))
            time.sleep(PACE_S)
    finally:
        stop.set()
        background.join(LIMIT_S)
    assert [status for _, status, _ in a_results] == [200] * len(a_results), "a request for A was lost"
    assert b_results and set(b_results) == {200}, "requests for B failed while A's host died"
    first_ok = a_results[0][0]
    assert first_ok < FAIL_TIMEOUT_S, f"A came back after {first_ok:.1f}s, beyond the {FAIL_TIMEOUT_S}s interval"

    a_lines = [line for line in cluster.logged(before + len(a_results) + len(b_results))[before:]
               if line["model"] == _full(model_a)]  # fmt: skip
    survivors = {line["upstream"].split(", ")[-1] for line in a_lines}
    assert len(survivors) == 1 and host_a.address not in survivors, survivors
    survivor = cluster.host_at(survivors.pop())
    tries_at_dead_host = sum(1 for line in a_lines if line["upstream"].startswith(host_a.address))
    assert 1 <= tries_at_dead_host <= 2, "the health check keeps the dead host out for fail_timeout"
    b_hosts = {line["upstream"] for line in cluster.nginx.access_lines()[before:] if line["model"] == _full(model_b)}
    assert b_hosts == {host_b.address}, "B's requests never moved"

    assert _full(model_a) in _loaded(survivor) and _full(model_b) in _loaded(host_b)
    holders_of_a = [host for host in cluster.hosts if _full(model_a) in _stored(host)]
    assert len(holders_of_a) == 2, "the dead host's store and the survivor's"
    assert _blob_gets(registry, tiny_models[0]) == [2] * len(tiny_models[0].blobs()), "A: once per host holding it"
    assert _blob_gets(registry, tiny_models[1]) == [1] * len(tiny_models[1].blobs()), "B was not pulled again"
    print(f"kill -9 of {host_a.name}: A answered again after {first_ok:.2f}s (first request {a_results[0][2]:.2f}s, "
          f"retried by nginx onto {survivor.name}, which pulled A); {len(a_results)} A requests in "
          f"{FAIL_TIMEOUT_S + 5}s, 0 failed, {tries_at_dead_host} tried the dead host first; "
          f"{len(b_results)} B requests meanwhile, 0 failed; loaded now: "
          f"{', '.join(f'{host.name} {sorted(_loaded(host))}' for host in cluster.hosts if not host.killed)}")
