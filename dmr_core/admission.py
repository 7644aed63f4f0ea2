"""What a request must pass before its route runs: CORS, then the API key, then its key's
concurrency limit. Installed by the app factory in one call, before every other request hook (so a
refused request never loads a model for ``X-Preload-Only``); each refusal is a
:class:`~dmr_core.errors.DmrError`, so it takes the dialect's error shape like any other error.

- CORS (:mod:`dmr_core.cors`) comes first: a browser's preflight carries no key, and a disallowed
  Origin is a 403 whether or not a key comes with it.
- API keys (:mod:`dmr_core.auth`), when configured: every path but ``auth_open_paths`` needs one;
  401 with ``WWW-Authenticate: Bearer`` otherwise.
- ``max_body`` for chunked bodies too (Flask checks ``Content-Length`` itself).
- ``max_concurrent_per_key`` (:mod:`dmr_core.keyslots`), with keys configured (without them there
  is no one to count for): inference requests only (:data:`dmr_core.preload.INFERENCE_ENDPOINTS`),
  held until the response's last byte, so a stream counts for as long as it streams.

The model lists answered without Flask (:mod:`dmr_core.fastpath`) step aside whenever a key is
needed, and for any request with an ``Origin``; so both checks cover them.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, g, request

from dmr_core.auth import ApiKeys, accepted_key, key_id
from dmr_core.cors import CorsPolicy, is_preflight
from dmr_core.errors import InvalidApiKey, OriginNotAllowed, RequestTooLarge
from dmr_core.exchanges import ClosingBody
from dmr_core.fastpath import never_on_fast_paths
from dmr_core.keyslots import KeySlots
from dmr_core.preload import INFERENCE_ENDPOINTS
from dmr_core.settings import Settings


def install(app: Flask, settings: Settings) -> None:
    """Add the checks to ``app``, in the order they run (Flask runs request hooks in order)."""
    app.before_request(_cors_check(CorsPolicy.from_settings(settings)))
    app.after_request(_cors_headers)
    keys = ApiKeys.from_settings(settings)
    if keys:  # no keys: no check at all, and the fast paths stay on
        app.before_request(_key_check(keys, frozenset(p.strip() for p in settings.auth_open_paths.split(","))))
    app.before_request(_check_chunked_body_size)
    if keys and settings.max_concurrent_per_key > 0:
        _install_key_slots(app, KeySlots(settings.pool_path / "keys", settings.max_concurrent_per_key))


def _install_key_slots(app: Flask, slots: KeySlots) -> None:
    app.before_request(_slot_taker(slots))
    app.after_request(_hand_slot_to_response)
    app.teardown_request(_release_unhanded_slot)


def _cors_check(cors: CorsPolicy):
    def check_origin() -> Response | None:
        origin = request.headers.get("Origin")
        if origin is None:
            return None
        if not cors.allows(origin, request.headers.get("Host")):
            raise OriginNotAllowed("Origin not allowed")
        g.cors_origin = origin
        if is_preflight(request.method, request.headers):
            answer = Response(status=204, headers=cors.preflight_headers(origin, request.headers))
            del answer.headers["Content-Type"]  # no body
            return answer
        return None

    # Only requests with an Origin concern it: the fast paths may answer the others.
    check_origin.fast_path_applies = lambda environ: "HTTP_ORIGIN" in environ
    return check_origin


def _cors_headers(response: Response) -> Response:
    origin = g.get("cors_origin")
    if origin is not None:
        response.headers.update(CorsPolicy.response_headers(origin))
        response.vary.add("Origin")
    return response


def _key_check(keys: ApiKeys, open_paths: frozenset[str]):
    def check_key() -> None:
        if request.path in open_paths:
            return
        key = accepted_key(keys, request.headers)
        if key is None:
            # The message never repeats what was sent: keys must not reach logs or clients.
            raise InvalidApiKey("a valid API key is required: send it as 'Authorization: Bearer <key>' or 'x-api-key'")
        g.api_key_id = key_id(key)

    return check_key


@never_on_fast_paths  # bodies come with POSTs
def _check_chunked_body_size() -> None:
    """A chunked body (no Content-Length) over ``max_body`` is a 413 too: werkzeug stops reading
    it at the limit and hands on the truncated part without a word. (A body of exactly
    ``max_body`` bytes cannot be told from a longer one here, so it is refused as well.)"""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None and limit and request.method == "POST":
        if len(request.get_data(cache=True)) >= limit:
            raise RequestTooLarge(too_large_message(limit))


def too_large_message(limit: int) -> str:
    return f"request too large: the body is over the {limit} bytes allowed (max_body)"


def _slot_taker(slots: KeySlots):
    @never_on_fast_paths  # inference endpoints are POSTs
    def take_slot() -> None:
        if request.endpoint in INFERENCE_ENDPOINTS and "api_key_id" in g:
            g.key_slot = slots.take(g.api_key_id)

    return take_slot


def _hand_slot_to_response(response: Response) -> Response:
    slot = g.pop("key_slot", None)
    if slot is None:
        return response
    if response.direct_passthrough:  # a stream: werkzeug hands its body to the server as it is
        response.response = ClosingBody(response.response, slot.release)
    else:
        response.call_on_close(slot.release)
    return response


def _release_unhanded_slot(exc: BaseException | None) -> None:
    slot = g.pop("key_slot", None)
    if slot is not None:  # no response was made (an error past the error handler)
        slot.release()
