"""A client that goes away mid-stream frees the inference worker within about a token."""

import json

import requests

from dmr_core.testing import wait_until


def test_disconnect_cancels_the_job(dmr_server, openai_client):
    before = dmr_server.worker_stats()["jobs"]
    body = {"model": "ai/smollm2", "stream": True, "max_tokens": 3000, "temperature": 1.0,
            "messages": [{"role": "user", "content": "Write a very long story about dragons."}]}  # fmt: skip
    with requests.post(dmr_server.url + "/engines/v1/chat/completions", json=body, stream=True) as response:
        lines = response.iter_lines()
        seen = [json.loads(line[6:]) for line, _ in zip((l for l in lines if l.startswith(b"data: ")), range(5))]
        assert len(seen) == 5
    # The socket is closed now; the worker must notice and end the job as cancelled.
    assert wait_until(lambda: dmr_server.worker_stats()["jobs"]["cancelled"] > before["cancelled"], timeout=20)
    assert dmr_server.worker_stats()["jobs"]["running"] == 0
    reply = openai_client.chat.completions.create(model="ai/smollm2", messages=[{"role": "user", "content": "Hi"}],
                                                  max_tokens=3)  # fmt: skip
    assert reply.choices[0].message.content
