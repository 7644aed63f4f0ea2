"""Image generation through dmr's server against the same pipeline called in-process.

The tiny random Stable Diffusion pipeline of the tests (``tests/support/tiny_diffusers.py``: CLIP
text encoder, UNet, VAE, all random and small) makes pictures in milliseconds, so what the server
adds around ``generate_images`` (HTTP, the web worker, the pool's socket, base64 twice, PNG already
in both) shows. For each size, rounds interleave:

(a) ``in-process``: ``DiffusersEngine.generate_images`` called directly, PNG bytes out;
(b) ``server``: ``POST /engines/diffusers/v1/images/generations`` through real gunicorn (same
    thread count in the inference worker), the PNGs decoded from the JSON.

The HTTP client is the standard library's ``http.client`` on a kept-alive connection: what is
measured is the server. ``requests`` spends about 1.5 ms of Python per call on this 2-core machine
(``--client requests`` shows it), and on the same cores as the server that is charged to (b) alone,
as ``wrk`` rather than a Python client measures the model list.

Reported: images/s of each (median over rounds) and their ratio (b)/(a) (target ≥ 0.95); the
median of each round's own ratio (its two halves ran side by side, so this one is the steadier
where the machine's speed drifts between rounds: shared VMs' does, by up to 1.5x within minutes);
then the time from request to first byte of the answer for a cold model (unloaded first: the load
is in it), next to the in-process load + first picture.

    .venv/bin/python bench/images.py [--sizes 64 256] [--rounds 5] [--requests 8] [--steps 2]
        [--threads 2] [--clients 1] [--client http.client|requests] [--cpu SECONDS] [--floor] [--quick]

``--clients 2``: two HTTP clients at once, so one request's HTTP and pool hops overlap the other's
picture (the throughput a busy server gives; the in-process side stays one caller).
``--floor``: a third side, interleaved with the other two: ``bench/floor_app.py``, the smallest
server of dmr's design (gunicorn's gevent worker, one hop to the same pool worker, nothing else),
which bounds what any server built this way reaches here.
``--cpu 10``: then, for 10 s of requests one at a time, the CPU each server process spends per
picture (``/proc``): where the server's share goes, steadier than any timing on a shared VM.
``--quick``: one round of two requests at 64×64 (a smoke run of about 30 seconds).
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dmr_core.engines.base import RunnerConfig  # noqa: E402
from dmr_core.generation import ImageRequest, Mode  # noqa: E402
from dmr_core.store.layout import ModelStore  # noqa: E402
from dmr_core.testing import free_port, short_tempdir, start_server, stop_server, wait_until  # noqa: E402
from tests.support.tiny_diffusers import write_tiny_diffusers  # noqa: E402

MODEL = "ai/tiny-sd"
URL = "/engines/diffusers/v1/images/generations"
PROMPT = "a red cat on a mat"


def load_engine(folder: Path, threads: int):
    from dmr_diffusers.engine import DiffusersEngine

    engine = DiffusersEngine(str(folder), Mode.IMAGE_GENERATION, RunnerConfig(threads=threads))
    engine.load()
    return engine


def in_process(engine, side: int, steps: int, count: int) -> float:
    """Images/s of ``count`` one-picture jobs called on the engine directly."""
    started = time.perf_counter()
    for seed in range(count):
        job = ImageRequest(engine.model_path, PROMPT, side, side, num_inference_steps=steps, seed=seed)
        assert engine.generate_images(job, lambda: False).images
    return count / (time.perf_counter() - started)


def body(side: int, steps: int, seed: int) -> dict:
    return {"model": MODEL, "prompt": PROMPT, "size": f"{side}x{side}", "num_inference_steps": steps, "seed": seed}


class StdlibClient:
    """One kept-alive ``http.client`` connection (see the module for why not ``requests``)."""

    def __init__(self, base_url: str) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        self._connection = http.client.HTTPConnection(host, int(port), timeout=600)

    def post(self, payload: dict) -> dict:
        try:
            status, data = self._send(payload)
        except (http.client.RemoteDisconnected, ConnectionError):
            # The server closes a connection idle for its keepalive (5 s: a round of big pictures
            # in-process), as requests' pool would find: connect again, once.
            self._connection.close()
            status, data = self._send(payload)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {data[:300]!r}")
        return json.loads(data)

    def _send(self, payload: dict) -> tuple[int, bytes]:
        self._connection.request("POST", URL, json.dumps(payload), {"Content-Type": "application/json"})
        reply = self._connection.getresponse()
        return reply.status, reply.read()


class RequestsClient:
    """A ``requests`` session, as most Python callers would use."""

    def __init__(self, base_url: str) -> None:
        self._session = requests.Session()
        self._url = base_url + URL

    def post(self, payload: dict) -> dict:
        reply = self._session.post(self._url, json=payload, timeout=600)
        reply.raise_for_status()
        return reply.json()


CLIENTS = {"http.client": StdlibClient, "requests": RequestsClient}


def through_server(clients: list, side: int, steps: int, count: int) -> float:
    """Images/s of ``count`` one-picture requests, each answer's PNG decoded, sent by as many
    clients at once as there are ``clients`` (each waits for its answer before the next)."""

    def send(client, seeds: range) -> None:
        for seed in seeds:
            assert base64.b64decode(client.post(body(side, steps, seed))["data"][0]["b64_json"])

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
        shares = [range(i, count, len(clients)) for i in range(len(clients))]
        for done in [pool.submit(send, client, seeds) for client, seeds in zip(clients, shares)]:
            done.result()
    return count / (time.perf_counter() - started)


def compare(engine, servers: dict[str, str], sizes: list[int], rounds: int, count: int, steps: int, clients: int,
            client_kind: str = "http.client") -> None:  # fmt: skip
    """Each server of ``servers`` (label: base URL) against the engine in-process, rounds interleaved."""
    sessions = {label: [CLIENTS[client_kind](url) for _ in range(clients)] for label, url in servers.items()}
    for side in sizes:  # warm every side (a server's runner loads on its first request)
        in_process(engine, side, steps, 1)
        for label in servers:
            through_server(sessions[label], side, steps, len(sessions[label]))
    for side in sizes:
        runs = [("in-process", lambda: in_process(engine, side, steps, count))]
        runs += [(label, lambda s=sessions[label]: through_server(s, side, steps, count)) for label in servers]
        rates: dict[str, list[float]] = {label: [] for label, _ in runs}
        for turn in range(rounds):  # interleaved, the order rotating, so drift hits every side alike
            for label, run in runs[turn % len(runs):] + runs[: turn % len(runs)]:
                rates[label].append(run())
        local = rates["in-process"]
        for label in servers:
            a, b = statistics.median(local), statistics.median(rates[label])
            paired = statistics.median(there / here for here, there in zip(local, rates[label]))
            print(f"{side}x{side}, {steps} steps: in-process {a:7.2f} img/s   {label} {b:7.2f} img/s   "
                  f"ratio {b / a:.3f}   round by round {paired:.3f}   "
                  f"(rounds {rounds} x {count}, {clients} {client_kind} client(s))", flush=True)  # fmt: skip


def cpu_per_picture(server, client_kind: str, side: int, steps: int, seconds: float) -> None:
    """CPU time per picture of each server process and of this client, from ``/proc``, while one
    client sends ``side``-pixel requests one at a time for ``seconds``: what each hop costs the
    machine (the inference worker's share includes the picture itself)."""
    supervisor, *workers = server.pool_pids()
    processes = {server.process.pid: "gunicorn master", supervisor: "pool supervisor"}
    processes.update({pid: "inference worker" for pid in workers})
    processes.update({pid: "web worker" for pid in server.web_worker_pids()})
    client = CLIENTS[client_kind](server.url)
    client.post(body(side, steps, 0))
    before, mine, count = {pid: _cpu_seconds(pid) for pid in processes}, time.process_time(), 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        client.post(body(side, steps, count))
        count += 1
    print(f"CPU per {side}x{side} picture over {count} requests ({count / (time.perf_counter() - started):.1f}/s):")
    for pid, name in processes.items():
        user, system = (now - then for now, then in zip(_cpu_seconds(pid), before[pid]))
        print(f"  {name:17s} user {user / count * 1000:7.2f} ms   system {system / count * 1000:5.2f} ms   (pid {pid})")
    print(f"  {'this client':17s} {(time.process_time() - mine) / count * 1000:7.2f} ms", flush=True)


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process ``pid`` so far (Linux ``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


@contextlib.contextmanager
def floor_server(server, store: Path, wanted: bool) -> Iterator[str | None]:
    """The URL of ``bench/floor_app.py`` served beside ``server`` (its pool), while in the block."""
    if not wanted:
        yield None
        return
    port = free_port()
    env = {**os.environ, "DMR_STORE": str(store), "DMR_POOL_DIR": str(server.pool_dir), "DMR_FLOOR_MODEL": MODEL}
    command = [str(Path(sys.executable).parent / "gunicorn"), "-k", "gevent", "-w", "1", "--keep-alive", "5",
               "-b", f"127.0.0.1:{port}", "--chdir", str(Path(__file__).parent), "floor_app:app"]  # fmt: skip
    log = server.pool_dir / "floor.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=output)
    try:
        wait_until(lambda: _listening(port) or process.poll() is not None, timeout=60)
        if process.poll() is not None or not _listening(port):
            raise RuntimeError(f"the floor server did not start:\n{log.read_text()[-2000:]}")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def cold_first_byte(server, folder: Path, threads: int, side: int, steps: int) -> None:
    requests.post(server.url + "/engines/unload", json={"all": True}, timeout=60).raise_for_status()
    started = time.perf_counter()
    with requests.post(server.url + URL, json=body(side, steps, 1), timeout=600, stream=True) as reply:
        reply.raise_for_status()
        reply.raw.read(1)
        first_byte = time.perf_counter() - started
    started = time.perf_counter()
    engine = load_engine(folder, threads)
    in_process(engine, side, steps, 1)
    local = time.perf_counter() - started
    engine.close()
    print(f"cold model, {side}x{side}: server request to first byte {first_byte * 1000:.0f} ms   "
          f"in-process load + first picture {local * 1000:.0f} ms", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clients", type=int, default=1, help="HTTP clients sending requests at once")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="http.client", help="the HTTP client library")
    parser.add_argument("--quick", action="store_true", help="one round of two requests at 64x64 (smoke run)")
    parser.add_argument("--floor", action="store_true",
                        help="also the smallest server of this design (bench/floor_app.py), interleaved")
    parser.add_argument("--cpu", type=float, default=0, metavar="SECONDS",
                        help="then CPU per picture of each server process, at the first size, for SECONDS")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.rounds, args.requests = [64], 1, 2
    work = Path(tempfile.mkdtemp(prefix="dmr-bench-images-"))
    store = short_tempdir("dmr-bench-store-")
    try:
        folder = write_tiny_diffusers(work / "tiny-sd")
        ModelStore(store).import_diffusers(folder, MODEL)
        measure(args, folder, store)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(store, ignore_errors=True)


def measure(args: argparse.Namespace, folder: Path, store: Path) -> None:
    server = start_server(store, DMR_THREADS=str(args.threads))
    try:
        engine = load_engine(folder, args.threads)
        with floor_server(server, store, args.floor) as floor:
            servers = {"server": server.url, **({"floor": floor} if floor else {})}
            compare(engine, servers, args.sizes, args.rounds, args.requests, args.steps, args.clients, args.client)
        engine.close()
        if args.cpu:
            cpu_per_picture(server, args.client, args.sizes[0], args.steps, args.cpu)
        cold_first_byte(server, folder, args.threads, args.sizes[0], args.steps)
    finally:
        stop_server(server)
        shutil.rmtree(server.pool_dir, ignore_errors=True)  # its log and metrics: nobody reads them after


if __name__ == "__main__":
    main()
