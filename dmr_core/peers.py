"""Which other dmr hosts have a model: the ``peers`` setting (``DMR_PEERS``), asked when it is missing here.

In a scaled-out set (docs/scaling.md) nginx sends each model's requests to one host; a request that
reaches another (its client bypassed nginx, or the ring moved) gets a 404, and asking the peers lets
that 404 say where the model is. Each peer is asked ``GET /models/<name>`` (DMR's native API),
all at once, each within ``peer_timeout`` seconds. That route reads the peer's store only and never
asks the peer's own peers, so a question cannot loop between hosts. A peer that is down, slow or
refuses the key (``peer_api_key``) counts as not having the model.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import requests

from dmr_core.errors import DmrError
from dmr_core.settings import Settings
from dmr_core.store.references import model_id_query, parse_reference

log = logging.getLogger(__name__)


def peer_urls(setting: str) -> list[str]:
    """The base URLs of a ``peers`` setting: comma-separated, ``http://`` added where none is given."""
    urls = []
    for entry in filter(None, (part.strip() for part in setting.split(","))):
        urls.append((entry if "://" in entry else f"http://{entry}").rstrip("/"))
    return urls


def hosts_with(name: str, settings: Settings) -> list[str]:
    """The peers (as the setting names them) whose store has the model ``name``, in setting order."""
    peers = peer_urls(settings.peers)
    if not peers:
        return []
    path = f"/models/{quote(_full_name(name), safe='/:@')}"
    headers = {"Authorization": f"Bearer {settings.peer_api_key}"} if settings.peer_api_key else {}
    with ThreadPoolExecutor(max_workers=len(peers)) as pool:
        answers = list(pool.map(lambda peer: _has(peer + path, headers, settings.peer_timeout), peers))
    return [peer for peer, has in zip(peers, answers) if has]


def _full_name(name: str) -> str:
    """``docker.io/ai/x:latest`` for ``x``: the peer resolves it exactly, without DMR's partial-name search."""
    if model_id_query(name):
        return name.strip()  # a model id (or a prefix of one): the same in every store
    try:
        return parse_reference(name).name
    except DmrError:
        return name.strip()


def _has(url: str, headers: dict[str, str], timeout: float) -> bool:
    try:
        with requests.get(url, headers=headers, timeout=timeout, stream=True) as response:
            return response.status_code == 200
    except requests.RequestException as exc:
        log.info("peer %s did not answer within %.1fs: %s", url, timeout, exc)
        return False
