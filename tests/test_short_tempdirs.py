"""The /tmp directories of a run's servers and stores (``short_tempdir``) go when the run passes,
and stay, named, when it fails: their servers' logs are what one reads then."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from dmr_core.settings import PROJECT_ROOT

INNER_TEST = """
from pathlib import Path
from dmr_core.testing import short_tempdir

def test_makes_a_directory():
    made = short_tempdir("dmr-inner-")
    (made / "server.log").write_text("a log")
    Path({record!r}).write_text(str(made))
    assert {passes}
"""


def inner_run(tmp_path: Path, passes: bool) -> tuple[subprocess.CompletedProcess, Path]:
    record = tmp_path / "made.txt"
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER_TEST.format(record=str(record), passes=passes)))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "dmr_core.testing", "-p", "no:cacheprovider",
                          str(tmp_path / "test_inner.py")], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})  # fmt: skip
    return run, Path(record.read_text())


def test_a_passing_run_removes_its_directories(tmp_path):
    run, made = inner_run(tmp_path, passes=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert not made.exists()


def test_a_failing_run_keeps_them_and_says_so(tmp_path):
    run, made = inner_run(tmp_path, passes=False)
    try:
        assert run.returncode == 1, run.stdout + run.stderr
        assert (made / "server.log").read_text() == "a log"
        assert "dmr: kept the 1 /tmp directories" in run.stdout
    finally:
        shutil.rmtree(made, ignore_errors=True)
