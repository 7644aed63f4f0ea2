"""``GET /``: API clients keep the plain answer; a browser gets the page, one cached document."""

from __future__ import annotations

import email.utils
import http.client
import re
import time
from urllib.parse import urlsplit

import pytest
import requests

from dmr_core.settings import PROJECT_ROOT
from dmr_core.web import page as web_page

#: What Chromium sends for a page load.
BROWSER_ACCEPT = ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,"
                  "*/*;q=0.8,application/signed-exchange;v=b3;q=0.7")  # fmt: skip


def raw_get(url: str, headers: dict[str, str], method: str = "GET") -> http.client.HTTPResponse:
    """A request with exactly these headers (no default Accept), as curl or an SDK sends it."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.request(method, "/", headers=headers)
    response = connection.getresponse()
    response.body = response.read()
    connection.close()
    return response


@pytest.mark.parametrize("headers", [
    {"Accept": "*/*", "User-Agent": "curl/7.88.1"},  # curl
    {},  # no Accept at all
    {"Accept": "application/json"},  # the SDKs
    {"Accept": "text/plain"},
    {"Accept": "text/html;q=0.5, */*"},  # HTML, but not preferred
], ids=["curl", "no-accept", "json", "plain", "html-not-preferred"])  # fmt: skip
def test_api_clients_keep_the_plain_answer(dmr_server, headers):
    response = raw_get(dmr_server.url, headers)
    assert response.status == 200
    assert response.body == b"dmr is running\n"
    assert response.getheader("Content-Type") == "text/plain; charset=utf-8"
    assert "Accept" in response.getheader("Vary", "")  # caches keep the two answers apart


def test_a_browser_gets_the_page(dmr_server):
    response = requests.get(dmr_server.url + "/", headers={"Accept": BROWSER_ACCEPT}, timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "<title>dmr</title>" in response.text
    # One document: the stylesheet and scripts are inline, nothing else is fetched.
    assert not re.search(r'<script src=|<link rel="stylesheet"', response.text)
    assert "const DmrMarkdown" in response.text and 'getElementById(id)' in response.text
    assert response.headers["Cache-Control"] == "no-cache"
    assert "Accept" in response.headers["Vary"]


def test_the_page_revalidates_with_its_etag(dmr_server):
    first = requests.get(dmr_server.url + "/", headers={"Accept": "text/html"}, timeout=30)
    etag = first.headers["ETag"]
    again = requests.get(dmr_server.url + "/", headers={"Accept": "text/html", "If-None-Match": etag}, timeout=30)
    assert again.status_code == 304 and again.content == b""
    head = raw_get(dmr_server.url, {"Accept": "text/html"}, method="HEAD")
    assert head.status == 200 and head.body == b""
    assert int(head.getheader("Content-Length")) == len(first.content)


def test_only_the_page_own_scripts_may_run(dmr_server):
    response = requests.get(dmr_server.url + "/", headers={"Accept": "text/html"}, timeout=30)
    policy = dict(part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";"))
    scripts = re.findall(r"<script>(.*?)</script>", response.text, re.S)
    assert len(scripts) == 2
    assert policy["script-src"].split() == [web_page._sha256_source(s) for s in scripts]
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'self'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_static_files_ship_with_the_package():
    # setup.cfg's package_data puts them in a wheel (a non-editable install), not only in the checkout.
    from setuptools.config.setupcfg import read_configuration

    patterns = read_configuration(PROJECT_ROOT / "setup.cfg")["options"]["package_data"]["dmr_core.web"]
    shipped = {path.name for pattern in patterns for path in web_page.STATIC.parent.glob(pattern)}
    assert {"index.html", "app.js", "app.css", "markdown.js"} <= shipped
    built = web_page.build_page()
    assert built.html.count(b"<script>") == 2 and built.html.count(b"<style>") == 1


def test_a_static_file_cannot_close_its_own_element(tmp_path):
    for name in ("index.html", "app.css", "markdown.js"):
        (tmp_path / name).write_text((web_page.STATIC / name).read_text())
    (tmp_path / "app.js").write_text('document.write("</script><script>alert(1)")')
    with pytest.raises(ValueError, match="</script"):
        web_page.build_page(tmp_path)


def test_the_date_header_is_the_current_second_and_moves_on(dmr_server):
    """Web workers format ``Date`` once a second (dmr_core.web_worker.HttpDate), never a stale one."""
    dates = []
    for _ in range(2):
        sent = time.time()
        date = email.utils.parsedate_to_datetime(raw_get(dmr_server.url, {}).getheader("Date")).timestamp()
        assert int(sent) <= date <= time.time()  # the header names a whole second: the one it was sent in
        dates.append(date)
        time.sleep(1.1)
    assert dates[1] > dates[0]
