"""docs/deploy.md holds where it can be checked here: the settings, commands and modules it names
exist, its links land on headings, and its "Checking it works" block, run as written (but for the
host, the socket and the key file), passes against a real nginx and dmr with API keys on.

The steps that need root on a real host (apt, useradd, systemctl) cannot run here; the unit they
install is checked by ``test_systemd_unit.py``.
"""

import dataclasses
import importlib.util
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from dmr_core.cli import main as dmr_cli
from dmr_core.settings import PROJECT_ROOT, Settings
from dmr_core.testing import start_unix_server, stop_server
from tests.support.nginx import nginx_in_front_of

DOCS = PROJECT_ROOT / "docs"
DEPLOY_DOC = DOCS / "deploy.md"
CONF_FILES = [PROJECT_ROOT / "conf" / "dmr.service", PROJECT_ROOT / "conf" / "nginx.conf"]
SOURCES = [*(PROJECT_ROOT / "dmr_core").rglob("*.py"), *(PROJECT_ROOT / "plugins").glob("*/dmr_*/**/*.py")]
SECTIONS = ["A Unix socket", "systemd", "nginx", "Keys, CORS and limits", "Logs", "Checking it works"]
KEY = "doc-check-key-0123456789abcdef"


def names_dmr_reads() -> set[str]:
    """``DMR_<FIELD>`` for every setting, and every other ``"DMR_…"`` name dmr's code looks up."""
    settings = {f"DMR_{field.name.upper()}" for field in dataclasses.fields(Settings)}
    looked_up = {name for path in SOURCES for name in re.findall(r"[\"'](DMR_[A-Z0-9_]+)[\"']", path.read_text())}
    return settings | looked_up


def test_every_dmr_variable_the_deploy_files_name_is_one_dmr_reads():
    named = {name for path in [DEPLOY_DOC, *CONF_FILES] for name in re.findall(r"\bDMR_[A-Z0-9_]+", path.read_text())}
    assert "DMR_BIND" in named and "DMR_NO_SUCH_SETTING" not in names_dmr_reads()
    assert named - names_dmr_reads() == set()


def dmr_invocations(text: str) -> list[list[str]]:
    """Arguments of each ``dmr`` command the doc shows: in shell blocks and in inline code."""
    text = text.replace("\\\n", " ")
    lines = re.findall(r"bin/dmr ([^\n`|]+)", text) + re.findall(r"`(?:[A-Z_]+=\S+ )*dmr ([^`]+)`", text)
    return [shlex.split(line, comments=True) for line in lines]


def test_every_dmr_command_and_option_the_doc_shows_exists():
    invocations = dmr_invocations(DEPLOY_DOC.read_text())
    assert len(invocations) >= 5
    for verb, *arguments in invocations:
        assert verb in dmr_cli.commands, f"docs/deploy.md: `dmr {verb}` is no command"
        options = {opt for param in dmr_cli.commands[verb].params for opt in param.opts + param.secondary_opts}
        assert {arg for arg in arguments if arg.startswith("-")} <= options, (verb, arguments)


def test_every_python_module_the_doc_runs_exists():
    modules = re.findall(r"python -m ([\w.]+)", DEPLOY_DOC.read_text())
    assert modules and all(importlib.util.find_spec(module) for module in modules), modules


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file (code blocks left out)."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}  # fmt: skip


def links(path: Path) -> list[tuple[Path, str]]:
    """(file, anchor) of each ``[…](file.md#anchor)`` or ``[…](#anchor)`` link in a Markdown file."""
    return [(path.parent / target if target else path, anchor)
            for target, anchor in re.findall(r"\]\(([\w./-]*\.md)?#([\w-]+)\)", path.read_text())]  # fmt: skip


def test_the_doc_has_its_sections_and_every_link_into_or_out_of_it_lands():
    assert {re.sub(r"[^\w\- ]", "", s.lower()).replace(" ", "-") for s in SECTIONS} <= anchors(DEPLOY_DOC)
    all_links = [link for doc in [*DOCS.glob("*.md"), PROJECT_ROOT / "README.md"] for link in links(doc)]
    into = [(target, anchor) for target, anchor in all_links if target.name == "deploy.md"]
    out_of = links(DEPLOY_DOC)
    assert ("a-unix-socket" in {anchor for _, anchor in into}) and out_of
    broken = [(target.name, anchor) for target, anchor in into + out_of if anchor not in anchors(target)]
    assert broken == []


def checking_block() -> str:
    """The first ``sh`` block of the doc's "Checking it works" section."""
    section = DEPLOY_DOC.read_text().split("\n## Checking it works\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```sh\n(.*?)```", section, flags=re.DOTALL).group(1)


@pytest.fixture(scope="module")
def keyed_deployment(model_store, tmp_path_factory):
    """dmr with an API key file, on a Unix socket, behind nginx running conf/nginx.conf."""
    keys = tmp_path_factory.mktemp("keys") / "keys"
    keys.write_text(KEY + "\n")
    server = start_unix_server(model_store, DMR_API_KEYS_FILE=str(keys))
    try:
        with nginx_in_front_of(server.unix_socket) as nginx:
            yield server, nginx, keys
    finally:
        stop_server(server)


def as_run_here(block: str, server, nginx, keys: Path) -> str:
    """The block with this test's host, socket, key file and certificate; no sudo (the test owns all)."""
    block = block.replace("sudo ", "").replace("/etc/dmr/keys", str(keys))
    block = block.replace("/run/dmr/dmr.sock", str(server.unix_socket))
    block = block.replace("HOST=dmr.example.com", f"HOST=localhost:{nginx.https_port}")
    block = block.replace("http://$HOST", f"http://localhost:{nginx.http_port}")
    return block.replace("curl ", f"curl --cacert {nginx.certificate} ")


def test_the_checking_block_runs_as_written_against_nginx_and_dmr(keyed_deployment):
    block = checking_block()
    assert "dmr.example.com" in block and "/run/dmr/dmr.sock" in block and "/etc/dmr/keys" in block
    script = as_run_here(block, *keyed_deployment)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=300)
    out = result.stdout
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr}\n{out[-2000:]}"
    assert out.startswith("dmr is running\n") and out.count('"id":"ai/smollm2:latest"') == 2
    assert "data: [DONE]" in out and "without a key: 401" in out and "plain HTTP: 301 to https://localhost/" in out
    assert "dmr_pool_up 1.0" in out and re.search(r'dmr_runners_loaded\{[^}]*model="ai/smollm2"[^}]*\} 1\.0', out)
