"""Images in chat prompts, through llama.cpp's multimodal library (mtmd) and a projector file.

A model can see images when its bundle holds a multimodal projector beside the weights
(``bundle/model/model.mmproj``, what ``llama-server --mmproj`` loads). Each image becomes a media
marker in the rendered prompt; mtmd splits the prompt into text and image chunks, encodes the
images with the projector and evaluates everything into the model's context. The token loop
then samples from there as for any prompt.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import dataclasses
from pathlib import Path
from typing import Any

from dmr_core.errors import InvalidRequest, ModelLoadFailed
from dmr_core.generation import Message

#: The projector's name inside a model bundle (DMR's layout), next to the GGUF weights.
PROJECTOR_FILE = "model.mmproj"


def projector_path(model_path: str) -> Path | None:
    path = Path(model_path).with_name(PROJECTOR_FILE)
    return path if path.is_file() else None


class MediaPrompt:
    """A tokenised text-and-images prompt (mtmd chunks); ``len()`` is the context it takes."""

    def __init__(self, mtmd: Any, chunks: Any) -> None:
        self._mtmd = mtmd
        self.chunks = chunks
        self._size = mtmd.mtmd_helper_get_n_pos(chunks)

    def __len__(self) -> int:
        return self._size

    def close(self) -> None:
        if self.chunks is not None:
            self._mtmd.mtmd_input_chunks_free(self.chunks)
            self.chunks = None


class Projector:
    """The mtmd context for one loaded model. :param llama: the ``Llama`` it feeds."""

    def __init__(self, llama: Any, path: Path, threads: int) -> None:
        import llama_cpp.mtmd_cpp as mtmd

        self._mtmd, self._llama = mtmd, llama
        params = mtmd.mtmd_context_params_default()
        params.n_threads, params.print_timings = threads, False
        self._ctx = mtmd.mtmd_init_from_file(str(path).encode(), llama._model.model, params)
        if not self._ctx or not mtmd.mtmd_support_vision(self._ctx):
            raise ModelLoadFailed(f"llama.cpp could not load the multimodal projector {path}")
        self.marker = mtmd.mtmd_default_marker().decode()

    def with_markers(self, messages: tuple[Message, ...]) -> tuple[Message, ...]:
        """Messages whose images are media markers placed before their text."""
        return tuple(dataclasses.replace(m, content=self.marker * len(m.images) + m.content) for m in messages)

    def tokenize(self, prompt: str, images: list[str], add_bos: bool) -> MediaPrompt:
        bitmaps = [self._bitmap(url, i) for i, url in enumerate(images)]
        chunks = self._mtmd.mtmd_input_chunks_init()
        try:
            text = self._mtmd.mtmd_input_text(prompt.encode(), len(prompt.encode()), add_bos, True)
            array = (self._mtmd.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
            if self._mtmd.mtmd_tokenize(self._ctx, chunks, ctypes.byref(text), array, len(bitmaps)) != 0:
                raise InvalidRequest("the images do not match the prompt's media markers", param="messages")
            return MediaPrompt(self._mtmd, chunks)
        except BaseException:
            self._mtmd.mtmd_input_chunks_free(chunks)
            raise
        finally:
            for bitmap in bitmaps:
                self._mtmd.mtmd_bitmap_free(bitmap)

    def evaluate(self, prompt: MediaPrompt, seq_id: int) -> int:
        """Evaluate the prompt into sequence ``seq_id`` (emptied by the caller) from position 0,
        the last position's logits kept for sampling; returns the positions it fills."""
        end = ctypes.c_int32(0)  # llama_pos
        status = self._mtmd.mtmd_helper_eval_chunks(self._ctx, self._llama._ctx.ctx, prompt.chunks, 0, seq_id,
                                                    self._llama.n_batch, True, ctypes.byref(end))  # fmt: skip
        if status != 0:
            raise InvalidRequest(f"llama.cpp could not evaluate the images (status {status})", param="messages")
        return end.value

    def _bitmap(self, url: str, index: int) -> Any:
        data = _image_bytes(url)
        buffer = (ctypes.c_uint8 * len(data)).from_buffer(bytearray(data))
        bitmap = self._mtmd.mtmd_helper_bitmap_init_from_buf(self._ctx, buffer, len(data), False)
        if not bitmap:
            raise InvalidRequest(f"image {index + 1} could not be decoded (PNG, JPEG, GIF and BMP work)",
                                 param="messages")  # fmt: skip
        return bitmap

    def close(self) -> None:
        if self._ctx:
            self._mtmd.mtmd_free(self._ctx)
            self._ctx = None


def _image_bytes(url: str) -> bytes:
    try:
        return base64.b64decode(url.split(",", 1)[1], validate=True)
    except (IndexError, binascii.Error) as exc:
        raise InvalidRequest("an image data: URL does not hold valid base64", param="messages") from exc
