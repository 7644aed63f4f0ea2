"""OCI media types of DMR model artifacts (``pkg/distribution/types/config.go``).

Pull and push move these artifacts unchanged between the store and OCI registries, so the strings
must match DMR's byte for byte.
"""

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
#: Docker's own image manifest: same shape; some registries answer with it.
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)

#: The config blob of a GGUF model whose files are found by layer media type (DMR's v0.1).
MODEL_CONFIG_V01 = "application/vnd.docker.ai.model.config.v0.1+json"
#: v0.2: one layer per file, placed by its ``org.cncf.model.filepath`` annotation.
MODEL_CONFIG_V02 = "application/vnd.docker.ai.model.config.v0.2+json"
#: The CNCF ModelPack config (a different JSON shape, normalised on read).
CNCF_MODEL_CONFIG_V1 = "application/vnd.cncf.model.config.v1+json"
#: Pulling an artifact with any other config media type fails with 422, as in DMR.
MODEL_CONFIGS = frozenset({MODEL_CONFIG_V01, MODEL_CONFIG_V02, CNCF_MODEL_CONFIG_V1})

#: A layer holding one GGUF file (one layer per shard, in order).
GGUF_LAYER = "application/vnd.docker.ai.gguf.v3"
CNCF_GGUF_LAYER = "application/vnd.cncf.model.weight.v1.gguf"
GGUF_LAYERS = frozenset({GGUF_LAYER, CNCF_GGUF_LAYER})
#: The multimodal projector llama.cpp loads with ``--mmproj``.
MMPROJ_LAYER = "application/vnd.docker.ai.mmproj"
CHAT_TEMPLATE_LAYER = "application/vnd.docker.ai.chat.template.jinja"
LICENSE_LAYER = "application/vnd.docker.ai.license"
#: A whole diffusers pipeline in one file: a DDUF archive (an uncompressed zip, model_index.json at its root).
DDUF_LAYER = "application/vnd.docker.ai.dduf"
#: A safetensors weights file, and any other file of a multi-file model (configs, tokenizer files...),
#: each placed by its ``org.cncf.model.filepath`` annotation (v0.2 configs).
SAFETENSORS_LAYER = "application/vnd.docker.ai.safetensors"
MODEL_FILE_LAYER = "application/vnd.docker.ai.model.file"

#: The layer annotation naming a file's path inside the model (``/``-separated, relative).
FILEPATH_ANNOTATION = "org.cncf.model.filepath"
