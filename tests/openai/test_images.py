"""Image content parts: ``data:`` URLs reach a model with a projector; nothing is ever fetched."""

import http.server
import threading

import openai
import pytest

from dmr_core.store.layout import ModelStore
from dmr_core.testing import openai_client_for, start_server, stop_server
from tests.support.vision import data_url, png, write_tiny_projector

RED, BLUE = data_url(png((255, 0, 0))), data_url(png((0, 0, 255), stripes=True))


def user(*images, text="What is in the picture?"):
    parts = [{"type": "text", "text": text}] + [{"type": "image_url", "image_url": {"url": u}} for u in images]
    return [{"role": "user", "content": parts}]


@pytest.fixture(scope="module")
def vision_client(smollm2_gguf, tmp_path_factory):
    """A server whose store holds SmolLM2 packaged with a tiny random projector (``model.mmproj``)."""
    root = tmp_path_factory.mktemp("vision-store")
    projector = write_tiny_projector(tmp_path_factory.mktemp("mmproj") / "tiny.mmproj", text_embedding=576)
    ModelStore(root).import_gguf(smollm2_gguf, "ai/smollm2-vision", mmproj=projector)
    server = start_server(root)
    try:
        yield openai_client_for(server)
    finally:
        stop_server(server)


def look(client, *images, **kwargs):
    return client.chat.completions.create(model="ai/smollm2-vision", messages=user(*images), max_tokens=4,
                                          temperature=0, **kwargs)  # fmt: skip


def test_an_image_reaches_a_model_with_a_projector(vision_client):
    with_image, without = look(vision_client, RED), look(vision_client)
    assert with_image.choices[0].finish_reason in ("stop", "length")
    assert with_image.usage.prompt_tokens > without.usage.prompt_tokens


def test_the_model_sees_which_image_it_got(vision_client):
    def first_alternatives(image):
        reply = look(vision_client, image, logprobs=True, top_logprobs=5)
        return [(t.token, round(t.logprob, 3)) for t in reply.choices[0].logprobs.content[0].top_logprobs]

    assert first_alternatives(RED) == first_alternatives(RED)
    assert first_alternatives(RED) != first_alternatives(BLUE)


def test_images_stream_too(vision_client):
    chunks = list(look(vision_client, RED, BLUE, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.prompt_tokens > look(vision_client, RED).usage.prompt_tokens


def test_an_image_for_a_model_without_a_projector_is_a_400(openai_client):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model="ai/smollm2", messages=user(RED))
    assert "this model does not support images" in caught.value.message
    assert caught.value.param == "messages[0].content"


def test_an_undecodable_image_is_a_400(vision_client):
    with pytest.raises(openai.BadRequestError) as caught:
        look(vision_client, data_url(b"GIF89a but not really"))
    assert "could not be decoded" in caught.value.message


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_http_image_urls_are_refused_and_never_fetched(dmr_server):
    site = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{site.server_address[1]}/cat.png"
        with pytest.raises(openai.BadRequestError) as caught:
            openai_client_for(dmr_server).chat.completions.create(model="ai/smollm2", messages=user(url))
    finally:
        site.shutdown()
    assert "data:" in caught.value.message and caught.value.param == "messages[0].content"
    assert _Recorder.hits == []
