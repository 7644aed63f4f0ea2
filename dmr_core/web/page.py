"""The page's one HTML document, and the ``/`` view that chooses between it and the plain answer.

``static/index.html`` links its stylesheet and scripts like any page (so it can be opened from disk
while working on it); here they are put inline, which makes the page one request, keeps it working
when API keys guard every other path, and lets a Content-Security-Policy allow exactly these
scripts by hash and nothing else (no inline code can run even if rendered model output had some).
The document is built once per web worker, on first use, and sent with an ETag: a browser
revalidates it (``no-cache``) and gets a 304 until dmr is upgraded.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from flask import Response, request

STATIC = Path(__file__).with_name("static")
PLAIN_ANSWER = "dmr is running\n"
_STYLESHEET = re.compile(r'<link rel="stylesheet" href="([\w.-]+\.css)">')
_SCRIPT = re.compile(r'<script src="([\w.-]+\.js)"></script>')


@dataclass(frozen=True)
class Page:
    html: bytes
    etag: str
    csp: str


def wants_html(accept) -> bool:
    """Whether a request's ``Accept`` (werkzeug's MIMEAccept) prefers HTML, as a browser's does.

    ``*/*`` (curl, requests, most SDKs) ties text/plain with text/html, and a tie keeps the plain
    answer; a browser's ``text/html,…,*/*;q=0.8`` ranks HTML first."""
    return accept.best_match(["text/plain", "text/html"]) == "text/html"


def _inline(text: str, tag: str) -> str:
    # An inlined file must not be able to end its own element early.
    if f"</{tag}" in text.lower():
        raise ValueError(f"a static file meant for <{tag}> contains </{tag}")
    return text


def _sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def build_page(static: Path = STATIC) -> Page:
    """index.html with its stylesheets and scripts inline, its ETag and its CSP."""
    styles, scripts = [], []

    def style(match: re.Match) -> str:
        styles.append("\n" + _inline((static / match.group(1)).read_text(encoding="utf-8"), "style"))
        return f"<style>{styles[-1]}</style>"

    def script(match: re.Match) -> str:
        scripts.append("\n" + _inline((static / match.group(1)).read_text(encoding="utf-8"), "script"))
        return f"<script>{scripts[-1]}</script>"

    html = _SCRIPT.sub(script, _STYLESHEET.sub(style, (static / "index.html").read_text(encoding="utf-8")))
    body = html.encode()
    csp = ("default-src 'none'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
           f"frame-ancestors 'none'; style-src {' '.join(map(_sha256_source, styles))}; "
           f"script-src {' '.join(map(_sha256_source, scripts))}")  # fmt: skip
    return Page(body, hashlib.sha256(body).hexdigest()[:32], csp)


@functools.cache
def page() -> Page:
    return build_page()


def root() -> Response:
    """``GET /``: the page for a browser, ``dmr is running`` for everyone else."""
    if not wants_html(request.accept_mimetypes):
        response = Response(PLAIN_ANSWER, mimetype="text/plain")
    else:
        response = _page_response(page())
    response.vary.add("Accept")  # one URL, two answers: caches must keep them apart
    return response


def _page_response(built: Page) -> Response:
    response = Response(built.html, mimetype="text/html")
    response.set_etag(built.etag)
    response.cache_control.no_cache = True  # revalidate each time: a 304 costs nothing
    response.headers.update({"Content-Security-Policy": built.csp, "X-Content-Type-Options": "nosniff",
                             "Referrer-Policy": "same-origin"})  # fmt: skip
    return response.make_conditional(request)
