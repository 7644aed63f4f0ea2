"""Which files a tag names, on file lists shaped like real Hub repositories (no server needed)."""

from __future__ import annotations

import pytest

from dmr_core.distribution.hf_selection import HubFile, select_gguf
from dmr_core.errors import InvalidRequest, ModelNotFound


def files(*paths: str) -> list[HubFile]:
    return [HubFile(path, 1) for path in paths]


def chosen(paths: list[str], tag: str) -> tuple[list[str], str | None]:
    selection = select_gguf(files(*paths), tag, "org/repo")
    return [f.path for f in selection.weights], selection.mmproj.path if selection.mmproj else None


def test_latest_without_q4_k_m_takes_the_first_variant_by_name() -> None:
    assert chosen(["m-Q8_0.gguf", "m-F16.gguf", "README.md"], "latest") == (["m-F16.gguf"], None)


def test_shards_in_subfolders_are_one_variant_in_order() -> None:
    paths = ["Q4_K_M/m-Q4_K_M-00002-of-00002.gguf", "Q4_K_M/m-Q4_K_M-00001-of-00002.gguf", "m-Q8_0.gguf"]
    assert chosen(paths, "Q4_K_M")[0] == sorted(paths[:2])


def test_exact_quantization_wins_over_a_prefix_of_it() -> None:
    assert chosen(["m-Q4_K.gguf", "m-Q4_K_M.gguf", "m-Q4_K_S.gguf"], "q4_k_s") == (["m-Q4_K_S.gguf"], None)


def test_dmr_style_match_after_a_separator() -> None:
    assert chosen(["m-UD-Q4_K_XL.gguf", "m-Q8_0.gguf"], "UD-Q4_K_XL") == (["m-UD-Q4_K_XL.gguf"], None)


def test_f16_projector_is_preferred() -> None:
    paths = ["m-Q4_K_M.gguf", "mmproj-m-Q8_0.gguf", "mmproj-m-F16.gguf"]
    assert chosen(paths, "latest") == (["m-Q4_K_M.gguf"], "mmproj-m-F16.gguf")


def test_incomplete_shard_set_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="1 of 3 files"):
        chosen(["m-Q4_K_M-00001-of-00003.gguf"], "latest")


def test_repository_without_gguf_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="no GGUF model files"):
        chosen(["model.safetensors", "config.json"], "latest")


def test_unknown_quantization_names_what_there_is() -> None:
    with pytest.raises(ModelNotFound, match="available quantizations: IQ2_XXS, Q8_0$"):
        chosen(["m-IQ2_XXS.gguf", "m-Q8_0.gguf", "mmproj-m-f16.gguf"], "Q4_K_M")
