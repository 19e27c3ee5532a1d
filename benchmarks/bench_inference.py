"""Inference cost and memory of a ResNet-18 at 224 px: channels-last against the default layout, and the
peak RSS of a quick run before and after streaming the shifted and OOD batches (issue 12, items 2, 4, 5).

Run by hand from the repository root::

    .venv/bin/python -m benchmarks.bench_inference --images 50 --before d281c7b

1. **Layout.** The ResNet-18 of :mod:`benchmarks.bench_scale` (random weights, 10 classes) wrapped as a
   :class:`~roadworthy.models.torch.TorchModel` twice, with ``channels_last=False`` and with the default
   (channels-last for 2-D conv networks), timed in the same process, interleaved (A, B, A, B, ...; the
   best of the rounds): forward ms per sample on a batch, and forward+backward (the input gradient an
   attack takes). The largest output difference between the two is printed.
2. **Peak RSS.** ``roadworthy.check`` on the ResNet-18 saved as TorchScript, ``--images`` photo crops of
   224 px, quick budget, the ``--suite`` suites (default ``shift`` and ``ood``: the paths that shift and
   generate images), each in a fresh process so that ``ru_maxrss`` is that run's own: with this tree's
   ``src`` ("after") and, with ``--before REV``, with ``git archive REV src`` ("before"), back to back.

The machine's load average is recorded with the numbers: on a shared machine compare the two sides of
one run (ratios), not runs made at different times. Results go to ``benchmarks/results/inference.json``
and ``inference.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"


def layout_timings(batch: int = 16, rounds: int = 3) -> dict[str, Any]:
    """Forward and forward+backward ms per sample, default layout against channels-last, interleaved."""
    import torch
    from benchmarks.bench_scale import photo_crops, resnet18

    from roadworthy.models.torch import TorchModel

    x, _ = photo_crops(batch)
    models = {
        "default": TorchModel(resnet18(), input_shape=(3, 224, 224), channels_last=False),
        "channels_last": TorchModel(resnet18(), input_shape=(3, 224, 224)),
    }
    fwd: dict[str, list[float]] = {k: [] for k in models}
    bwd: dict[str, list[float]] = {k: [] for k in models}
    for m in models.values():
        m.predict(x)  # warm-up: oneDNN primitives, allocator

    def grad_step(m: Any) -> None:
        t = torch.from_numpy(x).requires_grad_(True)
        torch.autograd.grad(m.forward_torch(t).sum(), t)

    for _ in range(rounds):
        for name, m in models.items():
            start = time.perf_counter()
            m.predict(x)
            fwd[name].append((time.perf_counter() - start) / batch * 1e3)
            start = time.perf_counter()
            grad_step(m)
            bwd[name].append((time.perf_counter() - start) / batch * 1e3)
    a, b = models["default"].predict(x), models["channels_last"].predict(x)
    return {
        "batch": batch,
        "rounds": rounds,
        "channels_last_chosen": models["channels_last"].channels_last,
        "forward_ms_per_sample": {k: round(min(v), 2) for k, v in fwd.items()},
        "forward_backward_ms_per_sample": {k: round(min(v), 2) for k, v in bwd.items()},
        "forward_speedup": round(min(fwd["default"]) / min(fwd["channels_last"]), 2),
        "forward_backward_speedup": round(min(bwd["default"]) / min(bwd["channels_last"]), 2),
        "max_abs_output_difference": float(np.abs(a - b).max()),
        "max_abs_output": float(np.abs(a).max()),
    }


def rss_run(images: int, suites: list[str]) -> dict[str, Any]:
    """One quick run in this process; its own peak RSS (``ru_maxrss``) and wall time."""
    import resource

    import torch
    from benchmarks.bench_scale import photo_crops, resnet18

    import roadworthy

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resnet18.pt"
        torch.jit.save(torch.jit.trace(resnet18(), torch.zeros(1, 3, 224, 224)), str(path))
        x, y = photo_crops(images)
        start = time.perf_counter()
        report = roadworthy.check(str(path), (x, y), budget="quick", suites=suites)
        wall = time.perf_counter() - start
    return {
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "report_peak_rss_mb": getattr(report.run, "peak_rss_mb", None) if report.run else None,
        "checks": len(report.checks),
        "errors": [r.id for r in report.checks if r.status == "error"],
    }


def _in_subprocess(src: Path, images: int, suites: list[str]) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{ROOT}", ROADWORTHY_PLAIN_PROGRESS="1")
    cmd = [sys.executable, "-m", "benchmarks.bench_inference", "--rss-run", "--images", str(images)]
    for s in suites:
        cmd += ["--suite", s]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _export_src(rev: str, into: Path) -> Path:
    archive = into / "src.tar"
    with archive.open("wb") as fh:
        subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, stdout=fh, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--suite", action="append")
    ap.add_argument("--before", help="git revision whose src/ is the 'before' side of the peak-RSS runs")
    ap.add_argument("--rss-run", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--skip-layout", action="store_true")
    args = ap.parse_args()
    suites = args.suite or ["shift", "ood"]
    if args.rss_run:
        print(json.dumps(rss_run(args.images, suites)))
        return
    import torch

    result: dict[str, Any] = {
        "model": "ResNet-18 (10 classes, random weights), 224 px",
        "machine": platform.platform(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__,
        "load_average_before": [round(v, 2) for v in os.getloadavg()],
    }
    if not args.skip_layout:
        result["layout"] = layout_timings()
        print(json.dumps(result["layout"], indent=1))
    rss: dict[str, Any] = {"images": args.images, "budget": "quick", "suites": suites}
    with tempfile.TemporaryDirectory() as tmp:
        if args.before:
            rss["before_rev"] = args.before
            rss["before"] = _in_subprocess(_export_src(args.before, Path(tmp)), args.images, suites)
            print("before", rss["before"])
        rss["after"] = _in_subprocess(ROOT / "src", args.images, suites)
        print("after", rss["after"])
    result["peak_rss"] = rss
    result["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "inference.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
