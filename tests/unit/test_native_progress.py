"""Progress lines as DMR writes them: JSON, or HTML-escaped text unless Accept is application/json."""

import html
import json

from dmr_core.dialects.native.progress_stream import encode_line, lines, wants_json
from dmr_core.distribution.progress import LayerProgress, ProgressEvent
from dmr_core.errors import ModelNotFound

EVENT = ProgressEvent("progress", "Downloaded: 1.00 MB", 2_000_000, LayerProgress("sha256:" + "a" * 64, 2_000_000, 1_000_000))


def test_json_only_for_exact_accept():
    assert wants_json("application/json")
    assert not wants_json("application/json, text/plain")
    assert not wants_json(None)


def test_json_line_has_dmr_fields_in_order():
    line = encode_line(EVENT, as_json=True)
    assert line.endswith(b"\n")
    assert list(json.loads(line)) == ["type", "message", "total", "layer", "mode"]
    assert json.loads(line)["layer"] == {"id": "sha256:" + "a" * 64, "size": 2_000_000, "current": 1_000_000}


def test_text_line_is_escaped_like_go():
    line = encode_line(EVENT, as_json=False).decode()
    assert '"' not in line and "&#34;type&#34;" in line
    assert json.loads(html.unescape(line)) == EVENT.to_dict()


def test_success_event_omits_empty_layer_id():
    success = ProgressEvent("success", "Model pulled successfully")
    assert json.loads(success.to_json())["layer"] == {"size": 0, "current": 0}


def test_error_after_start_becomes_an_error_line():
    def events():
        yield EVENT
        raise ModelNotFound("gone")

    out = list(lines(events(), as_json=True, mode="pull"))
    assert json.loads(out[-1]) == {"type": "error", "message": "Error: gone", "total": 0,
                                   "layer": {"size": 0, "current": 0}, "mode": "pull"}  # fmt: skip
