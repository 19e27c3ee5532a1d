"""Integrity suite vs cleanlab, side by side on the same data and the same model features, in one run.

Run by hand (from the repository root)::

    .venv/bin/python -m benchmarks.bench_integrity [--sizes 10000 100000] [--repeats 3] [--no-demo]

* Synthetic data with known label flips (scikit-learn ``make_classification``, 10 classes, 10% of the
  labels moved to a random other class) at each size: our ``integrity.label_issues`` check end to end (the
  features standing in for a model's penultimate layer), cleanlab's documented recipe (out-of-sample
  probabilities with ``cross_val_predict(LogisticRegression(), X, y, cv=5, method="predict_proba")``, then
  ``cleanlab.filter.find_label_issues``), and cleanlab's ``Datalab`` with the label issue type only (once
  given the recipe's probabilities, once given only the features, its own kNN path). Precision, recall,
  F1 against the flips, and wall time (best of ``--repeats``; the recipe's and Datalab's times include the
  cross-validation they need).
* The demo's poisoned road-sign training split (20 stop signs labelled speed_limit_30) with the shipped
  model's penultimate features, same three contenders; plus our ``integrity.poisoning`` verdict on the
  poisoned split and on the clean split (``load_demo_data(poison_rate=0.0)``), which must stay silent.

All contenders run on one BLAS/OpenMP thread. Targets: F1 at least the recipe's and time at most its time; on the demo, label-issue recall >= 0.8 of
the poisoned rows and a poisoning verdict naming speed_limit_30, none on the clean split.
Writes ``benchmarks/results/integrity.json`` and ``benchmarks/results/integrity.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"


class FeatureModel:
    """A stand-in model whose penultimate features are the given rows (looked up by row content)."""

    format = "function"
    output = "logits"
    white_box = False

    def __init__(self, n_classes: int, dim: int) -> None:
        from roadworthy.models.base import InputSpec

        self.n_classes = n_classes
        self.input_spec = InputSpec(modality="tabular", shape=(dim,))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.zeros((len(x), self.n_classes), np.float32)

    def features(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float32)


def scores(flagged: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    hits = len(np.intersect1d(flagged, truth))
    p = hits / len(flagged) if len(flagged) else 0.0
    r = hits / len(truth) if len(truth) else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4), "n_flagged": len(flagged)}


def best_time(fn: Callable[[], np.ndarray], repeats: int) -> tuple[np.ndarray, float]:
    best, out = float("inf"), np.array([], int)
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


# ---------------------------------------------------------------------------------------------- contenders


def ours(train: Any, model: Any, cached_features: np.ndarray | None = None) -> Callable[[], np.ndarray]:
    from roadworthy.checks.base import Context
    from roadworthy.checks.integrity.label_issues import LabelIssues

    def run() -> np.ndarray:
        ctx = Context(model=model, data=train, train_data=train, budget="standard", seed=0)
        if cached_features is not None:  # the same model features both sides get, computed once
            ctx._cache["train_features"] = cached_features
        return np.array(LabelIssues().run(ctx).details["indices"], int)

    return run


def cleanlab_recipe(x: np.ndarray, y: np.ndarray) -> Callable[[], np.ndarray]:
    def run() -> np.ndarray:
        from cleanlab.filter import find_label_issues
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_predict

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probs = cross_val_predict(LogisticRegression(), x, y, cv=5, method="predict_proba")
            return np.asarray(
                find_label_issues(labels=y, pred_probs=probs, return_indices_ranked_by="self_confidence")
            )

    return run


def datalab(x: np.ndarray, y: np.ndarray, with_probs: bool) -> Callable[[], np.ndarray]:
    def run() -> np.ndarray:
        from cleanlab import Datalab
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_predict

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lab = Datalab(data={"label": y}, label_name="label", verbosity=0)
            if with_probs:
                probs = cross_val_predict(LogisticRegression(), x, y, cv=5, method="predict_proba")
                lab.find_issues(pred_probs=probs, issue_types={"label": {}})
            else:
                lab.find_issues(features=x, issue_types={"label": {}})
            issues = lab.get_issues("label")
        return np.flatnonzero(issues["is_label_issue"].to_numpy())

    return run


# ---------------------------------------------------------------------------------------------- cases


def synthetic(n: int, seed: int = 0, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=n,
        n_features=32,
        n_informative=16,
        n_redundant=8,
        n_classes=10,
        n_clusters_per_class=1,
        class_sep=2.0,
        flip_y=0.0,
        random_state=seed,
    )
    rng = np.random.default_rng(seed)
    flips = np.sort(rng.choice(n, size=int(noise * n), replace=False))
    y = y.copy()
    y[flips] = (y[flips] + rng.integers(1, 10, size=len(flips))) % 10
    return x.astype(np.float32), y.astype(np.int64), flips


def run_case(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    truth: np.ndarray,
    train: Any,
    model: Any,
    features: np.ndarray | None,
    repeats: int,
) -> list[dict[str, Any]]:
    rows = []
    contenders = {
        "roadworthy integrity.label_issues": ours(train, model, features),
        "cleanlab recipe (cross_val_predict + find_label_issues)": cleanlab_recipe(x, y),
        "cleanlab Datalab, label issues, given the recipe's pred_probs": datalab(x, y, True),
        "cleanlab Datalab, label issues, given features (kNN)": datalab(x, y, False),
    }
    for who, fn in contenders.items():
        flagged, seconds = best_time(fn, repeats)
        row = {
            "case": name,
            "n": len(y),
            "contender": who,
            **scores(flagged, truth),
            "seconds": round(seconds, 3),
        }
        print(
            f"{name:34s} {who:62s} P={row['precision']:.3f} R={row['recall']:.3f} F1={row['f1']:.3f} "
            f"n={row['n_flagged']:6d} {seconds:8.2f}s",
            flush=True,
        )
        rows.append(row)
    return rows


def demo_cases(repeats: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from roadworthy.checks.base import Context
    from roadworthy.checks.integrity.poisoning import Poisoning
    from roadworthy.demo import load_demo_data
    from roadworthy.demo.model import load_demo_model

    model = load_demo_model()
    demo = load_demo_data()
    feats = model.features(demo.train.x[:3000])
    feats = np.concatenate([feats, model.features(demo.train.x[3000:])])
    rows = run_case(
        "demo road signs, poisoned split",
        feats,
        demo.train.y,
        demo.poisoned_indices,
        demo.train,
        model,
        feats,
        repeats,
    )

    poisoning: dict[str, Any] = {}
    for split, data in (("poisoned", demo.train), ("clean", load_demo_data(poison_rate=0.0).train)):
        ctx = Context(model=model, data=demo.test, train_data=data, seed=0)
        ctx._cache["train_features"] = feats
        t = time.perf_counter()
        out = Poisoning().run(ctx)
        seconds = time.perf_counter() - t
        n_label_issues = len(ours(data, model, feats)())
        flagged = np.array(out.details["indices"], int)
        poisoning[split] = {
            "suspect_classes": out.details["suspect_classes"],
            "verdicts": out.details["verdicts"],
            "summary": out.summary,
            "suspect_count": int(out.metrics["integrity.poisoning.suspect_count"]),
            "score": out.metrics["integrity.poisoning.score"],
            "seconds": round(seconds, 2),
            "label_issues_flagged": n_label_issues,
            **(
                {"vs_poisoned_indices": scores(flagged, demo.poisoned_indices)} if split == "poisoned" else {}
            ),
        }
        print(f"poisoning check, {split} split: {out.summary} ({seconds:.1f}s)", flush=True)
    return rows, poisoning


def write(rows: list[dict[str, Any]], poisoning: dict[str, Any], meta: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "integrity.json").write_text(
        json.dumps({"meta": meta, "label_issues": rows, "poisoning": poisoning}, indent=2) + "\n"
    )
    lines = [
        "# Integrity suite vs cleanlab",
        "",
        f"cleanlab {meta['cleanlab']}, scikit-learn {meta['sklearn']}, Python {meta['python']}; "
        f"{meta['machine']}; every contender on one BLAS thread; best of {meta['repeats']} runs (100k: 1).",
        "",
        "## Label issues: precision, recall and F1 against the planted flips / poisoned rows",
        "",
        "| case | n | contender | precision | recall | F1 | flagged | seconds |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['n']} | {r['contender']} | {r['precision']:.3f} | {r['recall']:.3f} | "
            f"{r['f1']:.3f} | {r['n_flagged']} | {r['seconds']:.2f} |"
        )
    if poisoning:
        lines += [
            "",
            "## Poisoning check on the demo's training split",
            "",
            "| split | suspect classes | suspects | score | seconds | label issues flagged | summary |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for split, p in poisoning.items():
            lines.append(
                f"| {split} | {', '.join(p['suspect_classes']) or '-'} | {p['suspect_count']} | "
                f"{p['score']:.2f} | {p['seconds']:.1f} | {p['label_issues_flagged']} | {p['summary']} |"
            )
        pr = poisoning.get("poisoned", {}).get("vs_poisoned_indices")
        if pr:
            lines += [
                "",
                f"Poisoning suspects vs the 20 poisoned rows: precision {pr['precision']:.3f}, "
                f"recall {pr['recall']:.3f}.",
            ]
    (RESULTS / "integrity.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-demo", action="store_true")
    args = parser.parse_args(argv)
    try:
        import cleanlab
        import sklearn
    except ImportError:
        parser.exit(
            2, "cleanlab is not installed: .venv/bin/pip install cleanlab (see benchmarks/README.md)\n"
        )

    import torch
    from threadpoolctl import threadpool_limits

    from roadworthy.data.base import Dataset

    # every contender on one BLAS/OpenMP thread (cleanlab keeps its own default worker processes), so the
    # comparison depends less on the load other processes put on the machine
    torch.set_num_threads(1)
    threadpool_limits(limits=1)
    rows: list[dict[str, Any]] = []
    for n in args.sizes:
        x, y, flips = synthetic(n)
        train = Dataset(x=x, y=y, modality="tabular", path=f"synthetic-{n}")
        rows += run_case(
            f"synthetic, 10% flips, {n // 1000}k",
            x,
            y,
            flips,
            train,
            FeatureModel(10, x.shape[1]),
            None,
            args.repeats if n <= 20_000 else 1,
        )
    poisoning: dict[str, Any] = {}
    if not args.no_demo:
        demo_rows, poisoning = demo_cases(args.repeats)
        rows += demo_rows
    meta = {
        "cleanlab": cleanlab.__version__,
        "sklearn": sklearn.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPUs (shared)",
        "repeats": args.repeats,
        "sizes": args.sizes,
    }
    write(rows, poisoning, meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
