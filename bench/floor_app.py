"""The smallest server dmr's design allows, for ``bench/images.py --floor``: what HTTP through
gunicorn's gevent worker and one hop to the pool cost a picture, and nothing else.

This bare WSGI function sends each picture request's job straight to the inference worker that
holds the model (one Unix-socket connection, the pool's own frames, the same job dmr sends) and
answers the worker's base64 PNG in OpenAI's shape. None of dmr's other work per request happens:
no Flask, no validation, no lease from the supervisor, no watch on the client, no access log, no
metrics. Its ratio to the engine called in-process bounds what any server built this way can
reach on the machine it runs on.

    DMR_STORE=... DMR_POOL_DIR=... DMR_FLOOR_MODEL=ai/tiny-sd \\
        gunicorn -k gevent -w 1 -b 127.0.0.1:PORT --chdir bench floor_app:app

``DMR_STORE`` and ``DMR_POOL_DIR`` are those of a running dmr server, whose pool serves the model.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dmr_core.app import create_app  # noqa: E402
from dmr_core.generation import ImageRequest, Mode, to_wire  # noqa: E402
from dmr_core.pool.protocol import FrameReader, send_frame  # noqa: E402
from dmr_core.settings import load_settings  # noqa: E402


def _placement(name: str) -> tuple[str, str, str]:
    """(worker socket, engine, model path) of ``name``'s runner, found once through dmr's own core:
    the pool loads the model if it has to, and the lease taken to learn where is let go at once."""
    runtime = create_app().extensions["dmr"]
    model = runtime.find_model(name)
    engine = runtime.engine_for(model, None)
    spec = runtime.placement(name, model, engine, Mode.IMAGE_GENERATION.value)
    lease, placed = runtime.pool._acquire(spec)  # the one place the bench reaches inside the pool client
    lease.close()
    return placed["socket"], engine, spec["model_path"]


MODEL = os.environ["DMR_FLOOR_MODEL"]
WORKER_SOCKET, ENGINE, MODEL_PATH = _placement(MODEL)
os.nice(load_settings().web_nice)  # as dmr's web workers run (serving.post_fork)


def app(environ, start_response):
    body = json.loads(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
    width, height = map(int, body["size"].split("x"))
    job = ImageRequest(MODEL_PATH, body["prompt"], width, height, num_inference_steps=body.get("num_inference_steps"),
                       seed=body.get("seed"), context_size=0)  # fmt: skip
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(WORKER_SOCKET)
        send_frame(sock, {"op": "images", "engine": ENGINE, "model": MODEL, "request": to_wire(job)})
        frame = FrameReader(sock).read()
    if frame is None or frame.get("k") != "r":
        start_response("500 Internal Server Error", [("Content-Type", "application/json")])
        return [json.dumps({"error": frame}).encode()]
    answer = {"created": int(time.time()), "data": [{"b64_json": image} for image in frame["result"]["images"]]}
    data = json.dumps(answer).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
