"""Sizes as people write them, for ``memory-estimate``."""

import pytest

from dmr_core.bytesize import parse_size
from dmr_core.errors import InvalidRequest


@pytest.mark.parametrize(("given", "expected"), [
    (1234, 1234), ("1234", 1234), ("1.5GiB", 3 << 29), ("800MB", 800_000_000), ("512M", 512 << 20),
    ("2 kib", 2048), ("1T", 1 << 40), ("10b", 10),
])  # fmt: skip
def test_sizes(given, expected):
    assert parse_size(given, "memory-estimate") == expected


@pytest.mark.parametrize("given", [0, -3, True, 1.5, "", "GiB", "1.5 parsecs", "-1GB", "0.1b", None, [1]])
def test_nonsense_is_a_400_naming_the_field(given):
    with pytest.raises(InvalidRequest, match="memory-estimate") as refused:
        parse_size(given, "memory-estimate")
    assert refused.value.status == 400
