from tests.support.tiny_diffusers import tiny_dduf, tiny_diffusers_dir  # noqa: F401 (session fixtures)
