"""DMR's native model API on local models: list, inspect, tag, delete, purge, export and load."""

import io
import tarfile

import requests


def url(server, path):
    return server.url + path


def test_list_and_get_with_dmr_fields(dmr_server):
    models = requests.get(url(dmr_server, "/models")).json()
    assert len(models) == 1
    model = models[0]
    assert set(model) == {"id", "tags", "created", "config"}
    assert model["id"].startswith("sha256:") and len(model["id"]) == 71
    assert model["tags"] == ["docker.io/ai/smollm2:latest"]
    assert model["config"]["format"] == "gguf" and model["config"]["quantization"] == "Q4_1"
    for name in ("ai/smollm2", "ai/smollm2:latest", "docker.io/ai/smollm2:latest", model["id"], model["id"][7:19]):
        assert requests.get(url(dmr_server, f"/models/{name}")).json()["id"] == model["id"], name


def test_get_falls_back_to_a_partial_name(dmr_server):
    assert requests.get(url(dmr_server, "/models/smollm2")).status_code == 200


def test_unknown_model_is_plain_text_404(dmr_server):
    response = requests.get(url(dmr_server, "/models/ai/nothing"))
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text.endswith("\n") and "not found" in response.text


def test_unknown_action_is_404(dmr_server):
    response = requests.post(url(dmr_server, "/models/ai/smollm2/frobnicate"))
    assert response.status_code == 404 and response.text == 'unknown action "frobnicate"\n'


def test_tag_then_delete_by_tag_only_untags(native_server):
    response = requests.post(url(native_server, "/models/ai/smollm2/tag"), params={"repo": "myorg/small", "tag": "v1"})
    assert response.status_code == 201
    assert response.json() == {"message": 'Model tagged successfully with "myorg/small:v1"', "target": "myorg/small:v1"}
    model = requests.get(url(native_server, "/models/myorg/small:v1")).json()
    assert sorted(model["tags"]) == ["docker.io/ai/smollm2:latest", "docker.io/myorg/small:v1"]
    untag = requests.delete(url(native_server, "/models/myorg/small:v1"))
    assert untag.status_code == 200 and untag.json() == [{"Untagged": "docker.io/myorg/small:v1"}]
    assert requests.get(url(native_server, "/models/ai/smollm2")).status_code == 200


def test_tag_without_repo_is_400(dmr_server):
    assert requests.post(url(dmr_server, "/models/ai/smollm2/tag"), params={"tag": "v1"}).status_code == 400


def test_delete_id_with_several_tags_needs_force(native_server):
    requests.post(url(native_server, "/models/ai/smollm2/tag"), params={"repo": "ai/other", "tag": "x"})
    model_id = requests.get(url(native_server, "/models/ai/smollm2")).json()["id"]
    assert requests.delete(url(native_server, f"/models/{model_id}")).status_code == 409
    forced = requests.delete(url(native_server, f"/models/{model_id}"), params={"force": "true"}).json()
    assert {"Deleted": model_id} in forced
    assert {"Untagged": "docker.io/ai/smollm2:latest"} in forced
    assert requests.get(url(native_server, "/models")).json() == []
    assert requests.get(url(native_server, "/engines/v1/models")).json()["data"] == []
    assert requests.delete(url(native_server, "/models/ai/smollm2")).status_code == 404


def test_purge_empties_the_store(native_server):
    assert requests.delete(url(native_server, "/models/purge")).status_code == 200
    assert requests.get(url(native_server, "/models")).json() == []
    assert not list((native_server.store / "blobs" / "sha256").glob("*"))


def test_export_then_load_round_trip(native_server):
    model = requests.get(url(native_server, "/models/ai/smollm2")).json()
    archive = requests.get(url(native_server, "/models/ai/smollm2/export"))
    assert archive.status_code == 200 and archive.headers["Content-Type"] == "application/x-tar"
    names = tarfile.open(fileobj=io.BytesIO(archive.content)).getnames()
    assert "manifest.json" in names
    requests.delete(url(native_server, "/models/ai/smollm2"))
    loaded = requests.post(url(native_server, "/models/load"), data=archive.content)
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["id"] == model["id"]
    assert requests.get(url(native_server, f"/models/{model['id']}")).json()["tags"] == []  # as DMR: untagged
    tagged = requests.post(url(native_server, "/models/load"), params={"tag": "ai/smollm2"}, data=archive.content)
    assert tagged.status_code == 200
    assert requests.get(url(native_server, "/models/ai/smollm2")).json()["id"] == model["id"]


def test_create_rejects_bad_bodies_before_streaming(dmr_server):
    assert requests.post(url(dmr_server, "/models/create"), data=b"{nope").status_code == 400
    assert requests.post(url(dmr_server, "/models/create"), json={}).status_code == 400
    bad = requests.post(url(dmr_server, "/models/create"), json={"from": "../../etc/passwd"})
    assert bad.status_code == 400 and bad.headers["Content-Type"].startswith("text/plain")
