"""``/models/create`` and ``/models/{name}/push`` through a real server and a real OCI registry."""

import html
import json

import requests

from dmr_core.distribution.push import push_model
from dmr_core.store.layout import ModelStore


def progress_lines(response):
    assert response.status_code == 200, response.text
    return [line for line in response.text.split("\n") if line]


def test_push_then_pull_by_name_and_chat(native_server, registry):
    name = f"{registry.host}/ai/smollm2:latest"
    tag = requests.post(native_server.url + "/models/ai/smollm2/tag", params={"repo": f"{registry.host}/ai/smollm2", "tag": "latest"})
    assert tag.status_code == 201
    pushed = requests.post(native_server.url + f"/models/{name}/push", headers={"Accept": "application/json"})
    events = [json.loads(line) for line in progress_lines(pushed)]
    assert events[-1]["type"] == "success" and events[-1]["mode"] == "push"
    assert all(e["mode"] == "push" for e in events)
    model_id = requests.get(native_server.url + "/models/ai/smollm2").json()["id"]
    assert requests.delete(native_server.url + f"/models/{model_id}", params={"force": "true"}).status_code == 200

    pulled = requests.post(native_server.url + "/models/create", json={"from": name}, headers={"Accept": "application/json"})
    assert pulled.headers["Content-Type"].startswith("application/json")
    events = [json.loads(line) for line in progress_lines(pulled)]
    assert events[-1] == {"type": "success", "message": "Model pulled successfully", "total": 0,
                          "layer": {"size": 0, "current": 0}, "mode": "pull"}  # fmt: skip
    progress = [e for e in events if e["type"] == "progress"]
    assert progress and progress[-1]["layer"]["current"] == progress[-1]["layer"]["size"]
    assert progress[0]["message"].startswith("Downloaded: ") and progress[0]["message"].endswith(" MB")
    assert requests.get(native_server.url + f"/models/{name}").json()["id"] == model_id

    reply = requests.post(native_server.url + "/engines/v1/chat/completions",
                          json={"model": name, "max_tokens": 3, "messages": [{"role": "user", "content": "Hi"}]})  # fmt: skip
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"]

    again = requests.post(native_server.url + "/models/create", json={"from": name})
    assert again.headers["Content-Type"].startswith("text/plain")
    lines = progress_lines(again)
    assert all('"' not in line for line in lines)  # HTML-escaped, as DMR's text mode
    assert "Using cached model" in json.loads(html.unescape(lines[-1]))["message"]


def test_remote_inspect_reads_the_registry(native_server, registry, smollm2_gguf):
    store = ModelStore(native_server.store)
    name = f"{registry.host}/team/small:v2"
    store.add_tag("ai/smollm2", name)
    list(push_model(store, name))
    remote = requests.get(native_server.url + f"/models/{name}", params={"remote": "true"}).json()
    assert remote["id"] == store.resolve(name).id
    assert remote["tags"] == [] and remote["config"]["format"] == "gguf"


def test_pull_errors_have_dmr_statuses(native_server, registry):
    missing = requests.post(native_server.url + "/models/create", json={"from": f"{registry.host}/ai/nothing:latest"})
    assert missing.status_code == 404 and missing.headers["Content-Type"].startswith("text/plain")
    unreachable = requests.post(native_server.url + "/models/create", json={"from": "127.0.0.1:1/ai/x"})
    assert unreachable.status_code >= 500 and "Traceback" not in unreachable.text
    assert requests.get(native_server.url + "/models").json()[0]["tags"] == ["docker.io/ai/smollm2:latest"]
