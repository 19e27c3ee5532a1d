"""The robustness curve from one minimum-norm run against one PGD run per strength, on the same inputs.

Run by hand (the ART part needs the reference venv, see ``benchmarks/README.md``)::

    .venv/bin/python -m benchmarks.bench_curve [--model demo|digits|both] [--n 150] [--norm linf|l2|both]
    .benchvenv/bin/python -m benchmarks.bench_curve --art-resnet 16 --model none

For each model and norm, on the check's own sample of ``n`` evaluation inputs (attacks run on the correctly
classified ones), side by side in one process:

* **per-strength PGD** (what the PGD checks did before issue 12): one PGD run of ``steps`` steps
  (step ``2.5 * eps / steps``, one random start, fooled inputs dropped early) at each of 5 strengths;
* **the PGD check** (:meth:`AttackCheck.curve_white_box`, the ``standard`` budget with ``n_samples=n``):
  one minimum-norm run (Fast Minimum-Norm in L-inf, Decoupled Direction and Norm in L2) whose inputs leave
  once broken at or below the smallest strength, plus PGD at the default strength on the inputs that run
  left standing, and PGD at the other strengths on the inputs just above them (``refine_curve``); per
  input the smallest flipping strength;
* **the APGD-CE check** the same way (L-inf only).

Printed and written to ``benchmarks/results/curve.{json,md}``: both curves and their gap, wall times and
their ratio (one CPU thread each), and model passes (forward, verification included; backward counted too)
against the plan's floor for the check (:func:`roadworthy.plan.check_passes`: samples x (steps x restarts +
min_norm_steps)) and against ``samples x steps`` per strength for per-strength PGD.

``--art-resnet N``: the same 5-strength L-inf curve on a ResNet-18 (random weights, 224 px, ``N`` crops of
scikit-learn's sample photographs labelled with the model's own predictions), the PGD check against IBM
ART's ``ProjectedGradientDescent`` run once per strength with the same steps and step size
(``benchmarks/results/curve.resnet_art.{json,md}``).
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


def load(which: str) -> tuple[Any, Any, str]:
    """``(roadworthy_model, evaluation Dataset, name)``."""
    import torch

    from roadworthy.data.base import Dataset

    if which == "demo":
        from roadworthy.demo import load_demo_data
        from roadworthy.demo.model import load_demo_model

        return load_demo_model(), load_demo_data().test, "demo road-sign CNN (3x32x32)"
    from tests._models import digits_images, tiny_cnn, train

    from roadworthy.models.torch import TorchModel

    x, y = digits_images()
    idx = np.random.default_rng(0).permutation(len(y))
    tr, te = idx[:1297], idx[1297:]
    module = train(tiny_cnn(), x[tr], y[tr], epochs=15)
    torch.manual_seed(0)
    data = Dataset(x=x[te], y=y[te], modality="image", class_names=[str(i) for i in range(10)])
    return TorchModel(module, input_shape=(1, 16, 16)), data, "digits CNN (1x16x16)"


def check_for(norm: str, n: int, loss: str = "pgd", min_norm_steps: int | None = None) -> Any:
    from roadworthy.checks.attack.apgd import APGDCE
    from roadworthy.checks.attack.pgd import BUDGETS, PGDL2, PGDLinf

    if loss == "apgd":
        from roadworthy.checks.attack.apgd import BUDGETS as APGD_BUDGETS

        p = {**APGD_BUDGETS["standard"], "n_samples": n, "sweep": SWEEPS[norm], "eps": DEFAULT[norm]}
        if min_norm_steps:
            p["min_norm_steps"] = min_norm_steps
        return APGDCE(APGDCE.Params(**p), budget="standard")
    cls = PGDLinf if norm == "linf" else PGDL2
    p = {**BUDGETS["standard"], "n_samples": n, "sweep": SWEEPS[norm], "eps": DEFAULT[norm]}
    if min_norm_steps:
        p["min_norm_steps"] = min_norm_steps
    return cls(cls.Params(**p), budget="standard")


def per_eps_pgd(
    model: Any,
    xc: np.ndarray,
    yc: np.ndarray,
    norm: str,
    steps: int,
    restarts: int = 1,
    step_steps: int | None = None,
) -> tuple[list, Any, float]:
    """Per strength, which attacked inputs PGD broke (any of ``restarts`` random starts), the pass
    counter, wall seconds. The step is ``2.5 * eps / step_steps`` (default: ``steps``, the usual
    schedule that can just cross the ball once)."""
    import torch

    from roadworthy.attacks.pgd import pgd
    from roadworthy.checks.attack.base import PassCounter

    counter = PassCounter(model.forward_torch)
    xt, yt = torch.from_numpy(xc), torch.from_numpy(yc)
    out = []
    t0 = time.perf_counter()
    for i, e in enumerate(SWEEPS[norm]):
        broken = np.zeros(len(xc), bool)
        for r in range(restarts):
            rows = torch.from_numpy(np.flatnonzero(~broken))
            if len(rows) == 0:
                break
            gen = torch.Generator().manual_seed(1000 * r + i)
            step = 2.5 * e / (step_steps or steps)
            adv = pgd(counter, xt[rows], yt[rows], e, steps, step, norm, generator=gen)
            counter.forwards += len(rows)  # the check classifies the result again
            with torch.no_grad():
                broken[rows.numpy()] |= (model.forward_torch(adv).argmax(dim=1) != yt[rows]).numpy()
        out.append(broken)
    return out, counter, time.perf_counter() - t0


def run_check(check: Any, model: Any, data: Any) -> tuple[Any, float]:
    from roadworthy.checks.base import Context

    ctx = Context(model=model, data=data, budget="standard", seed=0)
    _ = ctx.clean_pred  # the shared clean outputs, computed once per run: not the check's cost
    t0 = time.perf_counter()
    out = check.run(ctx)
    return out, time.perf_counter() - t0


def compare(
    model: Any,
    data: Any,
    norm: str,
    n: int,
    min_norm_steps: int | None = None,
    strong: tuple[int, int] = (100, 5),
    reuse: dict | None = None,
) -> dict:
    from roadworthy.checks.attack import _common as common
    from roadworthy.checks.base import Context
    from roadworthy.plan import check_passes

    check = check_for(norm, n, min_norm_steps=min_norm_steps)
    p = check.params
    ctx = Context(model=model, data=data, budget="standard", seed=0)
    _idx, x, y, pred = common.attack_sample(ctx, n)
    correct = pred == y
    attacked = int(correct.sum())

    def accuracy(broken: np.ndarray) -> float:
        full = np.zeros(len(y), bool)
        full[correct] = broken
        return float((correct & ~full).mean())

    broken, old, t_old = per_eps_pgd(model, x[correct], y[correct], norm, p.steps)
    reference = [accuracy(b) for b in broken]
    # converged: many steps of the 10-step schedule's step size (a step of 2.5 eps / 100 is too short
    # to leave a poor start), several random starts. It does not depend on the check: ``reuse`` (an
    # earlier result's row for the same model, norm, inputs and schedule) saves its ~20 minutes.
    same = reuse is not None and reuse.get("converged_steps_restarts") == list(strong)
    same = (
        same
        and reuse["inputs"] == len(y)
        and reuse["attacked"] == attacked
        and reuse["eps"] == list(SWEEPS[norm])
    )
    if same:
        converged, t_strong = list(reuse["per_eps_pgd_converged"]), reuse["seconds_per_eps_pgd_converged"]
    else:
        strong_broken, _strong_counter, t_strong = per_eps_pgd(
            model, x[correct], y[correct], norm, *strong, step_steps=10
        )
        converged = [accuracy(b) for b in strong_broken]
    out, t_new = run_check(check, model, data)
    name, sweep = check.id, SWEEPS[norm]
    ours = [out.metrics[f"{name}.{common.eps_key(e)}.robust_accuracy"] for e in sweep]
    eff = out.details["efficiency"]
    plan_passes, _ = check_passes(type(check), p, len(data.y))
    gap = np.array(ours) - np.array(reference)
    gap_strong = np.array(ours) - np.array(converged)
    row = {
        "norm": norm,
        "inputs": len(y),
        "attacked": attacked,
        "eps": list(sweep),
        "steps": p.steps,
        "min_norm_steps": p.min_norm_steps,
        "per_eps_pgd": reference,
        "curve_one_run": ours,
        "min_norm_alone": [out.details["min_norm_robust_accuracy"][common.eps_key(e)] for e in sweep],
        "largest_gap_looser": float(gap.max()),
        "largest_gap_tighter": float(-gap.min()),
        "within_1_point_looser": bool((gap <= 0.01 + 1e-9).all()),
        "per_eps_pgd_converged": converged,
        "converged_steps_restarts": list(strong),
        "seconds_per_eps_pgd_converged": t_strong,
        "gap_to_converged": gap_strong.tolist(),
        "within_1_point_of_converged": bool((np.abs(gap_strong) <= 0.01 + 1e-9).all()),
        "seconds_per_eps_pgd": t_old,
        "seconds_check": t_new,
        "time_ratio_check_over_per_eps": t_new / t_old,
        "passes_per_eps_pgd": old.report(attacked * p.steps * len(sweep), "attacked x steps x strengths"),
        "passes_per_eps_pgd_over_plan_floor": old.forwards / (attacked * p.steps),
        "passes_check": eff,
        "plan_estimate_passes": plan_passes,
        "fixed_eps_attacked": out.details["fixed_eps_attacked"],
        "bracket_attacked": out.details.get("bracket_attacked"),
        "bracket_broken": out.details.get("bracket_broken"),
        "converged_reused": bool(same),
    }
    if norm == "linf":
        apgd = check_for(norm, n, "apgd", min_norm_steps)
        a_out, t_apgd = run_check(apgd, model, data)
        row["apgd_ce"] = {
            "curve": [a_out.metrics[f"{apgd.id}.{common.eps_key(e)}.robust_accuracy"] for e in sweep],
            "seconds": t_apgd,
            "passes": a_out.details["efficiency"],
            "plan_estimate_passes": check_passes(type(apgd), apgd.params, len(data.y))[0],
        }
    return row


def art_resnet(n: int, steps: int, min_norm_steps: int) -> dict:
    """The 5-strength L-inf curve on a random ResNet-18 at 224 px: the PGD check vs ART per strength."""
    import torch
    from art.attacks.evasion import ProjectedGradientDescent
    from benchmarks.bench_attack import art_classifier
    from benchmarks.bench_scale import photo_crops, resnet18

    from roadworthy.checks.attack import _common as common
    from roadworthy.checks.attack.pgd import PGDLinf
    from roadworthy.data.base import Dataset
    from roadworthy.models.torch import TorchModel

    module = resnet18()
    model = TorchModel(module, input_shape=(3, 224, 224))
    x, _ = photo_crops(n)
    with torch.no_grad():
        y = module(torch.from_numpy(x)).argmax(1).numpy()  # the model's own labels: every input correct
    data = Dataset(x=x, y=y, modality="image", class_names=[str(i) for i in range(10)])
    sweep = SWEEPS["linf"]
    p = PGDLinf.Params(n_samples=n, steps=steps, min_norm_steps=min_norm_steps, sweep=sweep, eps=8 / 255)
    out, t_ours = run_check(PGDLinf(p, budget="standard"), model, data)
    ours = [out.metrics[f"attack.pgd_linf.{common.eps_key(e)}.robust_accuracy"] for e in sweep]

    clf = art_classifier(module, x.shape[1:], 10, (0.0,), (1.0,))
    onehot = np.eye(10, dtype=np.float32)[y]
    theirs = []
    t0 = time.perf_counter()
    for e in sweep:
        art = ProjectedGradientDescent(
            clf,
            norm=np.inf,
            eps=e,
            eps_step=2.5 * e / steps,
            max_iter=steps,
            num_random_init=1,
            batch_size=64,
            verbose=False,
        )
        np.random.seed(0)
        torch.manual_seed(0)
        adv = art.generate(x, onehot)
        with torch.no_grad():
            theirs.append(float((module(torch.from_numpy(adv)).argmax(1).numpy() == y).mean()))
    t_art = time.perf_counter() - t0
    return {
        "model": "ResNet-18, random weights (3x224x224), labels = its own predictions",
        "images": n,
        "steps": steps,
        "min_norm_steps": min_norm_steps,
        "eps": list(sweep),
        "ours_curve": ours,
        "art_curve": theirs,
        "seconds_ours": t_ours,
        "seconds_art": t_art,
        "speedup_vs_art": t_art / t_ours,
        "passes_ours": out.details["efficiency"],
        "art_passes_floor": n * steps * len(sweep),
    }


def markdown(rows: list[dict], meta: dict) -> str:
    out = [
        "# Robustness curve: one minimum-norm run vs one PGD run per strength",
        "",
        f"{meta['machine']}, torch threads 1, {meta['load']}. The check: the `standard` budget's PGD steps "
        "and `min_norm_steps`, n_samples as shown (one minimum-norm run: FMN in L-inf, DDN in L2; PGD at the default strength on the inputs it "
        "left standing there, and PGD at each other strength on the inputs whose smallest flipping strength "
        "found lies within one sweep step above it, paid from the passes the early stops saved: "
        "`refine_curve`); per-strength PGD with the same steps."
        + (
            " Converged curves marked (reused) are taken from the previous result (same model, norm, inputs "
            "and schedule; they do not depend on the check)."
            if any(r.get("converged_reused") for r in rows)
            else ""
        ),
        "Gap: the check's curve minus per-strength PGD (negative: the check is tighter). Converged: per-strength "
        "PGD run to convergence (steps x random starts as shown, step 2.5 eps / 10, an input counts as broken "
        "when any start "
        "breaks it), the curve the attack would give with unlimited passes; the check's gap to it shows "
        "whether the one-run curve measures the model or the attack's budget. Passes: forward passes "
        "(verification included) / the plan's floor (check: samples x (steps x restarts + min_norm_steps); "
        "per-strength PGD: samples x steps, what the plan estimated for it, and x 5 strengths).",
        "",
        "| model | norm | eps | per-eps PGD | check | gap | converged per-eps PGD | gap to converged "
        "| wall check / per-eps | passes check / floor "
        "| per-eps PGD / floor (x steps, x steps x 5) | APGD-CE passes / floor, wall |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        eps = " ".join(f"{e:.4g}" for e in r["eps"])
        a = " ".join(f"{v:.3f}" for v in r["per_eps_pgd"])
        b = " ".join(f"{v:.3f}" for v in r["curve_one_run"])
        gaps = " ".join(f"{u - v:+.3f}" for u, v in zip(r["curve_one_run"], r["per_eps_pgd"], strict=True))
        t = f"{r['seconds_check']:.1f} s / {r['seconds_per_eps_pgd']:.1f} s = {r['time_ratio_check_over_per_eps']:.2f}"
        pc = f"{r['passes_check']['ratio']:.2f}"
        po = f"{r['passes_per_eps_pgd_over_plan_floor']:.2f}, {r['passes_per_eps_pgd']['ratio']:.2f}"
        ap = "-"
        if "apgd_ce" in r:
            ap = f"{r['apgd_ce']['passes']['ratio']:.2f}, {r['apgd_ce']['seconds']:.1f} s"
        conv = "-"
        conv_gap = "-"
        if "per_eps_pgd_converged" in r:
            steps, restarts = r["converged_steps_restarts"]
            conv = " ".join(f"{v:.3f}" for v in r["per_eps_pgd_converged"]) + f" ({steps} x {restarts})"
            conv += " (reused)" if r.get("converged_reused") else ""
            conv_gap = " ".join(f"{g:+.3f}" for g in r["gap_to_converged"])
        out.append(
            f"| {r['model']} | {r['norm']} | {eps} | {a} | {b} | {gaps} | {conv} | {conv_gap} | {t} | {pc} "
            f"| {po} | {ap} |"
        )
    return "\n".join(out) + "\n"


def markdown_art(r: dict, meta: dict) -> str:
    return "\n".join(
        [
            "# Robustness curve on a ResNet-18 at 224 px: the PGD check vs ART's PGD per strength",
            "",
            f"{meta['machine']}, torch threads 1, {meta['load']}. {r['model']}, {r['images']} images; "
            f"PGD {r['steps']} steps (step 2.5 eps / steps, one random start) on both sides; ours: one FMN run "
            f"({r['min_norm_steps']} steps, inputs leave once broken at the smallest strength) + PGD at 8/255 "
            "on the inputs still standing; ART: ProjectedGradientDescent once per strength.",
            "",
            "| eps | " + " | ".join(f"{e:.4g}" for e in r["eps"]) + " |",
            "|---|" + "---|" * len(r["eps"]),
            "| ours | " + " | ".join(f"{v:.3f}" for v in r["ours_curve"]) + " |",
            "| ART | " + " | ".join(f"{v:.3f}" for v in r["art_curve"]) + " |",
            "",
            f"Wall: ours {r['seconds_ours']:.1f} s, ART {r['seconds_art']:.1f} s ({r['speedup_vs_art']:.1f}x). "
            f"Model passes: ours {r['passes_ours']['forward_passes']} forward / {r['passes_ours']['backward_passes']} "
            f"backward (floor {r['passes_ours']['floor']}), ART's floor {r['art_passes_floor']} forward+backward.",
            "",
        ]
    )


def main() -> None:
    import os

    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="both", choices=["demo", "digits", "both", "none"])
    ap.add_argument("--norm", default="both", choices=["linf", "l2", "both"])
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--min-norm-steps", type=int, default=0, help="override the budget's min_norm_steps")
    ap.add_argument(
        "--art-resnet", type=int, default=0, help="images for the ResNet-18 side by side with ART"
    )
    ap.add_argument("--art-steps", type=int, default=10)
    ap.add_argument("--converged-steps", type=int, default=100, help="steps of the converged per-eps PGD")
    ap.add_argument("--converged-restarts", type=int, default=5, help="its random starts")
    ap.add_argument("--art-min-norm-steps", type=int, default=100)
    ap.add_argument(
        "--reuse-converged",
        action="store_true",
        help="take the converged per-eps PGD curves from results/curve.json where model, norm, inputs and "
        "schedule match (they do not depend on the check)",
    )
    args = ap.parse_args()
    previous = {}
    if args.reuse_converged and (RESULTS / "curve.json").exists():
        previous = {
            (r["model"], r["norm"]): r for r in json.loads((RESULTS / "curve.json").read_text())["rows"]
        }
    torch.set_num_threads(1)
    meta = {
        "machine": f"{platform.machine()} {platform.system()}",
        "load": f"load average {os.getloadavg()[0]:.1f} at start",
    }
    RESULTS.mkdir(exist_ok=True)
    rows = []
    for which in {"both": ["demo", "digits"], "none": []}.get(args.model, [args.model]):
        model, data, name = load(which)
        for norm in ["linf", "l2"] if args.norm == "both" else [args.norm]:
            strong = (args.converged_steps, args.converged_restarts)
            reuse = previous.get((name, norm))
            r = {
                "model": name,
                **compare(model, data, norm, args.n, args.min_norm_steps or None, strong, reuse),
            }
            rows.append(r)
            print(
                f"{name} {norm}: per-eps PGD {np.round(r['per_eps_pgd'], 3)} ({r['seconds_per_eps_pgd']:.1f} s), "
                f"check {np.round(r['curve_one_run'], 3)} ({r['seconds_check']:.1f} s), "
                f"converged per-eps PGD {np.round(r['per_eps_pgd_converged'], 3)}, "
                f"passes/floor check {r['passes_check']['ratio']:.2f}, "
                f"per-eps PGD {r['passes_per_eps_pgd_over_plan_floor']:.2f} (x steps)"
                + (f", APGD-CE {r['apgd_ce']['passes']['ratio']:.2f}" if "apgd_ce" in r else ""),
                flush=True,
            )
    if rows:
        (RESULTS / "curve.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
        (RESULTS / "curve.md").write_text(markdown(rows, meta))
    if args.art_resnet:
        r = art_resnet(args.art_resnet, args.art_steps, args.art_min_norm_steps)
        print(markdown_art(r, meta), flush=True)
        (RESULTS / "curve.resnet_art.json").write_text(json.dumps({"meta": meta, **r}, indent=2) + "\n")
        (RESULTS / "curve.resnet_art.md").write_text(markdown_art(r, meta))


if __name__ == "__main__":
    main()
