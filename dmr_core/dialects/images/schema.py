"""Wire shapes of image generation: OpenAI's ``images.generate`` body plus DMR's diffusers fields
(``negative_prompt``, ``num_inference_steps``, ``guidance_scale``, ``seed``), and the response."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictStr

#: DMR's default size (its diffusers server's), whatever the model's native size.
DEFAULT_SIZE = "512x512"
#: OpenAI's and DMR's bound on ``n``.
MAX_IMAGES = 10


class ImageGenerationRequest(BaseModel):
    # OpenAI's clients may send fields of its own models (quality, style, user…): accepted, unused.
    model_config = ConfigDict(extra="allow")

    model: StrictStr
    prompt: Annotated[StrictStr, Field(min_length=1)]
    n: Annotated[int, Field(ge=1, le=MAX_IMAGES)] = 1
    size: StrictStr = DEFAULT_SIZE
    response_format: StrictStr | None = "b64_json"
    negative_prompt: StrictStr | None = None
    num_inference_steps: Annotated[int, Field(ge=1, le=500)] | None = None
    guidance_scale: Annotated[float, Field(ge=0, le=100)] | None = None
    seed: Annotated[int, Field(ge=0, lt=2**63)] | None = None


class ImageData(BaseModel):
    b64_json: str


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]
