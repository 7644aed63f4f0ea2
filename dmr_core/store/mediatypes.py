"""OCI media types of DMR model artifacts (``pkg/distribution/types/config.go``).

Pull and push move these artifacts unchanged between the store and OCI registries, so the strings
must match DMR's byte for byte.
"""

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
#: The config blob of a GGUF model whose files are found by layer media type (DMR's v0.1).
MODEL_CONFIG_V01 = "application/vnd.docker.ai.model.config.v0.1+json"
#: A layer holding one GGUF file (one layer per shard, in order).
GGUF_LAYER = "application/vnd.docker.ai.gguf.v3"
