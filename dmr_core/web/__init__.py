"""The web page at ``/``: chat with a local model and manage models from a browser.

``GET /`` answers a browser (a request that prefers ``text/html``) with the page, and every other
client (curl, the SDKs, health checks: ``*/*`` or no ``Accept``) with the plain ``dmr is running``
it always had. The page is three static files shipped in the package (``static/``), put together
into one HTML document (:mod:`dmr_core.web.page`): ``/`` is the one path that API keys leave open
by default (``auth_open_paths``), so the page loads before it has a key, then asks for one on its
first 401 and sends it on every API call. The web workers serve it from memory; the inference pool
never sees it. See docs/clients.md ("The web page").
"""

from __future__ import annotations

from flask import Flask

from dmr_core.web.page import root


def install(app: Flask) -> None:
    app.add_url_rule("/", "root", root, methods=["GET", "HEAD"])
