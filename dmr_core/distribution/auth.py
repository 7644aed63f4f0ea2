"""Registry credentials and the distribution spec's token flow.

Where credentials come from, first found wins: an explicit bearer token (DMR's ``bearer-token``
request field, sent as is), the Docker config (``$DOCKER_CONFIG/config.json`` or
``~/.docker/config.json``: the credential helper of ``credHelpers[host]`` or ``credsStore``, see
:mod:`~dmr_core.distribution.credhelpers`, else ``auths[host].auth`` = base64 ``user:password``), and
for Docker Hub ``DOCKER_HUB_USER``/``DOCKER_HUB_PASSWORD``. An identity token from a helper is
exchanged for an access token with OAuth2's refresh-token grant, as Docker does. A registry that
answers 401 says how to authenticate in ``WWW-Authenticate``: ``Basic`` gets the credentials
directly; ``Bearer realm=…,service=…,scope=…`` sends us to a token endpoint, anonymously or with the
credentials, for a token to retry with.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import requests

from dmr_core.distribution.credhelpers import TOKEN_USERNAME, helper_get
from dmr_core.distribution.endpoints import DOCKER_HUB_NAMES, is_docker_hub
from dmr_core.errors import RegistryError, RegistryUnreachable, Unauthorized

TOKEN_TIMEOUT = (10, 60)
DOCKER_HUB_SERVER_URL = "https://index.docker.io/v1/"
#: The OAuth2 client id sent with a refresh token (Docker sends its own tool's name too).
OAUTH_CLIENT_ID = "dmr"
_CHALLENGE_PARAM = re.compile(r'([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


@dataclass(frozen=True)
class Credentials:
    """A user name and password, or a ready token that is sent as ``Bearer`` without exchange."""

    username: str = ""
    password: str = ""
    token: str = ""
    #: An OAuth2 refresh token (a credential helper's ``<token>`` user), exchanged at the token service.
    identity_token: str = ""


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower-cased: "basic" or "bearer"
    params: dict[str, str]


def find_credentials(registry: str, bearer_token: str | None = None) -> Credentials | None:
    if bearer_token:
        return Credentials(token=bearer_token)
    found = docker_config_credentials(registry)
    if found is None and is_docker_hub(registry):
        user, password = os.environ.get("DOCKER_HUB_USER"), os.environ.get("DOCKER_HUB_PASSWORD")
        found = Credentials(user, password) if user and password else None
    return found


def docker_config_credentials(registry: str) -> Credentials | None:
    """Credentials from the Docker CLI's config file, as Docker picks them.

    ``credHelpers[host]`` first, else ``credsStore``: a configured helper alone decides (it saying
    "not found" means anonymous, as in Docker); only without one is ``auths[host]`` read.
    """
    config = _docker_config()
    helper = _for_registry(config.get("credHelpers"), registry) or config.get("credsStore")
    if isinstance(helper, str) and helper:
        found = helper_get(helper, _server_url(registry))
        return None if found is None else _from_helper(*found)
    entry = _for_registry(config.get("auths"), registry)
    return _decode_auth(entry) if isinstance(entry, dict) else None


def _docker_config() -> dict:
    path = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _for_registry(table: object, registry: str) -> object:
    """``table``'s entry for ``registry``; keys may be URLs (``https://index.docker.io/v1/``)."""
    wanted = DOCKER_HUB_NAMES if is_docker_hub(registry) else {registry}
    items = table.items() if isinstance(table, dict) else ()
    return next((value for key, value in items if _config_host(key) in wanted), None)


def _server_url(registry: str) -> str:
    """The server URL ``docker login`` stores credentials under: Docker Hub's is its v1 index URL."""
    return DOCKER_HUB_SERVER_URL if is_docker_hub(registry) else registry


def _from_helper(username: str, secret: str) -> Credentials | None:
    if username == TOKEN_USERNAME:
        return Credentials(identity_token=secret)
    return Credentials(username, secret) if username else None


def parse_challenge(header: str | None) -> Challenge | None:
    """``Bearer realm="https://auth",service="reg",scope="repository:a:pull"`` → a :class:`Challenge`."""
    scheme, _, rest = (header or "").strip().partition(" ")
    if not scheme:
        return None
    params = {name.lower(): quoted if quoted or not bare else bare for name, quoted, bare in _CHALLENGE_PARAM.findall(rest)}
    return Challenge(scheme.lower(), params)


class Authenticator:
    """The ``Authorization`` header of one registry client, renewed when the registry challenges it."""

    def __init__(self, session: requests.Session, registry: str, credentials: Credentials | None, scope: str) -> None:
        self.session = session
        self.registry = registry
        self.credentials = credentials
        self.default_scope = scope
        self.header = f"Bearer {credentials.token}" if credentials and credentials.token else None

    def answer(self, www_authenticate: str | None) -> bool:
        """Prepare a header answering this 401 challenge; ``False`` if there is nothing new to try."""
        challenge = parse_challenge(www_authenticate)
        if challenge is None or (self.credentials and self.credentials.token):
            return False
        if challenge.scheme == "basic":
            return self._use_basic()
        if challenge.scheme == "bearer" and "realm" in challenge.params:
            header = f"Bearer {self._fetch_token(challenge)}"
            renewed, self.header = header != self.header, header
            return renewed
        return False

    def _token_request(self, challenge: Challenge, scopes: list[str]) -> requests.Response:
        """GET with basic credentials, or, for an identity token, the OAuth2 refresh-token POST Docker sends."""
        realm, service = challenge.params["realm"], challenge.params.get("service", "")
        if self.credentials and self.credentials.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": self.credentials.identity_token,
                    "service": service, "scope": " ".join(scopes), "client_id": OAUTH_CLIENT_ID}  # fmt: skip
            return self.session.post(realm, data=form, timeout=TOKEN_TIMEOUT)
        auth = (self.credentials.username, self.credentials.password) if self.credentials else None
        return self.session.get(realm, params={"service": service, "scope": scopes}, auth=auth, timeout=TOKEN_TIMEOUT)

    def _use_basic(self) -> bool:
        if self.credentials is None or self.credentials.identity_token or self.header is not None:
            return False
        user_pass = f"{self.credentials.username}:{self.credentials.password}".encode()
        self.header = "Basic " + base64.b64encode(user_pass).decode()
        return True

    def _fetch_token(self, challenge: Challenge) -> str:
        scopes = (challenge.params.get("scope") or self.default_scope).split()
        try:
            response = self._token_request(challenge, scopes)
        except requests.RequestException as exc:
            raise RegistryUnreachable(f"cannot reach the token service of {self.registry}: {exc}") from None
        if response.status_code in (401, 403):
            raise Unauthorized(f"Unauthorized: {self.registry} refused the credentials for {' '.join(scopes)}")
        return _token_from(response, self.registry)


def _token_from(response: requests.Response, registry: str) -> str:
    try:
        response.raise_for_status()
        body = response.json()
        token = body.get("token") or body.get("access_token")
    except (requests.RequestException, ValueError, AttributeError) as exc:
        raise RegistryError(f"the token service of {registry} failed: {exc}") from None
    if not isinstance(token, str) or not token:
        raise RegistryError(f"the token service of {registry} sent no token")
    return token


def _config_host(key: str) -> str:
    """``https://index.docker.io/v1/`` → ``index.docker.io``: config keys may be URLs."""
    return key.split("://", 1)[-1].split("/", 1)[0].lower()


def _decode_auth(entry: dict) -> Credentials | None:
    if entry.get("username") and entry.get("password"):
        return Credentials(str(entry["username"]), str(entry["password"]))
    try:
        user, sep, password = base64.b64decode(entry.get("auth") or "", validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return Credentials(user, password) if sep and user else None
