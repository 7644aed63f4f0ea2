"""Between the images wire shapes and :class:`~dmr_core.generation.ImageRequest` /
:class:`~dmr_core.generation.ImageResult` (I/O-free)."""

from __future__ import annotations

import base64
import re
import time

from dmr_core.dialects.images import schema
from dmr_core.errors import InvalidRequest
from dmr_core.generation import ImageRequest, ImageResult

_SIZE = re.compile(r"([0-9]+)x([0-9]+)")
#: Latents are an eighth of the picture's side in Stable Diffusion-like models.
SIDE_MULTIPLE = 8
#: A bound for every model (each engine also refuses sizes too large for its model).
MAX_SIDE = 4096


def parse_size(size: str) -> tuple[int, int]:
    """``"WxH"`` as (width, height), each a multiple of 8 from 8 to :data:`MAX_SIDE`; else a 400."""
    match = _SIZE.fullmatch(size.strip())
    if match is None:
        raise InvalidRequest(f"invalid size {size!r}: expected WIDTHxHEIGHT in pixels, such as 512x512", param="size")
    width, height = int(match[1]), int(match[2])
    if width % SIDE_MULTIPLE or height % SIDE_MULTIPLE or not (width and height):
        raise InvalidRequest(f"invalid size {size!r}: width and height must be positive multiples of {SIDE_MULTIPLE}",
                             param="size")  # fmt: skip
    if max(width, height) > MAX_SIDE:
        raise InvalidRequest(f"invalid size {size!r}: width and height must be at most {MAX_SIDE}", param="size")
    return width, height


def to_image_request(req: schema.ImageGenerationRequest) -> ImageRequest:
    """The job for ``req``; the model path is the runtime's to fill in."""
    if req.response_format not in (None, "b64_json"):
        raise InvalidRequest(f"unsupported response_format {req.response_format!r}: only 'b64_json' is served "
                             "(pictures come back in the response, never as URLs)",
                             param="response_format")  # fmt: skip
    width, height = parse_size(req.size)
    return ImageRequest(model_path="", prompt=req.prompt, width=width, height=height, n=req.n,
                        negative_prompt=req.negative_prompt, num_inference_steps=req.num_inference_steps,
                        guidance_scale=req.guidance_scale, seed=req.seed)  # fmt: skip


def image_response(result: ImageResult, created: int | None = None) -> dict:
    """``{"created", "data": [{"b64_json"}]}``, one entry per picture."""
    data = [schema.ImageData(b64_json=base64.b64encode(png).decode("ascii")) for png in result.images]
    created = int(time.time()) if created is None else created
    return schema.ImagesResponse(created=created, data=data).model_dump()
