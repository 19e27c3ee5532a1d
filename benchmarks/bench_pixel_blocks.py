"""Few-pixel and line attacks at 224 px: blocks of 16 inputs (the sharded path) against one block of 32.

Run by hand::

    .venv/bin/python -m benchmarks.bench_pixel_blocks [--repeats 2] [--generations 5]

Since stop 22 the sparse attacks run block by block (16 inputs, the sequential rule between blocks, so Ray
workers give the same numbers); before, the first 32 inputs ran as one wave. In the ResNet-18 standard run
(``results/scale.resnet.standard.*``) they took 232/253 s against 181/190 s before, for the same number of
model passes. Each DE generation renders its candidates and sends them to the model in calls of at most
``EVAL_BYTES`` (64 MiB) of images: 3 inputs' populations of 30 at 224 px, whatever the block size, so
running several blocks' populations in one call could not make the model's batches larger at 224 px;
it would only save the last, partial call of each block's generation.

This measures that side by side, alternating, in one process (torch threads 1), on two cheap random
CNNs at 3x224x224 (one strided convolution, then average pooling (``avg``: no input breaks) or max pooling
(``max``: one bright pixel can move a pooled feature, so inputs break and drop out, as in a real run)), the
``standard`` parameters with ``n_samples=32`` and ``generations`` as given (the ResNet plan's 5): per
block size, wall seconds, model images and calls, milliseconds per image. Written to
``benchmarks/results/pixel_blocks.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"


def model(pool: str) -> Any:
    import torch
    from torch import nn

    torch.manual_seed(0)
    pooling = nn.AdaptiveAvgPool2d(4) if pool == "avg" else nn.AdaptiveMaxPool2d(4)
    return nn.Sequential(
        nn.Conv2d(3, 8, 8, stride=8), nn.ReLU(), pooling, nn.Flatten(), nn.Linear(128, 10)
    ).eval()


def one(cls: Any, pool: str, wave: int, generations: int) -> dict[str, Any]:
    import torch
    from benchmarks.bench_memory import images

    import roadworthy.checks.attack.base as attack_base
    from roadworthy.checks.base import Context
    from roadworthy.data.base import Dataset
    from roadworthy.models.torch import TorchModel

    module = model(pool)
    x = images(64, 0)
    with torch.no_grad():
        y = module(torch.from_numpy(x)).argmax(1).numpy()  # the model's own labels: every input correct
    data = Dataset(x=x, y=y, modality="image", class_names=[str(i) for i in range(10)])
    ctx = Context(model=TorchModel(module, input_shape=(3, 224, 224)), data=data, budget="standard", seed=0)
    ctx.clean_pred  # noqa: B018 - shared by every check, not the check's cost
    calls: list[int] = []
    probs = ctx.predict_probs

    def counted(a: np.ndarray) -> np.ndarray:
        calls.append(len(a))
        return probs(a)

    ctx.predict_probs = counted  # type: ignore[method-assign]
    saved = attack_base.SEQUENTIAL_WAVE
    attack_base.SEQUENTIAL_WAVE = wave
    try:
        params = dataclasses.replace(
            cls.Params(**cls.budget_params["standard"]), n_samples=32, generations=generations
        )
        t0 = time.perf_counter()
        out = cls(params, budget="standard").run(ctx)
        seconds = time.perf_counter() - t0
    finally:
        attack_base.SEQUENTIAL_WAVE = saved
    return {
        "check": cls.id,
        "model": pool,
        "block": wave,
        "seconds": seconds,
        "images": int(sum(calls)),
        "calls": len(calls),
        "ms_per_image": 1e3 * seconds / max(1, sum(calls)),
        "robust_accuracy": out.metrics[f"{cls.id}.robust_accuracy"],
    }


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any], generations: int, repeats: int) -> str:
    out = [
        "# Few-pixel and line attacks at 224 px: blocks of 16 inputs vs one block of 32",
        "",
        f"{meta['machine']}, torch threads 1, load average {meta['load']:.1f} at start, "
        f"{meta['load_end']:.1f} at the end (shared machine: compare the columns, not absolute times). "
        f"32 inputs, standard popsize, {generations} generations; {repeats} alternating repeats, "
        "medians. Time ratio: blocks of 16 / one block of 32.",
        "",
        "| check | model | robust accuracy (16 / 32) | images (16 / 32) | calls (16 / 32) "
        "| ms per image (16 / 32), range over repeats | time ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for check in ("attack.pixels", "attack.line"):
        for pool in ("avg", "max"):
            by = {
                w: [r for r in rows if r["check"] == check and r["model"] == pool and r["block"] == w]
                for w in (16, 32)
            }
            med = {w: float(np.median([r["seconds"] for r in by[w]])) for w in by}
            ms = {w: float(np.median([r["ms_per_image"] for r in by[w]])) for w in by}
            span = {
                w: f"{min(r['ms_per_image'] for r in by[w]):.2f}-{max(r['ms_per_image'] for r in by[w]):.2f}"
                for w in by
            }
            out.append(
                f"| {check} | {pool} | {by[16][0]['robust_accuracy']:.3f} / {by[32][0]['robust_accuracy']:.3f} "
                f"| {by[16][0]['images']} / {by[32][0]['images']} | {by[16][0]['calls']} / {by[32][0]['calls']} "
                f"| {ms[16]:.2f} ({span[16]}) / {ms[32]:.2f} ({span[32]}) | {med[16] / med[32]:.2f} |"
            )
    return "\n".join(out) + "\n"


def main() -> None:
    import torch

    from roadworthy.checks.attack.pixels import FewPixelAttack, LineAttack

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--generations", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    meta = {"machine": f"{platform.machine()} {platform.system()}", "load": os.getloadavg()[0]}
    rows = []
    for rep in range(args.repeats):
        for pool in ("avg", "max"):
            for cls in (FewPixelAttack, LineAttack):
                for wave in (16, 32) if rep % 2 == 0 else (32, 16):
                    r = {"repeat": rep, **one(cls, pool, wave, args.generations)}
                    rows.append(r)
                    print(r, flush=True)
    meta["load_end"] = os.getloadavg()[0]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pixel_blocks.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    (RESULTS / "pixel_blocks.md").write_text(markdown(rows, meta, args.generations, args.repeats))
    print(markdown(rows, meta, args.generations, args.repeats))


if __name__ == "__main__":
    main()
