"""What docs/scaling.md and deploy/nginx promise, checked without starting dmr: every ``DMR_*`` name
the page gives is a setting dmr reads, its links lead somewhere, and the shipped nginx site passes
``nginx -t`` with Debian's njs module (only addresses, port, certificate and paths rewritten)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from dmr_core.peers import peer_urls
from dmr_core.settings import PROJECT_ROOT, Settings, load_settings
from dmr_core.testing import free_port, short_tempdir
from tests.scaleout.cluster import MAIN_CONF, NJS_MODULE, site_for_test, user_line
from tests.support.nginx import self_signed_certificate

PAGE = PROJECT_ROOT / "docs" / "scaling.md"


def test_every_dmr_variable_on_the_page_is_a_setting() -> None:
    named = set(re.findall(r"\bDMR_[A-Z_]+[A-Z]\b", PAGE.read_text()))
    settings = {f"DMR_{name.upper()}" for name in Settings.__dataclass_fields__}
    assert {"DMR_PULL_ON_DEMAND", "DMR_PEERS", "DMR_PEER_TIMEOUT"} <= named
    assert named <= settings, f"not dmr settings: {sorted(named - settings)}"


def test_the_scale_out_variables_parse(tmp_path) -> None:
    (tmp_path / "empty.toml").write_text("")
    config = {"DMR_CONFIG": str(tmp_path / "empty.toml")}
    settings = load_settings({"DMR_PULL_ON_DEMAND": "1", "DMR_PEERS": "http://a:1,b:2", "DMR_PEER_TIMEOUT": "0.25",
                              **config})  # fmt: skip
    assert (settings.pull_on_demand, settings.peers, settings.peer_timeout) == (True, "http://a:1,b:2", 0.25)
    assert load_settings(config).pull_on_demand is False, "off by default, as in DMR"
    assert peer_urls(settings.peers) == ["http://a:1", "http://b:2"]


def test_local_links_lead_to_files() -> None:
    targets = re.findall(r"\]\((?!https?://)([^)#]+)", PAGE.read_text())
    assert targets
    missing = [target for target in targets if not (PAGE.parent / target).exists()]
    assert not missing, missing


def test_the_shipped_site_passes_nginx_t() -> None:
    if shutil.which("nginx") is None or not NJS_MODULE.exists():
        pytest.fail("nginx with njs is missing: `make system-deps` installs nginx and libnginx-mod-http-js")
    prefix = short_tempdir("dmr-cluster-t-")
    try:
        cert, key = self_signed_certificate(prefix)
        hosts = [f"127.0.0.1:{free_port()}" for _ in range(3)]
        (prefix / "dmr-cluster.conf").write_text(site_for_test(prefix, hosts, free_port(), cert, key))
        (prefix / "nginx.conf").write_text(MAIN_CONF.format(module=NJS_MODULE, prefix=prefix, user=user_line()))
        result = subprocess.run(["nginx", "-t", "-c", str(prefix / "nginx.conf"), "-p", str(prefix),
                                 "-e", str(prefix / "error.log")], capture_output=True, text=True, timeout=60)  # fmt: skip
        assert result.returncode == 0, result.stderr
    finally:
        shutil.rmtree(prefix, ignore_errors=True)
