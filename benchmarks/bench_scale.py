"""Real model sizes: a ResNet-18 at 224 px and the demo model at 32 px, timed end to end with peak memory.

Run by hand::

    .venv/bin/python -m benchmarks.bench_scale resnet --images 500 --budget quick
    .venv/bin/python -m benchmarks.bench_scale demo --images 1000 --budget standard

* ``resnet``: a ResNet-18 (He et al., 2016; 11.7 M parameters with 1000 classes, here 10 classes) written
  below without torchvision, random weights, saved as TorchScript and loaded from the file like a user's
  model; ``--images`` evaluation images of 224x224 cut from scikit-learn's two sample photographs
  (random crops, resized, flipped), labels from a fixed random draw, and the last layer fitted to them
  (:func:`fit_head`) so that the model is right on almost every input, as a trained one would be.
* ``demo``: the packaged road-sign model on ``--images`` generated 32 px test images.

Each run goes through :func:`roadworthy.check` in this process; the result (wall time, peak RSS, the
plan and each check's estimated and actual seconds) is written to ``benchmarks/results/scale.<name>.json``.
Targets (issue 12): ResNet-18, 500 images, 2 cores: quick within 10 min, standard within 30 min, peak RSS
under 4 GB; demo, 1,000 images, standard within 5 min on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"


def resnet18(n_classes: int = 10) -> Any:
    """ResNet-18: a 7x7 stem, four stages of two basic blocks (64-512 channels), global pooling, linear."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            skip = x if self.down is None else self.down(x)
            return torch.relu(out + skip)

    class ResNet18(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
            )
            layers, cin = [], 64
            for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
                layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
                cin = cout
            self.layers = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, n_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))

    torch.manual_seed(0)
    return ResNet18().eval()


def photo_crops(n: int, size: int = 224, n_classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images ``(n, 3, size, size)`` in [0, 1]: random crops of sklearn's sample photos, resized."""
    import cv2
    from sklearn.datasets import load_sample_images

    photos = [np.asarray(p, dtype=np.float32) / 255 for p in load_sample_images().images]
    rng = np.random.default_rng(seed)
    x = np.empty((n, 3, size, size), dtype=np.float32)
    for i in range(n):
        p = photos[i % len(photos)]
        side = int(rng.integers(size // 2, min(p.shape[:2])))
        r, c = int(rng.integers(0, p.shape[0] - side)), int(rng.integers(0, p.shape[1] - side))
        crop = cv2.resize(p[r : r + side, c : c + side], (size, size), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        x[i] = crop.transpose(2, 0, 1)
    return x, rng.integers(0, n_classes, n)


def fit_head(module: Any, x: np.ndarray, y: np.ndarray) -> float:
    """Fit the ResNet's last layer to the labels (a linear probe on its random features).

    With random weights everywhere the network predicts almost one class, so the labels would be
    right for a tenth of the inputs and the attacks would have almost nothing to attack. A logistic
    regression on the 512 pooled features (scikit-learn) gives the head real decision boundaries and
    the evaluation inputs a clean accuracy near 1: every check then works on every input, as it would
    on a trained model. Returns the head's accuracy on ``x``.
    """
    import torch
    from sklearn.linear_model import LogisticRegression

    with torch.inference_mode():
        feats = torch.cat(
            [
                torch.flatten(module.pool(module.layers(module.stem(torch.from_numpy(x[i : i + 32])))), 1)
                for i in range(0, len(x), 32)
            ]
        ).numpy()
    mu, sd = feats.mean(0), feats.std(0) + 1e-6
    clf = LogisticRegression(C=10.0, max_iter=2000).fit((feats - mu) / sd, y)
    w = clf.coef_ / sd
    b = clf.intercept_ - (clf.coef_ * mu / sd).sum(1)
    with torch.no_grad():
        module.fc.weight.copy_(torch.from_numpy(w.astype(np.float32)))
        module.fc.bias.copy_(torch.from_numpy(b.astype(np.float32)))
    return float(clf.score((feats - mu) / sd, y))


def table(result: dict) -> str:
    """The per-check plan against what happened, as Markdown."""
    plan = result.get("plan") or {}
    rows = [
        "| check | samples (budget) | changed | est. s | actual s | passes used / estimated | widest 95% interval | peak RSS MiB |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for c in plan.get("checks", []):
        est, used = c.get("estimated_passes"), c.get("passes_used")
        ratio = f"{used / est:.2f}" if est and used is not None else "-"
        width = c.get("interval_width")
        rows.append(
            f"| {c['id']} | {c.get('samples')} ({c.get('default_samples')}) | "
            f"{', '.join(f'{k}={v}' for k, v in (c.get('changed') or {}).items()) or '-'} | "
            f"{c.get('estimated_s', 0):.1f} | {c.get('actual_s') or 0:.1f} | {ratio} | "
            f"{'-' if width is None else f'{width:.3f}'} | {c.get('peak_rss_mb') or '-'} |"
        )
    return "\n".join(rows)


def run(name: str, images: int, budget: str, time_limit: str | None, suites: list[str] | None) -> dict:
    import torch

    import roadworthy
    from roadworthy.plan import cpu_count

    with tempfile.TemporaryDirectory() as tmp:
        if name == "resnet":
            module = resnet18()
            x, y = photo_crops(images)
            fit_head(module, x, y)
            path = Path(tmp) / "resnet18.pt"
            torch.jit.save(torch.jit.trace(module, torch.zeros(1, 3, 224, 224)), str(path))
            model: Any = str(path)
            data: Any = (x, y)
        else:
            from roadworthy.demo import load_demo_data
            from roadworthy.demo.model import load_demo_model

            demo = load_demo_data(seed=0)
            model = load_demo_model()
            data = (demo.test.x[:images], demo.test.y[:images])
        start = time.perf_counter()
        report = roadworthy.check(model, data, budget=budget, time_limit=time_limit, suites=suites, say=print)
        wall = time.perf_counter() - start
    return {
        "model": name,
        "images": images,
        "budget": budget,
        "time_limit": time_limit,
        "suites": suites,
        "wall_s": round(wall, 1),
        "run": report.run.model_dump() if report.run else None,
        "plan": report.plan.model_dump() if report.plan else None,
        "verdict": report.verdict,
        "cores": cpu_count(),
        "machine": platform.platform(),
        "torch": torch.__version__,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=("resnet", "demo"))
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--budget", default="quick")
    ap.add_argument("--time-limit")
    ap.add_argument("--suite", action="append")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    result = run(args.model, args.images, args.budget, args.time_limit, args.suite)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"scale.{args.model}.{args.budget}{args.tag}.json"
    out.write_text(json.dumps(result, indent=1))
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    head = (
        f"# {args.model}, {args.images} images, budget {args.budget}"
        f"{', time limit ' + args.time_limit if args.time_limit else ''}\n\n"
        f"wall {result['wall_s']} s, peak RSS {result['run']['peak_rss_mb']:.0f} MiB, "
        f"{result['cores']} cores, load average at the end {load}\n\n"
    )
    out.with_suffix(".md").write_text(head + table(result) + "\n")
    print(f"wall {result['wall_s']} s, peak RSS {result['run']['peak_rss_mb']:.0f} MiB -> {out}")


if __name__ == "__main__":
    main()
