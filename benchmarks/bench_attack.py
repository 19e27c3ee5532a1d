"""Attack suite vs IBM ART 1.20.1, side by side on one model and one data set, in one run.

Run by hand (ART is not a dependency; see benchmarks/README.md for how to install it)::

    .venv/bin/python -m benchmarks.bench_attack [--model auto|demo|digits] [--n 500] [--n-black 40]

* PGD-Linf: our :func:`roadworthy.attacks.pgd` and ART's ``ProjectedGradientDescent`` with
  the same eps, steps, step size and one random start, on the same inputs and true labels. Robust accuracy
  must agree within 1 point or be lower (stronger) for us. Wall time (best of 5, interleaved) is compared with the
  floor, ``steps x`` one forward+backward pass over the inputs, and with ART's.
* Square Attack (L-inf) and HopSkipJump (L2): success rate over initially correct inputs at equal query
  budgets. ART's HopSkipJump has no query cap, so its queries are counted through the classifier and our
  cap is set to ART's mean.

Everything runs on one CPU thread (both sides), so the comparison does not depend on the machine's load
from other processes as much. Writes ``benchmarks/results/attack.{json,md}`` for the demo road-sign model and
``benchmarks/results/attack.digits.{json,md}`` for the digits CNN.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"


# ---------------------------------------------------------------------------------------------- setup


def load_model_and_data(which: str, n: int) -> tuple[Any, Any, np.ndarray, np.ndarray, str, tuple, tuple]:
    """``(roadworthy_model, pixel_space_module, x, y, name, mean, std)``."""
    import torch

    if which in ("auto", "demo"):
        try:
            from roadworthy.demo import load_demo_data
            from roadworthy.demo.model import load_demo_model, shipped_facts

            model = load_demo_model()
            test = load_demo_data().test
            facts = shipped_facts()
            return (
                model,
                model.module,
                test.x[:n].astype(np.float32),
                test.y[:n].astype(np.int64),
                "demo road-sign CNN (3x32x32)",
                tuple(facts["mean"]),
                tuple(facts["std"]),
            )
        except Exception as exc:
            if which == "demo":
                raise
            print(f"demo model not available ({type(exc).__name__}: {exc}); using the digits CNN")
    from tests._models import digits_images, tiny_cnn, train

    from roadworthy.models.torch import TorchModel

    x, y = digits_images()
    idx = np.random.default_rng(0).permutation(len(y))
    tr, te = idx[:1297], idx[1297:]
    module = train(tiny_cnn(), x[tr], y[tr], epochs=15)
    torch.manual_seed(0)
    return (
        TorchModel(module, input_shape=(1, 16, 16)),
        module,
        x[te][:n],
        y[te][:n],
        "digits CNN (1x16x16)",
        (0.0,),
        (1.0,),
    )


def art_classifier(module: Any, shape: tuple, n_classes: int, mean: tuple, std: tuple) -> Any:
    import torch
    from art.estimators.classification import PyTorchClassifier

    c = shape[0]
    pre = (
        np.array(mean, np.float32).reshape(-1, 1, 1) * np.ones((c, 1, 1), np.float32),
        np.array(std, np.float32).reshape(-1, 1, 1) * np.ones((c, 1, 1), np.float32),
    )

    class Counting(PyTorchClassifier):
        queries = 0

        def predict(
            self, x: np.ndarray, batch_size: int = 128, training_mode: bool = False, **kw: Any
        ) -> np.ndarray:
            Counting.queries += len(x)
            x = np.asarray(x, np.float32)  # ART's HopSkipJump hands over float64 samples
            return super().predict(x, batch_size=batch_size, training_mode=training_mode, **kw)

    return Counting(
        model=module,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=shape,
        nb_classes=n_classes,
        clip_values=(0.0, 1.0),
        preprocessing=pre,
        device_type="cpu",
    )


def timed(fn: Any, repeats: int = 3) -> tuple[Any, float]:
    """``(result of the first run, median wall time)``."""
    times, out = [], None
    for i in range(repeats):
        t = time.perf_counter()
        r = fn()
        times.append(time.perf_counter() - t)
        if i == 0:
            out = r
    return out, statistics.median(times)


# ---------------------------------------------------------------------------------------------- PGD


def bench_pgd(
    model: Any,
    module: Any,
    x: np.ndarray,
    y: np.ndarray,
    mean: tuple,
    std: tuple,
    eps_list: list[float],
    steps: int,
) -> list[dict]:
    import torch
    from art.attacks.evasion import ProjectedGradientDescent

    from roadworthy.attacks import input_gradient, pgd

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    f = model.forward_torch
    clf = art_classifier(module, x.shape[1:], model.n_classes, mean, std)
    onehot = np.eye(model.n_classes, dtype=np.float32)[y]

    def acc(adv: np.ndarray) -> float:
        return float((model.predict(adv).argmax(1) == y).mean())

    def floor_pass() -> None:
        for i in range(0, len(x), 256):
            input_gradient(f, xt[i : i + 256], yt[i : i + 256])

    rows = []
    for eps in eps_list:
        step = 2.5 * eps / steps
        art = ProjectedGradientDescent(
            clf,
            norm=np.inf,
            eps=eps,
            eps_step=step,
            max_iter=steps,
            num_random_init=1,
            batch_size=256,
            verbose=False,
        )

        def run_ours(e: float = eps, s: float = step) -> np.ndarray:
            gen = torch.Generator().manual_seed(0)
            return pgd(f, xt, yt, e, steps, s, "linf", 1, True, generator=gen).numpy()

        def run_art(a: Any = art) -> np.ndarray:
            np.random.seed(0)
            torch.manual_seed(0)
            return a.generate(x, onehot)

        # Interleaved repeats, best of 5: other processes on the machine only ever add time.
        ours, theirs = run_ours(), run_art()
        t_pass, t_ours, t_art = [], [], []
        for _ in range(5):
            t_pass.append(timed(floor_pass, 1)[1])
            t_ours.append(timed(run_ours, 1)[1])
            t_art.append(timed(run_art, 1)[1])
        t_pass, t_ours, t_art = min(t_pass), min(t_ours), min(t_art)
        for adv in (ours, theirs):
            assert np.abs(adv - x).max() <= eps + 1e-5 and adv.min() >= 0 and adv.max() <= 1
        rows.append(
            {
                "eps": eps,
                "eps_text": f"{round(eps * 255)}/255",
                "steps": steps,
                "step_size": step,
                "n": len(x),
                "clean_accuracy": acc(x),
                "robust_accuracy_ours": acc(ours),
                "robust_accuracy_art": acc(theirs),
                "time_ours_s": t_ours,
                "time_art_s": t_art,
                "floor_s": steps * t_pass,
                "ratio_to_floor": t_ours / (steps * t_pass),
                "speedup_vs_art": t_art / t_ours,
            }
        )
        print(
            f"PGD eps={eps:.4f}: ours {acc(ours):.3f} in {t_ours:.2f}s, ART {acc(theirs):.3f} in {t_art:.2f}s, floor {steps * t_pass:.2f}s"
        )
    return rows


# ---------------------------------------------------------------------------------------------- black box


def bench_square(
    model: Any,
    module: Any,
    x: np.ndarray,
    y: np.ndarray,
    mean: tuple,
    std: tuple,
    eps: float,
    queries: int,
    art_iters: int,
    seeds: int = 3,
) -> dict:
    """Success rates averaged over ``seeds`` runs of each side (one run on a hundred inputs is noisy).

    ART's loop queries the model three times per iteration (the current point's label, its loss, the
    candidate's loss), so ``art_iters = queries // 3`` gives it the same number of model queries as ours;
    ``art_iters = queries - 1`` the same number of iterations (three times the queries).
    """
    from art.attacks.evasion import SquareAttack

    from roadworthy.attacks.square import square_attack

    ok = model.predict(x).argmax(1) == y
    xc, yc = x[ok], y[ok]
    clf = art_classifier(module, x.shape[1:], model.n_classes, mean, std)
    s_ours, s_art, q_ours, q_art, t_ours, t_art = [], [], [], [], 0.0, 0.0
    for seed in range(seeds):
        t = time.perf_counter()
        ours, q = square_attack(model.predict, xc, yc, eps, queries, 0.8, np.random.default_rng(seed))
        t_ours += time.perf_counter() - t
        np.random.seed(seed)
        clf.__class__.queries = 0
        t = time.perf_counter()
        art = SquareAttack(
            clf,
            norm=np.inf,
            max_iter=art_iters,
            eps=eps,
            p_init=0.8,
            nb_restarts=1,
            batch_size=256,
            verbose=False,
        )
        theirs = art.generate(xc, np.eye(model.n_classes)[yc])
        t_art += time.perf_counter() - t
        for adv in (ours, theirs):
            assert np.abs(adv - xc).max() <= eps + 1e-5
        s_ours.append(float((model.predict(ours).argmax(1) != yc).mean()))
        s_art.append(float((model.predict(theirs).argmax(1) != yc).mean()))
        q_ours.append(float(q.mean()))
        q_art.append(clf.__class__.queries / max(1, len(xc)))
    row = {
        "eps": eps,
        "query_budget": queries,
        "art_max_iter": art_iters,
        "art_budget": "equal queries" if art_iters < queries - 1 else "equal iterations (3x queries)",
        "n": len(xc),
        "seeds": seeds,
        "success_ours": float(np.mean(s_ours)),
        "success_art": float(np.mean(s_art)),
        "success_ours_per_seed": s_ours,
        "success_art_per_seed": s_art,
        "mean_queries_ours": float(np.mean(q_ours)),
        "mean_queries_art": float(np.mean(q_art)),
        "time_ours_s": t_ours / seeds,
        "time_art_s": t_art / seeds,
    }
    print(
        f"Square eps={eps:.4f} Q={queries} ART iters={art_iters}: ours {row['success_ours']:.3f}, ART {row['success_art']:.3f}"
    )
    return row


def bench_hsj(
    model: Any,
    module: Any,
    x: np.ndarray,
    y: np.ndarray,
    mean: tuple,
    std: tuple,
    max_iter: int,
    eps_l2: list[float],
) -> dict:
    from art.attacks.evasion import HopSkipJump

    from roadworthy.attacks.hopskipjump import hop_skip_jump
    from roadworthy.checks.attack import _common as common
    from roadworthy.models.base import batched  # as the check does: ART's classifier batches by 256 too

    ok = model.predict(x).argmax(1) == y
    xc, yc = x[ok], y[ok]
    clf = art_classifier(module, x.shape[1:], model.n_classes, mean, std)
    clf.__class__.queries = 0
    np.random.seed(0)
    t = time.perf_counter()
    theirs = HopSkipJump(
        clf,
        batch_size=256,
        targeted=False,
        norm=2,
        max_iter=max_iter,
        max_eval=10000,
        init_eval=100,
        init_size=100,
        verbose=False,
    ).generate(xc, np.eye(model.n_classes)[yc])
    t_art = time.perf_counter() - t
    q_art = clf.__class__.queries / max(1, len(xc))
    budget = int(q_art)
    t = time.perf_counter()
    ours, _, q = hop_skip_jump(
        lambda b: batched(model.predict, b, 256).argmax(1),
        xc,
        yc,
        max_queries=budget,
        rng=np.random.default_rng(0),
    )
    t_ours = time.perf_counter() - t

    def dists(adv: np.ndarray) -> np.ndarray:
        d = common.perturbation_norms(xc, adv, "l2")
        return np.where(model.predict(adv).argmax(1) != yc, d, np.inf)

    d_ours, d_art = dists(ours), dists(theirs)
    row = {
        "art_max_iter": max_iter,
        "n": len(xc),
        "mean_queries_art": float(q_art),
        "query_cap_ours": budget,
        "mean_queries_ours": float(q.mean()),
        "median_l2_ours": float(np.median(d_ours)),
        "median_l2_art": float(np.median(d_art)),
        "success_at": {
            f"{e:g}": {"ours": float((d_ours <= e).mean()), "art": float((d_art <= e).mean())} for e in eps_l2
        },
        "time_ours_s": t_ours,
        "time_art_s": t_art,
    }
    print(
        f"HSJ ART max_iter={max_iter} (~{q_art:.0f} queries): median L2 ours {row['median_l2_ours']:.3f}, ART {row['median_l2_art']:.3f}"
    )
    return row


# ---------------------------------------------------------------------------------------------- report


def markdown(res: dict) -> str:
    lines = [
        "# Attack suite vs IBM ART 1.20.1",
        "",
        f"Model: {res['model']}; {res['machine']}; torch {res['torch']}, one thread each side. "
        f"Generated by `benchmarks/bench_attack.py`.",
        "",
        "## PGD-Linf (same eps, steps, step size, one random start, same inputs and labels)",
        "",
        "| eps | steps | n | clean acc | robust acc ours | robust acc ART | ours (s) | ART (s) | floor (s) | ours / floor | ART / ours |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["pgd"]:
        lines.append(
            f"| {r['eps_text']} | {r['steps']} | {r['n']} | {r['clean_accuracy']:.3f} | {r['robust_accuracy_ours']:.3f} | "
            f"{r['robust_accuracy_art']:.3f} | {r['time_ours_s']:.2f} | {r['time_art_s']:.2f} | {r['floor_s']:.2f} | "
            f"{r['ratio_to_floor']:.2f} | {r['speedup_vs_art']:.2f} |"
        )
    lines += [
        "",
        "Floor: `steps x` one forward+backward pass over all inputs (batches of 256). Our PGD drops inputs once "
        "they are misclassified, so it can run below the floor when many inputs fall early.",
        "",
        "## Square Attack (L-inf); queries counted on both sides",
        "",
        "| eps | our query cap | ART budget | n | success ours (mean of 3 seeds) | success ART (mean of 3 seeds) | mean queries ours | mean queries ART | ours (s) | ART (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["square"]:
        lines.append(
            f"| {round(r['eps'] * 255)}/255 | {r['query_budget']} | {r['art_budget']}, max_iter {r['art_max_iter']} | {r['n']} | {r['success_ours']:.3f} | {r['success_art']:.3f} | "
            f"{r['mean_queries_ours']:.0f} | {r['mean_queries_art']:.0f} | {r['time_ours_s']:.2f} | {r['time_art_s']:.2f} |"
        )
    lines += [
        "",
        "## HopSkipJump (L2, labels only); our query cap = ART's mean queries",
        "",
        "| ART max_iter | n | mean queries ART | our cap | median L2 ours | median L2 ART | success @ L2 (ours / ART) | ours (s) | ART (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["hsj"]:
        at = ", ".join(f"{e}: {v['ours']:.2f} / {v['art']:.2f}" for e, v in r["success_at"].items())
        lines.append(
            f"| {r['art_max_iter']} | {r['n']} | {r['mean_queries_art']:.0f} | {r['query_cap_ours']} | {r['median_l2_ours']:.3f} | "
            f"{r['median_l2_art']:.3f} | {at} | {r['time_ours_s']:.2f} | {r['time_art_s']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="auto", choices=["auto", "demo", "digits"])
    ap.add_argument("--n", type=int, default=500, help="inputs for PGD")
    ap.add_argument("--n-black", type=int, default=100, help="inputs for Square Attack")
    ap.add_argument("--n-hsj", type=int, default=40, help="inputs for HopSkipJump (ART's is slow)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--only-hsj", action="store_true", help="rerun HopSkipJump only, updating saved results")
    args = ap.parse_args()
    try:
        import art
    except ImportError:
        raise SystemExit(
            "IBM ART is not installed: see benchmarks/README.md (attack suite) for the install command"
        ) from None
    import torch

    torch.set_num_threads(1)
    model, module, x, y, name, mean, std = load_model_and_data(args.model, args.n)
    digits = x.shape[-1] == 16
    eps_list = [8 / 255, 16 / 255, 32 / 255] if digits else [2 / 255, 4 / 255, 8 / 255]
    stem = "attack.digits" if digits else "attack"  # the demo model's results are the headline
    res: dict[str, Any] = {
        "model": name,
        "art": art.__version__,
        "torch": torch.__version__,
        "machine": f"{platform.processor() or platform.machine()}, Python {platform.python_version()}",
    }
    if args.only_hsj:
        res = json.loads((RESULTS / f"{stem}.json").read_text())
    else:
        res["pgd"] = bench_pgd(model, module, x, y, mean, std, eps_list, args.steps)
        xb, yb = x[: args.n_black], y[: args.n_black]
        sq_eps = [16 / 255, 32 / 255] if digits else [4 / 255, 8 / 255]
        res["square"] = [
            bench_square(model, module, xb, yb, mean, std, e, q, it)
            for e in sq_eps
            for q in (100, 500)
            for it in (max(1, (q - 2) // 3), q - 1)
        ]
    xh, yh = x[: args.n_hsj], y[: args.n_hsj]
    res["hsj"] = [bench_hsj(model, module, xh, yh, mean, std, it, [0.5, 1.0, 2.0]) for it in (5, 15)]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
