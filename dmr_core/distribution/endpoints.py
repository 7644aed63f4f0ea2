"""Where a registry's API lives: Docker Hub's API host, and when plain HTTP is used.

DMR's rules: ``docker.io`` is served by ``registry-1.docker.io``; a registry is spoken to over
plain HTTP when ``INSECURE_REGISTRY=true`` (dmr also reads ``DMR_INSECURE_REGISTRY``) or when its
host is ``localhost``, ``127.0.0.1`` or ends in ``.local`` (local test and LAN registries).
"""

from __future__ import annotations

import os

DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_NAMES = frozenset({"docker.io", "index.docker.io", DOCKER_HUB_API})
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def is_docker_hub(registry: str) -> bool:
    return registry in DOCKER_HUB_NAMES


def base_url(registry: str) -> str:
    """``https://registry-1.docker.io`` for ``docker.io``; ``http://127.0.0.1:5000`` for a local one."""
    scheme = "http" if uses_plain_http(registry) else "https"
    return f"{scheme}://{DOCKER_HUB_API if is_docker_hub(registry) else registry}"


def uses_plain_http(registry: str) -> bool:
    if _env_true("DMR_INSECURE_REGISTRY") or _env_true("INSECURE_REGISTRY"):
        return True
    host = hostname(registry)
    return host in _LOOPBACK or host.endswith(".local")


def hostname(registry: str) -> str:
    """The host without its port: ``127.0.0.1:5000`` → ``127.0.0.1``."""
    host, _, port = registry.rpartition(":")
    return host if host and port.isdigit() else registry


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() == "true"
