"""Concurrent requests to one model queue in the worker; none cuts another off."""

from concurrent.futures import ThreadPoolExecutor

from tests.openai.test_chat import stream_text


def one_stream(client, i):
    stream = client.chat.completions.create(
        model="ai/smollm2", messages=[{"role": "user", "content": f"Say something about number {i}."}],
        max_tokens=12, temperature=0, stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    return stream_text(stream)


def test_concurrent_streams_all_complete(openai_client):
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda i: one_stream(openai_client, i), range(6)))
    for text, finish, usage in results:
        assert finish in ("stop", "length")
        assert usage is not None and usage.completion_tokens >= 1
        assert text
    # greedy decoding: the same prompt alone gives the same text, so nothing was interleaved
    assert one_stream(openai_client, 3)[0] == results[3][0]
