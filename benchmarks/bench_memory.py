"""Peak memory of single checks at 224 px on a cheap model: what the check itself holds, not the model.

Run by hand::

    .venv/bin/python -m benchmarks.bench_memory --images 500 --checks attack.fgsm attack.sticker

A random-weight CNN whose forward pass is cheap at 3x224x224 (one strided convolution, pooling, a linear
layer), so the peak is what the check holds (input copies, adversarial copies, pasted batches, gradient
batches) rather than a large model's activations. ``--images`` evaluation images and ``--train``
training images of 224 px (smooth random images; labels are the model's own predictions, so every input
is correct and every input gets attacked), the ``standard`` budget's parameters with ``n_samples`` set to
``--images`` (no plan shrink). Each check runs alone in a fresh process; the peak resident memory of the
check (``VmHWM``, reset when the check starts, as ``checks[].peak_rss_mb`` does) and the resident memory
before it are written to ``benchmarks/results/memory.<label>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
SIZE = 224


def cheap_model() -> Any:
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 8, stride=8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(128, 10),
    ).eval()


def images(n: int, seed: int) -> np.ndarray:
    """Smooth random images: 28x28 noise upsampled to 224 px (float32 NCHW in [0, 1])."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.1, 0.9, size=(n, 3, SIZE // 8, SIZE // 8)).astype(np.float32)
    return np.ascontiguousarray(base.repeat(8, axis=2).repeat(8, axis=3))


def one_check(check_id: str, n_images: int, n_train: int) -> dict[str, Any]:
    """Run one check in this process and measure its peak (the worker of :func:`main`)."""
    import dataclasses

    import torch

    from roadworthy import plan
    from roadworthy.checks import CHECKS, load_builtin_checks
    from roadworthy.checks.base import Context
    from roadworthy.data.base import Dataset
    from roadworthy.models.torch import TorchModel

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    model = TorchModel(cheap_model(), input_shape=(3, SIZE, SIZE))
    names = [str(i) for i in range(10)]
    x, x_tr = images(n_images, 0), images(n_train, 1)
    data = Dataset(
        x=x, y=model.predict(x).argmax(axis=1).astype(np.int64), modality="image", class_names=names
    )
    train = Dataset(
        x=x_tr, y=model.predict(x_tr).argmax(axis=1).astype(np.int64), modality="image", class_names=names
    )
    ctx = Context(model=model, data=data, train_data=train, budget="standard", seed=0)
    load_builtin_checks()
    cls = CHECKS[check_id]
    check = cls(budget="standard")
    check.params = dataclasses.replace(check.params, n_samples=n_images)
    ctx.clean_pred  # noqa: B018 - shared by every check, computed before the window
    before = plan._status_kb("VmRSS") or 0
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    with plan.peak_window(out):
        result = check.run(ctx)
    seconds = time.perf_counter() - t0
    return {
        "check": check_id,
        "images": n_images,
        "train_images": n_train,
        "rss_before_mb": before / 1024,
        "peak_rss_mb": out.get("peak_rss_mb"),
        "held_by_check_mb": None if "peak_rss_mb" not in out else out["peak_rss_mb"] - before / 1024,
        "seconds": seconds,
        "robust_accuracy": result.metrics.get(f"{check_id}.robust_accuracy"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--checks", nargs="+", default=["attack.fgsm", "attack.sticker"])
    ap.add_argument("--label", default="224px")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(one_check(args.worker, args.images, args.train)))
        return
    rows = []
    for check_id in args.checks:
        cmd = [sys.executable, "-m", "benchmarks.bench_memory", "--worker", check_id]
        cmd += ["--images", str(args.images), "--train", str(args.train)]
        proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "loadavg": os.getloadavg()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"memory.{args.label}.json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n"
    )
    lines = [
        f"# Peak memory per check, {args.images} images of 224 px, standard parameters, cheap model",
        "",
        f"{meta['machine']}, {meta['cpus']} CPUs, load average {meta['loadavg'][0]:.1f} at the end.",
        "",
        "| check | RSS before (MiB) | peak during the check (MiB) | held by the check (MiB) | seconds |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['check']} | {r['rss_before_mb']:.0f} | {r['peak_rss_mb']:.0f} | {r['held_by_check_mb']:.0f} "
            f"| {r['seconds']:.1f} |"
        )
    (RESULTS / f"memory.{args.label}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
