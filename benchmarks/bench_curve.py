"""The robustness curve from one minimum-norm run against one PGD run per strength, on the same inputs.

Run by hand (no extra dependency)::

    .venv/bin/python -m benchmarks.bench_curve [--model demo|digits|both] [--n 200] [--norm linf|l2|both]

For each model and norm, on the first ``n`` test inputs (attacks run on the correctly classified ones):

* **per-strength PGD** (what the PGD checks did before issue 12): one PGD run of ``steps`` steps
  (step ``2.5 * eps / steps``, one random start) at each of 5 strengths;
* **the check's curve** (:meth:`AttackCheck.curve_white_box`): one Fast Minimum-Norm run of
  ``min_norm_steps`` steps, plus PGD at the default strength; per input the smaller flipping strength.

Prints both curves, their largest gap, wall times (one CPU thread) and model passes (inputs through
the network, forward; the backward passes are counted too) against each method's floor, and writes
``benchmarks/results/curve.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
SWEEPS = {
    "linf": (1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255),
    "l2": (0.1, 0.25, 0.5, 1.0, 2.0),
}
DEFAULT = {"linf": 8 / 255, "l2": 0.5}


def load(which: str, n: int) -> tuple[Any, np.ndarray, np.ndarray, str]:
    """``(roadworthy_model, x, y, name)``."""
    import torch

    if which == "demo":
        from roadworthy.demo import load_demo_data
        from roadworthy.demo.model import load_demo_model

        test = load_demo_data().test
        x, y = test.x[:n].astype(np.float32), test.y[:n].astype(np.int64)
        return load_demo_model(), x, y, "demo road-sign CNN (3x32x32)"
    from tests._models import digits_images, tiny_cnn, train

    from roadworthy.models.torch import TorchModel

    x, y = digits_images()
    idx = np.random.default_rng(0).permutation(len(y))
    tr, te = idx[:1297], idx[1297:]
    module = train(tiny_cnn(), x[tr], y[tr], epochs=15)
    torch.manual_seed(0)
    return TorchModel(module, input_shape=(1, 16, 16)), x[te][:n], y[te][:n], "digits CNN (1x16x16)"


def compare(model: Any, x: np.ndarray, y: np.ndarray, norm: str, steps: int, min_norm_steps: int) -> dict:
    import torch

    from roadworthy.attacks.fmn import fmn
    from roadworthy.attacks.pgd import pgd
    from roadworthy.checks.attack.base import PassCounter

    sweep, default = SWEEPS[norm], DEFAULT[norm]
    correct = model.predict(x).argmax(axis=1) == y
    xt, yt = torch.from_numpy(x[correct]), torch.from_numpy(y[correct])
    n = int(correct.sum())

    def pgd_broken(counter: PassCounter, eps: float, seed: int) -> np.ndarray:
        gen = torch.Generator().manual_seed(seed)
        adv = pgd(counter, xt, yt, eps, steps, 2.5 * eps / steps, norm, generator=gen)
        counter.forwards += n  # the check classifies the result again
        with torch.no_grad():
            return (model.forward_torch(adv).argmax(dim=1) != yt).numpy()

    def accuracy(broken: np.ndarray) -> float:
        full = np.zeros(len(y), bool)
        full[correct] = broken
        return float((correct & ~full).mean())

    old = PassCounter(model.forward_torch)
    t0 = time.perf_counter()
    per_eps = [accuracy(pgd_broken(old, e, i)) for i, e in enumerate(sweep)]
    t_old = time.perf_counter() - t0

    new = PassCounter(model.forward_torch)
    t0 = time.perf_counter()
    fixed = pgd_broken(new, default, 99)
    found = fmn(new, xt, yt, norm, steps=min_norm_steps)
    new.forwards += n
    with torch.no_grad():
        confirmed = (model.forward_torch(found.adv).argmax(dim=1) != yt).numpy()
    norms = np.where(confirmed, found.norms.numpy(), np.inf)
    hi = np.minimum(norms, np.where(fixed, default, np.inf))
    ours = [accuracy(hi <= e * (1 + 1e-6)) for e in sweep]
    t_new = time.perf_counter() - t0
    gap = np.array(ours) - np.array(per_eps)
    return {
        "norm": norm,
        "inputs": len(y),
        "attacked": n,
        "eps": list(sweep),
        "per_eps_pgd": per_eps,
        "curve_one_run": ours,
        "min_norm_alone": [accuracy(norms <= e * (1 + 1e-6)) for e in sweep],
        "largest_gap_looser": float(gap.max()),
        "largest_gap_tighter": float(-gap.min()),
        "within_1_point": bool((np.abs(gap) <= 0.01 + 1e-9).all()),
        "seconds_per_eps_pgd": t_old,
        "seconds_curve_one_run": t_new,
        "passes_per_eps_pgd": old.report(n * steps * len(sweep), "attacked x steps x strengths"),
        "passes_curve_one_run": new.report(
            n * (steps + min_norm_steps), "attacked x (steps + min_norm_steps)"
        ),
    }


def markdown(rows: list[dict], meta: dict) -> str:
    out = [
        "# Robustness curve: one minimum-norm run vs one PGD run per strength",
        "",
        f"{meta['machine']}, torch threads 1, PGD {meta['steps']} steps, FMN {meta['min_norm_steps']} steps.",
        "Gap: check's curve minus per-strength PGD (negative: the one-run curve is tighter).",
        "",
        "| model | norm | eps | per-eps PGD | one run | gap | time per-eps / one run | passes / floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        eps = " ".join(f"{e:.4g}" for e in r["eps"])
        a = " ".join(f"{v:.3f}" for v in r["per_eps_pgd"])
        b = " ".join(f"{v:.3f}" for v in r["curve_one_run"])
        gaps = " ".join(f"{u - v:+.3f}" for u, v in zip(r["curve_one_run"], r["per_eps_pgd"], strict=True))
        t = f"{r['seconds_per_eps_pgd']:.1f} s / {r['seconds_curve_one_run']:.1f} s"
        p = f"{r['passes_per_eps_pgd']['ratio']:.2f} / {r['passes_curve_one_run']['ratio']:.2f}"
        out.append(f"| {r['model']} | {r['norm']} | {eps} | {a} | {b} | {gaps} | {t} | {p} |")
    return "\n".join(out) + "\n"


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="both", choices=["demo", "digits", "both"])
    ap.add_argument("--norm", default="both", choices=["linf", "l2", "both"])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--min-norm-steps", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for which in ["demo", "digits"] if args.model == "both" else [args.model]:
        model, x, y, name = load(which, args.n)
        for norm in ["linf", "l2"] if args.norm == "both" else [args.norm]:
            r = {"model": name, **compare(model, x, y, norm, args.steps, args.min_norm_steps)}
            rows.append(r)
            print(
                f"{name} {norm}: per-eps PGD {np.round(r['per_eps_pgd'], 3)} ({r['seconds_per_eps_pgd']:.1f} s), "
                f"one run {np.round(r['curve_one_run'], 3)} ({r['seconds_curve_one_run']:.1f} s), "
                f"passes/floor {r['passes_per_eps_pgd']['ratio']:.2f} vs {r['passes_curve_one_run']['ratio']:.2f}"
            )
    meta = {
        "machine": f"{platform.machine()} {platform.system()}",
        "steps": args.steps,
        "min_norm_steps": args.min_norm_steps,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "curve.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    (RESULTS / "curve.md").write_text(markdown(rows, meta))


if __name__ == "__main__":
    main()
