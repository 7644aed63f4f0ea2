"""Getting models into and out of the store: OCI registries and Hugging Face, with progress."""
