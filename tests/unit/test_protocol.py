"""Length-prefixed JSON frames over real stream sockets."""

from __future__ import annotations

import os
import socket
import struct
import tempfile
import threading

import pytest

from dmr_core.pool import protocol
from dmr_core.pool.protocol import FrameReader, ProtocolError, encode_frame, request_reply, send_frame


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.settimeout(5)
    b.settimeout(5)
    yield a, b
    a.close()
    b.close()


CHUNK = {"k": "c", "t": "Hello \"world\"\n ü 中 🎉", "f": "stop", "u": [3, 4]}


def test_encoded_frame_is_a_big_endian_length_then_compact_json():
    frame = encode_frame({"op": "status", "x": "é"})
    body = '{"op":"status","x":"é"}'.encode()
    assert frame == struct.pack("!I", len(body)) + body


def test_one_frame_round_trips(pair):
    a, b = pair
    send_frame(a, CHUNK)
    assert FrameReader(b).read() == CHUNK


def test_clean_eof_returns_none(pair):
    a, b = pair
    a.close()
    assert FrameReader(b).read() is None


def test_eof_after_whole_frames_returns_them_then_none(pair):
    a, b = pair
    send_frame(a, {"n": 1})
    a.shutdown(socket.SHUT_WR)
    reader = FrameReader(b)
    assert reader.read() == {"n": 1}
    assert reader.read() is None
    assert reader.read() is None


def test_several_frames_in_one_recv_are_all_read_in_order(pair):
    a, b = pair
    messages = [{"n": i, "t": "x" * i} for i in range(5)]
    a.sendall(b"".join(encode_frame(m) for m in messages))
    a.shutdown(socket.SHUT_WR)
    reader = FrameReader(b)
    assert [reader.read() for _ in messages] == messages
    assert reader.read() is None


def test_one_frame_split_across_many_sends(pair):
    a, b = pair
    data = encode_frame(CHUNK)
    for i in range(len(data)):
        a.send(data[i : i + 1])
    assert FrameReader(b).read() == CHUNK


def test_frames_split_at_every_boundary_with_a_small_read_buffer(pair):
    a, b = pair
    messages = [{"n": i, "t": "é" * (i * 7)} for i in range(10)]
    data = b"".join(encode_frame(m) for m in messages)
    a.sendall(data)
    a.shutdown(socket.SHUT_WR)
    reader = FrameReader(b, bufsize=3)
    assert [reader.read() for _ in messages] == messages
    assert reader.read() is None


def test_frame_larger_than_the_socket_buffer_round_trips(pair):
    a, b = pair
    big = {"k": "r", "result": {"vectors": [[0.125] * 1000 for _ in range(200)]}}
    sender = threading.Thread(target=send_frame, args=(a, big))
    sender.start()
    try:
        assert FrameReader(b).read() == big
    finally:
        sender.join(5)


def test_eof_inside_the_body_raises(pair):
    a, b = pair
    a.sendall(encode_frame(CHUNK)[:-3])
    a.close()
    with pytest.raises(ProtocolError, match="inside a frame"):
        FrameReader(b).read()


def test_eof_inside_the_header_raises(pair):
    a, b = pair
    a.sendall(encode_frame(CHUNK)[:2])
    a.close()
    with pytest.raises(ProtocolError, match="header"):
        FrameReader(b).read()


def test_eof_inside_the_second_frame_raises_after_the_first(pair):
    a, b = pair
    a.sendall(encode_frame({"n": 1}) + encode_frame({"n": 2})[:5])
    a.close()
    reader = FrameReader(b)
    assert reader.read() == {"n": 1}
    with pytest.raises(ProtocolError):
        reader.read()


def test_oversize_length_header_raises_without_waiting_for_the_body(pair):
    a, b = pair
    a.sendall(struct.pack("!I", protocol.MAX_FRAME + 1))  # and the socket stays open
    with pytest.raises(ProtocolError, match="over the limit"):
        FrameReader(b).read()


def test_largest_length_header_raises(pair):
    a, b = pair
    a.sendall(b"\xff\xff\xff\xff")
    with pytest.raises(ProtocolError):
        FrameReader(b).read()


def test_empty_object_round_trips(pair):
    a, b = pair
    send_frame(a, {})
    assert FrameReader(b).read() == {}


# -- request_reply over a Unix socket ------------------------------------------------------------


@pytest.fixture
def unix_server():
    """A one-connection-at-a-time server on a short Unix socket path; ``answer`` decides the reply."""
    directory = tempfile.mkdtemp(prefix="dmr-proto-")
    path = os.path.join(directory, "s.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    state = {"answer": lambda message: {"k": "r", "result": message}, "seen": []}

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                message = FrameReader(conn).read()
                state["seen"].append(message)
                reply = state["answer"](message)
                if reply is not None:
                    send_frame(conn, reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, state
    listener.close()
    os.unlink(path)
    os.rmdir(directory)


def test_request_reply_returns_the_one_answer(unix_server):
    path, state = unix_server
    assert request_reply(path, {"op": "status"}, timeout=5) == {"k": "r", "result": {"op": "status"}}
    assert state["seen"] == [{"op": "status"}]


def test_request_reply_raises_when_the_peer_closes_without_answering(unix_server):
    path, state = unix_server
    state["answer"] = lambda message: None
    with pytest.raises(ProtocolError, match="without answering"):
        request_reply(path, {"op": "status"}, timeout=5)


def test_request_reply_to_a_missing_socket_raises_os_error():
    directory = tempfile.mkdtemp(prefix="dmr-proto-")  # short: Unix socket paths are limited
    try:
        with pytest.raises(FileNotFoundError):
            request_reply(os.path.join(directory, "nobody.sock"), {"op": "status"}, timeout=1)
    finally:
        os.rmdir(directory)
