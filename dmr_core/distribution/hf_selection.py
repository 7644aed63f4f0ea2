"""Which files of a Hugging Face repository a tag names: DMR's ``SelectGGUFFiles``, a little stricter.

``latest`` (or ``main``, or no tag) means the ``Q4_K_M`` variant, else the first variant by name; any
other tag is a quantization, matched case-insensitively against the one each file name carries. A
shard set (``x-00001-of-00003.gguf`` …) is one variant, taken whole and in order. A multimodal
projector (``mmproj*.gguf``, F16 preferred, as DMR does) comes along with any variant.

Where DMR falls back to ``Q4_K_M`` for a quantization the repository does not have, this refuses
with the list of those it has: ``hf.co/org/repo:Q5_K_S`` silently pulling Q4_K_M would be stored
under a tag that lies about its contents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import groupby

from dmr_core.errors import InvalidRequest, ModelNotFound

DEFAULT_QUANTIZATION = "Q4_K_M"
_DEFAULT_TAGS = frozenset({"", "latest", "main"})
_GGUF_SUFFIX = ".gguf"
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})$", re.IGNORECASE)
# llama.cpp's quantization names as they appear in file names (Q4_K_M, IQ2_XXS, Q8_0, F16, BF16, ...).
_QUANTIZATION = re.compile(
    r"(?<![a-z0-9])(i?q\d+(?:_[a-z0-9]+)*|bf16|f16|f32|mxfp4(?:_moe)?|tq\d_\d)(?![a-z0-9])", re.IGNORECASE
)


@dataclass(frozen=True)
class HubFile:
    """A file of a Hub repository; ``sha256`` is known for LFS files (every real GGUF), else None."""

    path: str
    size: int
    sha256: str | None = None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def digest(self) -> str | None:
        """The store's layer digest for this file, when the Hub told us its sha256."""
        return f"sha256:{self.sha256}" if self.sha256 else None


@dataclass(frozen=True)
class Variant:
    """One model in a repository: a single GGUF file or a whole shard set."""

    #: The path without ``.gguf`` and without the shard suffix: ``Q4/tiny-Q4_K_M``.
    stem: str
    files: tuple[HubFile, ...]

    @property
    def quantization(self) -> str:
        """The quantization named in the file name (upper-cased), or "" if none is recognisable."""
        found = _QUANTIZATION.findall(self.stem.rsplit("/", 1)[-1])
        return found[-1].upper() if found else ""


@dataclass(frozen=True)
class Selection:
    weights: tuple[HubFile, ...]
    mmproj: HubFile | None = None

    @property
    def files(self) -> tuple[HubFile, ...]:
        return self.weights + ((self.mmproj,) if self.mmproj else ())

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def select_gguf(files: list[HubFile], tag: str, repository: str) -> Selection:
    """The files to pull for ``tag``; :class:`ModelNotFound` listing the quantizations on offer if none match.

    ``repository`` only names the source in error messages.
    """
    ggufs = [f for f in files if f.name.lower().endswith(_GGUF_SUFFIX)]
    projectors = [f for f in ggufs if _is_mmproj(f)]
    variants = model_variants([f for f in ggufs if not _is_mmproj(f)])
    if not variants:
        raise InvalidRequest(f"{repository} has no GGUF model files: only GGUF repositories can be pulled")
    variant = _variant_for(variants, tag, repository)
    _check_complete(variant)
    return Selection(variant.files, _preferred_mmproj(projectors))


def model_variants(ggufs: list[HubFile]) -> list[Variant]:
    """The repository's models, by stem: shards of one set share a stem and are kept in order."""
    ordered = sorted(ggufs, key=lambda f: (_stem(f.path), f.path))
    return [Variant(stem, tuple(group)) for stem, group in groupby(ordered, key=lambda f: _stem(f.path))]


def available_quantizations(variants: list[Variant]) -> list[str]:
    return sorted({v.quantization or v.stem.rsplit("/", 1)[-1] for v in variants})


def _variant_for(variants: list[Variant], tag: str, repository: str) -> Variant:
    if tag.lower() in _DEFAULT_TAGS:
        return next((v for v in variants if v.quantization == DEFAULT_QUANTIZATION), variants[0])
    wanted = tag.upper()
    exact = [v for v in variants if v.quantization == wanted]
    # DMR's looser rule (the tag after a separator) lets "UD-Q4_K_XL" name "model-UD-Q4_K_XL.gguf".
    loose = exact or [v for v in variants if _names_quantization(v.stem, tag)]
    if loose:
        return loose[0]
    offered = ", ".join(available_quantizations(variants))
    raise ModelNotFound(f"no GGUF file for quantization {tag} in {repository}; available quantizations: {offered}")


def _names_quantization(stem: str, quantization: str) -> bool:
    name = stem.rsplit("/", 1)[-1]
    return re.search(rf"[-._]{re.escape(quantization)}(?:[-._]|$)", name, re.IGNORECASE) is not None


def _check_complete(variant: Variant) -> None:
    """A shard set missing a file would import as a broken model; better to say so before downloading."""
    match = _SHARD.search(_without_suffix(variant.files[0].path))
    if match and len(variant.files) != int(match.group(2)):
        raise InvalidRequest(
            f"shard set {variant.stem} is incomplete: {len(variant.files)} of {int(match.group(2))} files"
        )


def _preferred_mmproj(projectors: list[HubFile]) -> HubFile | None:
    ordered = sorted(projectors, key=lambda f: f.path)
    return next((f for f in ordered if "f16" in f.name.lower()), ordered[0] if ordered else None)


def _is_mmproj(file: HubFile) -> bool:
    return "mmproj" in file.name.lower()


def _stem(path: str) -> str:
    return _SHARD.sub("", _without_suffix(path))


def _without_suffix(path: str) -> str:
    return path[: -len(_GGUF_SUFFIX)]
