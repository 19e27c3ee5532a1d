"""roadworthy and Deepchecks side by side on the same tabular models and data: checks, wall time, planted weakness.

Run by hand from the repository root (Deepchecks lives in a venv of its own, see benchmarks/README.md)::

    .venv/bin/python -m benchmarks.bench_tabular --deepchecks-python /work/dcvenv/bin/python [--budget quick]

One run, two sides, one results file (``benchmarks/results/tabular.md`` and ``.json``). The orchestrator
(this script under the roadworthy venv) runs roadworthy itself and starts this same file under the
Deepchecks venv with ``--side deepchecks``; that side imports no roadworthy code, so both sides build the
models here, from data that ships with scikit-learn, with the same split and seeds:

* ``demo``: the tabular demo (``roadworthy demo --tabular``): scikit-learn's breast-cancer table, a pipeline
  that reads three columns and leans on ``worst radius`` (logistic regression). **Planted weakness**: another
  site records ``worst radius`` in another unit; the model loses accuracy when that one column drifts.
* ``wine``: a gradient-boosting classifier (``HistGradientBoostingClassifier``) on the wine table, every
  column used, nothing planted: what each tool names as the most sensitive / important column.

Each tool gets what it asks for: roadworthy the model, the evaluation table and the training table (all
its suites at ``--budget``); Deepchecks its ``full_suite`` (data integrity, train-test validation, model
evaluation) on the training and evaluation tables with the model. Deepchecks compares two datasets it is
given and does not perturb inputs, so for the demo it also gets the scenario where the drift has already
happened: the evaluation table with ``worst radius`` x2.54 (inches recorded as centimetres), the data a team
would only have after deploying to the new site. "Finds the planted weakness" means: the tool's output
names ``worst radius`` as a problem — a failed gate/condition or a top-ranked sensitivity — not merely as an
important feature.

The two sides run one after the other on the same machine (a shared 2-core machine: timings are loaded
and only their ratio is meaningful). Both sides' scikit-learn versions are recorded; the models are
rebuilt on each side, and their clean test accuracy is recorded on each side to show they agree.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
PLANTED = "worst radius"
DEMO_COLUMNS = (PLANTED, "mean concave points", "area error")
DRIFT_FACTOR = 2.54


def build(name: str) -> dict[str, Any]:
    """Train/test tables, feature and class names, and the fitted scikit-learn model (no roadworthy code)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_breast_cancer, load_wine
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    bunch = load_breast_cancer() if name == "demo" else load_wine()
    x = np.asarray(bunch.data, np.float32)
    y = np.asarray(bunch.target, np.int64)
    names = [str(n) for n in bunch.feature_names]
    tr, te = train_test_split(np.arange(len(x)), test_size=1 / 3, stratify=y, random_state=0)
    if name == "demo":  # as roadworthy.demo.tabular builds it
        keep = [names.index(f) for f in DEMO_COLUMNS]
        model = make_pipeline(
            ColumnTransformer([("planted", "passthrough", keep)]),
            StandardScaler(),
            LogisticRegression(max_iter=1000),
        )
    else:
        model = HistGradientBoostingClassifier(random_state=0)
    model.fit(x[tr], y[tr])
    return {
        "x": x,
        "y": y,
        "tr": tr,
        "te": te,
        "names": names,
        "classes": [str(c) for c in bunch.target_names],
        "model": model,
        "planted": PLANTED if name == "demo" else None,
    }


# ------------------------------------------------------------------------------------------ deepchecks


def _mentions(result: Any, feature: str) -> bool:
    """Whether a failed condition of a Deepchecks check result names ``feature``."""
    for cond in getattr(result, "conditions_results", []) or []:
        if not cond.is_pass() and feature in str(cond.details):
            return True
    return False


def _check_rows(suite_result: Any, planted: str | None) -> list[dict[str, Any]]:
    from deepchecks.core.check_result import CheckFailure, CheckResult

    rows = []
    for r in suite_result.results:
        name = r.get_header() if hasattr(r, "get_header") else type(r.check).__name__
        if isinstance(r, CheckFailure):
            rows.append({"check": name, "ran": False, "reason": str(r.exception).splitlines()[0][:160]})
            continue
        if not isinstance(r, CheckResult):
            continue
        conds = r.conditions_results or []
        failed = [str(c.name) for c in conds if not c.is_pass()]
        rows.append(
            {
                "check": name,
                "ran": True,
                "conditions": len(conds),
                "failed_conditions": failed,
                "names_planted": bool(planted) and _mentions(r, planted),
            }
        )
    return rows


def _drift_rank(suite_result: Any, feature: str) -> dict[str, Any] | None:
    """Feature Drift's score of ``feature`` and its rank among all columns (1 = most drifted)."""
    for r in suite_result.results:
        if getattr(r, "get_header", lambda: "")() == "Feature Drift" and isinstance(r.value, dict):
            scores = {k: float(v.get("Drift score", 0.0)) for k, v in r.value.items() if isinstance(v, dict)}
            if feature in scores:
                order = sorted(scores, key=lambda k: -scores[k])
                return {"score": scores[feature], "rank": order.index(feature) + 1, "top": order[0]}
    return None


def deepchecks_side(names: list[str]) -> dict[str, Any]:
    import pandas as pd
    import sklearn
    from deepchecks import __version__ as dc_version
    from deepchecks.tabular import Dataset
    from deepchecks.tabular.suites import full_suite

    out: dict[str, Any] = {"versions": {"deepchecks": dc_version, "scikit-learn": sklearn.__version__}}
    for name in names:
        b = build(name)
        x, y, tr, te, model = b["x"], b["y"], b["tr"], b["te"], b["model"]

        def frame(rows: np.ndarray, xx: np.ndarray = x, b: dict[str, Any] = b) -> Any:
            df = pd.DataFrame(xx[rows], columns=b["names"])
            df["target"] = b["y"][rows]
            return Dataset(df, label="target", cat_features=[])

        acc = float(np.mean(model.predict(x[te]) == y[te]))
        runs: dict[str, Any] = {}
        scenarios = {"clean": x}
        if b["planted"]:
            drifted = x.copy()
            drifted[te, b["names"].index(b["planted"])] *= DRIFT_FACTOR
            scenarios["drifted"] = drifted
        for scen, xx in scenarios.items():
            suite = full_suite()
            t = time.perf_counter()
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                res = suite.run(train_dataset=frame(tr), test_dataset=frame(te, xx), model=model)
            wall = time.perf_counter() - t
            rows = _check_rows(res, b["planted"])
            runs[scen] = {
                "wall_s": wall,
                "checks": rows,
                "drift": _drift_rank(res, b["planted"]) if b["planted"] else None,
                "test_accuracy": float(np.mean(model.predict(xx[te]) == y[te])),
            }
        out[name] = {"clean_accuracy": acc, "runs": runs}
    return out


# ------------------------------------------------------------------------------------------ roadworthy


def roadworthy_side(names: list[str], budget: str) -> dict[str, Any]:
    import sklearn

    import roadworthy
    from roadworthy.data.base import Dataset
    from roadworthy.models.sklearn import SklearnModel

    out: dict[str, Any] = {
        "versions": {"roadworthy": roadworthy.__version__, "scikit-learn": sklearn.__version__}
    }
    for name in names:
        b = build(name)
        tr, te = b["tr"], b["te"]

        def table(rows: np.ndarray, b: dict[str, Any] = b) -> Dataset:
            return Dataset(
                x=b["x"][rows],
                y=b["y"][rows],
                modality="tabular",
                class_names=b["classes"],
                feature_names=b["names"],
            )

        model = SklearnModel(b["model"])
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = roadworthy.check(model, table(te), train_data=table(tr), budget=budget, seed=0)
        wall = time.perf_counter() - t
        checks = [
            {
                "check": c.id,
                "suite": c.suite,
                "status": c.status,
                "why_not": c.summary if c.status == "skipped" else None,
            }
            for c in report.checks
        ]
        sens = next(c for c in report.checks if c.id == "shift.tab_feature_sensitivity").details
        ranking = [r["feature"] for r in sens.get("ranking", [])]
        failed = [g.rule for g in report.gates if g.passed is False]
        out[name] = {
            "clean_accuracy": report.metrics.get("clean.accuracy"),
            "wall_s": wall,
            "verdict": report.verdict,
            "checks": checks,
            "failed_gates": failed,
            "sensitivity_top": ranking[:3],
            "planted_rank": ranking.index(b["planted"]) + 1 if b["planted"] in ranking else None,
            "planted_drop": next(
                (r["drop"] for r in sens.get("ranking", []) if r["feature"] == b["planted"]), None
            ),
            "gate": next(
                (
                    c.details.get("validity_gate", {}).get("detector")
                    for c in report.checks
                    if c.id == "ood.summary"
                ),
                None,
            ),
        }
    return out


# ------------------------------------------------------------------------------------------ the table


def _markdown(res: dict[str, Any]) -> str:
    rw, dc = res["roadworthy"], res["deepchecks"]
    lines = [
        "# Tabular: roadworthy vs Deepchecks (same models and data, one run)",
        "",
        f"Machine: {res['machine']} (shared 2-core machine under load: compare the two sides' times as a ratio). "
        f"roadworthy {rw['versions']['roadworthy']} (scikit-learn {rw['versions']['scikit-learn']}), budget "
        f"`{res['budget']}`; Deepchecks {dc['versions']['deepchecks']} (scikit-learn "
        f"{dc['versions']['scikit-learn']}), `full_suite()`. Produced by `benchmarks/bench_tabular.py`.",
        "",
        "| model | tool | input | clean acc. | checks run / not applicable | wall s | verdict / failed | "
        "finds the planted weakness? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in res["models"]:
        r = rw[name]
        ran = sum(c["status"] != "skipped" for c in r["checks"])
        na = len(r["checks"]) - ran
        planted = (
            f"yes: `{PLANTED}` ranked {r['planted_rank']} of every column by `shift.tab_feature_sensitivity` "
            f"(-{r['planted_drop']:.0%} accuracy); failed gate(s): {'; '.join(r['failed_gates']) or 'none'}"
            if r["planted_rank"]
            else f"nothing planted; most sensitive columns: {', '.join(r['sensitivity_top'])}"
        )
        lines.append(
            f"| {name} | roadworthy | model + eval + train tables | {r['clean_accuracy']:.3f} | {ran} / {na} | "
            f"{r['wall_s']:.1f} | {r['verdict']} | {planted} |"
        )
        d = dc[name]
        for scen, run in d["runs"].items():
            ran = sum(c["ran"] for c in run["checks"])
            na = len(run["checks"]) - ran
            failed = [c["check"] for c in run["checks"] if c["ran"] and c["failed_conditions"]]
            named = [c["check"] for c in run["checks"] if c.get("names_planted")]
            if name == "demo":
                drift = run["drift"] or {}
                drift_failed = any(
                    c["check"] == "Feature Drift" and c.get("names_planted") for c in run["checks"]
                )
                perf_failed = any(
                    c["check"] == "Train Test Performance" and c.get("failed_conditions")
                    for c in run["checks"]
                )
                verdict = (
                    "yes, once the drifted data exists: Feature Drift's failed condition names it"
                    if drift_failed
                    else "no"
                )
                found = (
                    f"{verdict}; Feature Drift ranks it {drift.get('rank')} of 30 (score {drift.get('score', 0):.2f}); "
                    f"performance degradation flagged: {'yes' if perf_failed else 'no'}; failed conditions that "
                    f"mention it: {', '.join(named) or 'none'}"
                )
            else:
                found = "nothing planted"
            what = (
                "model + train + eval tables"
                if scen == "clean"
                else f"the same, eval `{PLANTED}` x{DRIFT_FACTOR} (after the drift)"
            )
            lines.append(
                f"| {name} | Deepchecks | {what} | {run['test_accuracy']:.3f} | {ran} / {na} | "
                f"{run['wall_s']:.1f} | {len(failed)} checks with failed conditions: {', '.join(failed) or 'none'} "
                f"| {found} |"
            )
    lines += ["", "## Which checks each has", ""]
    first = res["models"][0]
    suites: dict[str, list[str]] = {}
    for c in rw[first]["checks"]:
        if c["status"] != "skipped":
            suites.setdefault(c["suite"], []).append(c["check"])
    lines.append("roadworthy, checks that ran on the table (the others say why they do not apply):")
    lines.append("")
    for s, cs in suites.items():
        lines.append(f"- {s}: {', '.join(f'`{c}`' for c in cs)}")
    lines += ["", "Deepchecks `full_suite()` on the same table (clean scenario):", ""]
    run = dc[first]["runs"]["clean"]
    lines.append("- ran: " + ", ".join(c["check"] for c in run["checks"] if c["ran"]))
    nr = [f"{c['check']} ({c['reason']})" for c in run["checks"] if not c["ran"]]
    lines.append("- did not run: " + ("; ".join(nr) or "none"))
    lines += [
        "",
        "Reading: Deepchecks validates data and a model on two datasets it is given (integrity, train/test "
        "drift, performance, weak segments); roadworthy perturbs the inputs itself (shifts, attacks, OOD "
        "sources) and so finds a reliance *before* the drifted data exists. Given the drifted data, "
        "Deepchecks' drift checks see the moved column; on the data a team has before deployment they "
        "cannot, by design. The failed conditions that mention the column on clean data (Feature Label "
        "Correlation Change: its predictive power score is high; Feature-Feature Correlation: it correlates "
        "with other radius columns) describe the data, not the model's reliance: they fail for every model "
        "on this table, and say nothing of what a unit change would do.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=["both", "deepchecks", "roadworthy"], default="both")
    parser.add_argument("--deepchecks-python", default="/work/dcvenv/bin/python")
    parser.add_argument("--budget", default="quick")
    parser.add_argument("--models", nargs="+", default=["demo", "wine"])
    args = parser.parse_args()
    if args.side == "deepchecks":
        json.dump(deepchecks_side(args.models), sys.stdout)
        return
    if args.side == "roadworthy":
        json.dump(roadworthy_side(args.models, args.budget), sys.stdout)
        return
    rw = roadworthy_side(args.models, args.budget)
    proc = subprocess.run(
        [args.deepchecks_python, __file__, "--side", "deepchecks", "--models", *args.models],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise SystemExit(f"the Deepchecks side failed:\n{proc.stderr[-3000:]}")
    dc = json.loads(proc.stdout.strip().splitlines()[-1])
    res = {
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "budget": args.budget,
        "models": args.models,
        "roadworthy": rw,
        "deepchecks": dc,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tabular.json").write_text(json.dumps(res, indent=1))
    (RESULTS / "tabular.md").write_text(_markdown(res))
    sys.stdout.write(_markdown(res))


if __name__ == "__main__":
    main()
