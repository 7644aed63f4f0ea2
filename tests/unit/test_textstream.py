"""Stop strings and incremental UTF-8 decoding for the llama.cpp engine (pure Python, no model)."""

from __future__ import annotations

import random

import pytest

from dmr_core.textstream import StopStringFilter, TokenTextDecoder


def run_filter(stops, pieces) -> tuple[list[str], StopStringFilter]:
    """Feed ``pieces`` as the engine does: stop at a match, else flush at the end."""
    f = StopStringFilter(tuple(stops))
    out = []
    for piece in pieces:
        out.append(f.feed(piece))
        if f.matched is not None:
            return out, f
    out.append(f.flush())
    return out, f


def run_decoder(stops, pieces: list[bytes]) -> tuple[list[str], TokenTextDecoder]:
    d = TokenTextDecoder(tuple(stops))
    out = []
    for piece in pieces:
        out.append(d.feed(piece))
        if d.stops.matched is not None:
            return out, d
    out.append(d.finish())
    return out, d


# -- StopStringFilter ----------------------------------------------------------------------------


def test_without_stops_every_piece_passes_through_at_once():
    f = StopStringFilter(())
    assert [f.feed(p) for p in ["Hel", "lo", "\n", ""]] == ["Hel", "lo", "\n", ""]
    assert f.flush() == "" and f.matched is None


def test_empty_stop_strings_are_ignored():
    f = StopStringFilter(("",))
    assert f.feed("abc") == "abc" and f.matched is None


def test_stop_in_one_piece_cuts_the_text_before_it():
    out, f = run_filter(["END"], ["one two END three"])
    assert out == ["one two "]
    assert f.matched == "END"


def test_stop_split_across_many_pieces_is_never_emitted():
    out, f = run_filter(["<|end|>"], ["Hi", " <", "|", "e", "n", "d", "|", ">", " after"])
    assert "".join(out) == "Hi "
    assert all("<" not in piece for piece in out)
    assert f.matched == "<|end|>"


def test_text_before_a_stop_is_emitted_exactly_once():
    out, _ = run_filter(["STOP"], ["ab", "cS", "T", "OP"])
    assert "".join(out) == "abc"
    assert out == ["ab", "c", "", ""]


def test_text_that_cannot_start_a_stop_is_released_immediately():
    f = StopStringFilter(("###",))
    assert f.feed("hello") == "hello"
    assert f.feed(" world #") == " world "


def test_partial_prefix_is_held_then_released_when_it_is_not_a_stop():
    f = StopStringFilter(("###",))
    assert f.feed("a #") == "a "
    assert f.feed("#") == ""
    assert f.feed("b") == "##b"
    assert f.matched is None


def test_held_prefix_is_released_by_flush():
    f = StopStringFilter(("</s>",))
    assert f.feed("done </") == "done "
    assert f.flush() == "</"
    assert f.flush() == ""
    assert f.matched is None


def test_prefix_that_turns_into_another_prefix_keeps_only_what_may_still_match():
    f = StopStringFilter(("aab",))
    assert f.feed("a") == ""
    assert f.feed("a") == ""
    assert f.feed("a") == "a"  # "aaa": only the last "aa" can still start "aab"
    assert f.feed("b") == ""
    assert f.matched == "aab"


def test_earliest_of_several_stops_wins():
    out, f = run_filter(["world", "lo"], ["hello world"])
    assert out == ["hel"] and f.matched == "lo"


def test_earliest_stop_wins_regardless_of_list_order():
    for stops in (["B", "A"], ["A", "B"]):
        out, f = run_filter(stops, ["xxAyyB"])
        assert (out, f.matched) == (["xx"], "A")


def test_stop_at_the_very_start_emits_nothing():
    out, f = run_filter(["\n\n"], ["\n", "\nrest"])
    assert "".join(out) == "" and f.matched == "\n\n"


def test_a_stop_held_as_prefix_of_a_longer_stop_still_matches():
    out, f = run_filter(["Human:", "Hu"], ["Say Hu", "man: hi"])
    assert "".join(out) == "Say " and f.matched == "Hu"


def test_shorter_stop_is_found_while_a_longer_one_is_still_partial():
    out, f = run_filter(["abcX", "c"], ["ab", "c"])
    assert "".join(out) == "ab" and f.matched == "c"


def test_unicode_stops_match_on_characters():
    out, f = run_filter(["。"], ["你好", "。再见"])
    assert "".join(out) == "你好" and f.matched == "。"


# -- property: any split gives the same output ---------------------------------------------------


def expected_output(text: str, stops: list[str]) -> str:
    """Text up to the first stop to complete (the shortest prefix of ``text`` that ends with a stop)."""
    for end in range(len(text) + 1):
        for stop in stops:
            if stop and text[:end].endswith(stop):
                return text[: end - len(stop)]
    return text


def random_split(rng: random.Random, text: str) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), rng.randint(0, max(0, len(text) - 1)))) if len(text) > 1 else []
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


def independent(stops: list[str]) -> bool:
    # When one stop contains another past its first character (stops "abcd" and "bc"), the filter
    # picks the match that starts first among those complete in what it holds, so "abcd" in one
    # piece gives "" but "abc" + "d" gives "a": the output depends on the split. The property is
    # checked for every other stop set.
    return not any(a != b and a in b for a in stops for b in stops)


def random_case(rng: random.Random) -> tuple[str, list[str]]:
    alphabet = "ab\nç"
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
    while True:
        stops = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 3))]
        if independent(stops):
            return text, stops


@pytest.mark.parametrize("seed", range(20))
def test_any_split_outputs_the_text_up_to_the_first_stop(seed):
    rng = random.Random(seed)
    for _ in range(200):
        text, stops = random_case(rng)
        pieces = random_split(rng, text)
        out, _ = run_filter(stops, pieces)
        assert "".join(out) == expected_output(text, stops), (text, stops, pieces)


@pytest.mark.parametrize("seed", range(5))
def test_matched_stop_is_reported_only_when_a_stop_occurs(seed):
    rng = random.Random(1000 + seed)
    for _ in range(200):
        text, stops = random_case(rng)
        _, f = run_filter(stops, random_split(rng, text))
        if any(s in text for s in stops):
            assert f.matched in stops
            assert text.startswith(expected_output(text, stops) + f.matched)
        else:
            assert f.matched is None


# -- TokenTextDecoder ----------------------------------------------------------------------------


def test_ascii_pieces_decode_as_they_come():
    out, d = run_decoder((), [b"Hello", b",", b" world"])
    assert out == ["Hello", ",", " world", ""]


@pytest.mark.parametrize("char", ["é", "中", "🎉", "𝄞"])
def test_multibyte_character_split_into_single_bytes_decodes_once(char):
    pieces = [bytes([b]) for b in char.encode()]
    out, _ = run_decoder((), [b"<", *pieces, b">"])
    assert "".join(out) == f"<{char}>"
    assert "\ufffd" not in "".join(out)
    assert out[1 : len(pieces)] == [""] * (len(pieces) - 1)  # nothing until the character is whole


def test_character_split_across_tokens_with_other_text():
    data = "naïve café 🤖!".encode()
    pieces = [data[i : i + 3] for i in range(0, len(data), 3)]
    out, _ = run_decoder((), pieces)
    assert "".join(out) == "naïve café 🤖!"


def test_stop_made_of_multibyte_characters_split_across_bytes():
    data = "答案。结束".encode()
    out, d = run_decoder(["。"], [bytes([b]) for b in data])
    assert "".join(out) == "答案" and d.stops.matched == "。"


def test_finish_releases_held_stop_prefix():
    out, d = run_decoder(["User:"], [b"the end. Us"])
    assert out == ["the end. ", "Us"]
    assert d.stops.matched is None


def test_finish_turns_a_truncated_character_into_a_replacement():
    out, _ = run_decoder((), [b"ok", "é".encode()[:1]])
    assert "".join(out) == "ok\ufffd"


def test_invalid_bytes_are_replaced_not_raised():
    out, _ = run_decoder((), [b"a\xff", b"b"])
    assert "".join(out) == "a\ufffdb"


@pytest.mark.parametrize("seed", range(5))
def test_any_byte_split_decodes_to_the_text_up_to_the_first_stop(seed):
    rng = random.Random(2000 + seed)
    for _ in range(100):
        text, stops = random_case(rng)
        data = text.encode()
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(0, len(data) - 1))) if len(data) > 1 else []
        bounds = [0, *cuts, len(data)]
        out, _ = run_decoder(stops, [data[a:b] for a, b in zip(bounds, bounds[1:])])
        assert "".join(out) == expected_output(text, stops), (text, stops, cuts)
