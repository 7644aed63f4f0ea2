"""The web page's tests: Debian's headless Chromium driven by Playwright, against real servers.

Chromium is ``/usr/bin/chromium`` (Debian's ``chromium`` package, ``make system-deps``): nothing is
downloaded, Playwright only drives it. Screenshots go to a directory of the run (printed at the end
of the session) and, with ``DMR_SCREENSHOTS=DIR`` (``DMR_SCREENSHOTS=docs/images`` for the README),
are copied there too.

A page served by dmr calls dmr's API from its own origin, ``http://127.0.0.1:<port>``, and a
browser sends that ``Origin`` with every POST and DELETE, same-origin or not. dmr's CORS check
(:mod:`dmr_core.cors`) accepts a server's own page at a default host name, so these servers run
with no CORS setting: the tests prove the page works as a user starts dmr.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from dmr_core.store.layout import ModelStore
from dmr_core.testing import DmrServer, free_port, short_tempdir, stop_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
VIEWPORT = {"width": 1280, "height": 800}


@pytest.fixture(scope="session")
def chromium() -> Iterator:
    """One headless Chromium for the session (Playwright's sync API)."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium package is needed: make system-deps (apt-get install chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(chromium) -> Iterator:
    """A fresh browser context and page (its own sessionStorage and localStorage)."""
    context = chromium.new_context(viewport=VIEWPORT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"the page's scripts threw: {errors}"


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Iterator:
    """``shoot(page, name)``: a PNG of the page in the run's directory (and in ``DMR_SCREENSHOTS``)."""
    directory = tmp_path_factory.mktemp("screenshots")
    copy_to = os.environ.get("DMR_SCREENSHOTS")

    def shoot(page, name: str) -> Path:
        path = directory / f"{name}.png"
        page.screenshot(path=str(path))
        if copy_to:
            Path(copy_to).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(copy_to) / path.name)
        return path

    yield shoot
    print(f"\nweb page screenshots: {directory}" + (f" (copied to {copy_to})" if copy_to else ""))


def start_page_server(store: Path, **extra_env: str) -> DmrServer:
    """A server on a port of its own, with no CORS setting (its page is same-origin)."""
    port = free_port()
    return DmrServer(store=store, pool_dir=short_tempdir("dmr-pool-"), port=port, extra_env=extra_env).start()


@pytest.fixture(scope="module")
def web_server(smollm2_gguf) -> Iterator[DmrServer]:
    """A server with its own store holding ``ai/smollm2:latest``."""
    root = short_tempdir("dmr-store-")
    server = None
    try:
        ModelStore(root).import_gguf(smollm2_gguf, "ai/smollm2")
        server = start_page_server(root)
        yield server
    finally:
        if server is not None:
            stop_server(server)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def empty_server() -> Iterator[DmrServer]:
    """A server with an empty store of its own (a pull downloads every byte)."""
    root = short_tempdir("dmr-store-")
    server = None
    try:
        server = start_page_server(root)
        yield server
    finally:
        if server is not None:
            stop_server(server)
        shutil.rmtree(root, ignore_errors=True)
