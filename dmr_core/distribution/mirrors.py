"""Registry mirrors: other registries serving the same repositories, tried before the origin.

The setting is a comma-separated list. A bare entry (``https://mirror.gcr.io``,
``mirror.example:5000/artifactory/docker``) mirrors Docker Hub, as DMR's
``MODEL_RUNNER_REGISTRY_MIRRORS`` does (containerd's hosts: the mirror's path prefix is kept and
``/v2`` added). dmr also takes ``registry=mirror`` entries, which mirror that one registry
(``ghcr.io=https://ghcr-cache.corp``). An entry without a scheme gets https, or plain http where dmr
would use it for that host anyway (loopback, ``.local``, ``INSECURE_REGISTRY``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from dmr_core.distribution import endpoints

DOCKER_HUB = "docker.io"


def mirror_bases(registry: str, setting: str) -> list[str]:
    """API roots (``https://mirror.example/prefix``, no ``/v2``) of ``registry``'s mirrors, in order."""
    wanted = DOCKER_HUB if endpoints.is_docker_hub(registry) else registry
    return [_base_url(mirror) for target, mirror in _entries(setting) if target == wanted]


def _entries(setting: str) -> list[tuple[str, str]]:
    """``(mirrored registry, mirror)`` pairs; a mirror URL has no query, so the first ``=`` splits a pair."""
    pairs = []
    for entry in filter(None, (part.strip() for part in setting.split(","))):
        target, sep, mirror = entry.partition("=")
        if not sep:
            target, mirror = DOCKER_HUB, entry
        pairs.append((DOCKER_HUB if endpoints.is_docker_hub(target.strip()) else target.strip(), mirror.strip()))
    return [(target, mirror) for target, mirror in pairs if mirror]


def _base_url(mirror: str) -> str:
    if "://" not in mirror:
        host = mirror.split("/", 1)[0]
        mirror = f"{'http' if endpoints.uses_plain_http(host) else 'https'}://{mirror}"
    parts = urlsplit(mirror)
    path = parts.path.rstrip("/").removesuffix("/v2")  # the client adds /v2 itself
    return f"{parts.scheme}://{parts.netloc}{path}"
