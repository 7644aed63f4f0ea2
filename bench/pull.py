"""Pull benchmark: dmr's ``pull_model`` against ``skopeo copy``, from the same local registry.

One run starts Debian's ``docker-registry`` (CNCF distribution) on 127.0.0.1, packages the default
model (~93 MB) and pushes it with ``push_model``; then each round pulls the same artifact into an
empty directory twice, order alternating: with dmr (into an empty store: download, hash, verify,
bundle, index) and with ``skopeo copy --src-tls-verify=false docker://… oci:DIR``. Per round the
ratio is dmr speed / skopeo speed; the report gives the median ratio (target ≥ 0.9) and the
median absolute MB/s (MB = 10^6 bytes) of each.

    .venv/bin/python bench/pull.py [--rounds 7] [--json]

Needs ``docker-registry`` and ``skopeo`` (``make system-deps``). Disk speed dominates on small VMs,
so run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dmr_core import bundled_models  # noqa: E402
from dmr_core.distribution.pull import pull_model  # noqa: E402
from dmr_core.distribution.push import push_model  # noqa: E402
from dmr_core.store.layout import ModelStore  # noqa: E402
from dmr_core.testing import MODELS_CACHE, short_tempdir  # noqa: E402
from tests.support.registry import start_registry  # noqa: E402

REPOSITORY = "ai/smollm2:latest"


def pull_with_dmr(name: str, target: Path) -> float:
    started = time.perf_counter()
    events = list(pull_model(ModelStore(target), name))
    elapsed = time.perf_counter() - started
    if events[-1].message != "Model pulled successfully":
        raise RuntimeError(f"dmr pull ended with {events[-1]}")
    return elapsed


def pull_with_skopeo(name: str, target: Path) -> float:
    command = ["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{name}", f"oci:{target}"]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def run_round(index: int, name: str, scratch: Path) -> dict[str, float]:
    pullers = [("dmr", pull_with_dmr), ("skopeo", pull_with_skopeo)]
    times = {}
    for label, pull in pullers if index % 2 == 0 else reversed(pullers):
        target = scratch / f"{label}-{index}"
        times[label] = pull(name, target)
        shutil.rmtree(target)
    return times


def publish_default_model(workdir: Path, host: str) -> tuple[str, int]:
    gguf = bundled_models.fetch(bundled_models.DEFAULT_MODEL, MODELS_CACHE)
    name = f"{host}/{REPOSITORY}"
    source = ModelStore(workdir / "source")
    source.import_gguf(gguf, name)
    list(push_model(source, name))
    return name, gguf.stat().st_size


def report(rounds: list[dict[str, float]], size: int, as_json: bool) -> None:
    ratios = [r["skopeo"] / r["dmr"] for r in rounds]
    speeds = {label: statistics.median(size / r[label] / 1e6 for r in rounds) for label in ("dmr", "skopeo")}
    summary = {"bytes": size, "rounds": len(rounds), "median_ratio": statistics.median(ratios),
               "min_ratio": min(ratios), "max_ratio": max(ratios), "dmr_MBps": speeds["dmr"],
               "skopeo_MBps": speeds["skopeo"]}  # fmt: skip
    if as_json:
        print(json.dumps(summary))
        return
    for index, r in enumerate(rounds):
        print(f"round {index + 1}: dmr {r['dmr']:.3f}s  skopeo {r['skopeo']:.3f}s  ratio {ratios[index]:.2f}")
    print(f"pull of {size / 1e6:.1f} MB: dmr {speeds['dmr']:.0f} MB/s, skopeo {speeds['skopeo']:.0f} MB/s; "
          f"median speed ratio dmr/skopeo {summary['median_ratio']:.2f} "
          f"(range {summary['min_ratio']:.2f}–{summary['max_ratio']:.2f}; target ≥ 0.9)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print one JSON summary line")
    args = parser.parse_args()
    workdir = short_tempdir("dmr-bench-pull-")
    registry, _ = start_registry(workdir)
    try:
        name, size = publish_default_model(workdir, registry.host)
        pull_with_dmr(name, workdir / "warm-up")  # page cache and registry warm for both
        rounds = [run_round(index, name, workdir) for index in range(args.rounds)]
    finally:
        registry.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    report(rounds, size, args.json)


if __name__ == "__main__":
    main()
