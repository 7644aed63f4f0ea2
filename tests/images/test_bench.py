"""``bench/images.py`` still runs end to end: its smoke run (``--quick``) with the CPU report and
the design's floor (``--floor``: ``bench/floor_app.py`` beside the server)."""

import os
import re
import signal
import subprocess
import sys

import pytest

from dmr_core.testing import PROJECT_ROOT

pytestmark = pytest.mark.slow  # a server, a pipeline in-process and a load each: about a minute

RATIO = r"64x64, 2 steps: in-process +([\d.]+) img/s +{side} +([\d.]+) img/s +ratio ([\d.]+)"


def run_bench(*arguments: str, timeout: float = 300) -> str:
    bench = subprocess.Popen([sys.executable, "bench/images.py", *arguments], cwd=PROJECT_ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        output, _ = bench.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(bench.pid, signal.SIGKILL)  # its server too: the session is the bench's own
        output, _ = bench.communicate()
        pytest.fail(f"bench/images.py ran past {timeout} s:\n{output[-3000:]}")
    assert bench.returncode == 0, output[-3000:]
    return output


def test_the_smoke_run_measures_every_side_and_each_server_process():
    output = run_bench("--quick", "--cpu", "2", "--floor")
    for side in ("server", "floor"):
        found = re.search(RATIO.format(side=side), output)
        assert found, output[-3000:]
        local, remote, ratio = map(float, found.groups())
        assert local > 0 and remote > 0 and ratio == pytest.approx(remote / local, abs=0.002)
    cpu = {}
    for name, user in re.findall(r"^  (web worker|pool supervisor|inference worker) +user +([\d.]+) ms", output, re.M):
        cpu[name] = max(cpu.get(name, 0.0), float(user))  # of the web workers, the one that served
    assert set(cpu) == {"web worker", "pool supervisor", "inference worker"}, output[-2000:]
    assert cpu["inference worker"] > cpu["web worker"] > 0  # the picture is drawn in the inference worker
    assert re.search(r"cold model, 64x64: server request to first byte \d+ ms", output)
