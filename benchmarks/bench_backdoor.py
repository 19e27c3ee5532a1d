"""Backdoor benchmark: roadworthy's poisoning detection beside IBM ART's, on models trained in the run.

Run from the repository root (reference: ``adversarial-robustness-toolbox==1.20.1``, see README.md)::

    .venv/bin/python -m benchmarks.bench_backdoor            # full grid (digits), NC timing, ~10 min
    .venv/bin/python -m benchmarks.bench_backdoor --quick    # fewer configurations, about a minute

Every model is a small CNN trained here on scikit-learn's digits (16 px, 1,297 training images) with a
poisoned training set, plus a clean twin trained with the same seed on the clean set:

* ``badnets``: a white 3x3 square in the bottom-right corner, samples of other classes relabelled to the
  target (all-to-one; Gu et al. 2017);
* ``badnets_a2a``: the same square, samples of every class relabelled ``c + 1`` (all-to-all);
* ``blended``: a fixed noise image mixed in with weight 0.15, all-to-one (Chen et al. 2017);
* ``label_flip``: the demo's attack, samples of one source class relabelled to the target, no trigger.

at 1%, 2%, 5% and 10% of the training set. The target class changes with the seed. Contenders, on the
same model and training set:

* ours: the ``integrity.poisoning`` check (features + inputs + the model, as a roadworthy run calls it);
* ART ``ActivationDefence`` (its defaults: 2-means on 10 PCA dims of the last layer, ``smaller`` cluster
  analysis) and ``SpectralSignatureDefense`` (its defaults: ``expected_pp_poison`` 0.33,
  ``eps_multiplier`` 1.5).

Measured: class level (the target class named; for all-to-all, any poisoned class named), classes named
on the clean twins (false alarms), sample precision and recall against the poisoned rows, wall time.
A class is *named* by ours when the check returns a verdict for it; by ART when it flags any sample of it
(ART has no class-level verdict). The model-level scan (``integrity.backdoor_scan``, standard budget) is
timed on a 32 px, 10-class digits CNN (backdoored and clean twin) and, when it loads, the demo road-sign
CNN; the table says whether the scan hit its ``max_seconds`` cap.

ART is imported lazily: without it the ART columns say "not installed" and ours still runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
ATTACKS = ("badnets", "badnets_a2a", "blended", "label_flip")
RATES = (0.01, 0.02, 0.05, 0.10)
N_CLASSES = 10


# ---------------------------------------------------------------------------------------------- data


def digits_split(size: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from tests._models import digits_images

    x, y = digits_images(size=size)
    idx = np.random.default_rng(0).permutation(len(y))
    tr, te = idx[:1297], idx[1297:]
    return x[tr], y[tr], x[te], y[te]


def target_of(seed: int) -> int:
    """The target class of a seed's models (different classes across seeds, none favoured)."""
    return (3 * seed) % N_CLASSES


def poison(attack: str, x: np.ndarray, y: np.ndarray, rate: float, seed: int) -> dict[str, Any]:
    """The poisoned training set: ``{"x", "y", "indices", "targets"}``."""
    from roadworthy.backdoor import badnets_trigger, plant, plant_all_to_all, plant_blended

    t = target_of(seed)
    if attack == "badnets":
        p = plant(x, y, badnets_trigger(x.shape[1:], size=3), target=t, rate=rate, seed=seed)
    elif attack == "badnets_a2a":
        p = plant_all_to_all(x, y, badnets_trigger(x.shape[1:], size=3), rate=rate, seed=seed)
    elif attack == "blended":
        p = plant_blended(x, y, target=t, rate=rate, alpha=0.15, seed=seed)
    elif attack == "label_flip":
        # the demo's attack: samples of one source class relabelled to the target, no trigger; at most
        # half the source class (digits has ~130 per class, so 10% of the set cannot come from one class)
        source = (t + 1 + seed % (N_CLASSES - 1)) % N_CLASSES
        pool = np.flatnonzero(y == source)
        n = min(round(rate * len(y)), len(pool) // 2)
        idx = np.sort(np.random.default_rng(seed).choice(pool, size=n, replace=False))
        yp = y.copy()
        yp[idx] = t
        return {
            "x": x,
            "y": yp,
            "indices": idx,
            "targets": [t],
            "source": int(source),
            "pairs": [(source, t)],
        }
    else:
        raise ValueError(attack)
    pairs = sorted({(int(s), int(t)) for s, t in zip(p.source_labels, p.y[p.indices], strict=True)})
    return {"x": p.x, "y": p.y, "indices": p.indices, "targets": p.target_classes, "pairs": pairs}


def train_model(x: np.ndarray, y: np.ndarray, seed: int, size: int = 16, epochs: int = 8) -> Any:
    from tests._models import tiny_cnn, train

    return train(tiny_cnn(size=size, seed=seed), x, y, epochs=epochs, seed=seed)


# ---------------------------------------------------------------------------------------------- contenders


def ours(module: Any, x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> dict[str, Any]:
    from roadworthy.checks.base import Context
    from roadworthy.checks.integrity.poisoning import Poisoning
    from roadworthy.data.base import Dataset
    from roadworthy.models.torch import TorchModel

    model = TorchModel(module, input_shape=tuple(x.shape[1:]))
    train = Dataset(x=x, y=y, modality="image", path="train")
    test = Dataset(x=x_test, y=y_test, modality="image", path="test")
    t = time.perf_counter()
    ctx = Context(model=model, data=test, train_data=train, seed=0)
    out = Poisoning().run(ctx)
    seconds = time.perf_counter() - t
    return {
        "classes": [int(v["label"]) for v in out.details["verdicts"]],
        # the reviewer's list: the verdicts' suspects, or the label screen where no class is named
        "indices": np.array(out.details["review"]["rows"], dtype=np.int64),
        "verdict_indices": np.array(out.details["indices"], dtype=np.int64),
        "review_source": out.details["review"]["source"],
        "seconds": seconds,
    }


def art_available() -> str | None:
    """ART's version, or None when it is not importable."""
    try:
        import art
        from art.defences.detector.poison import ActivationDefence  # noqa: F401
    except ImportError:
        return None
    return str(art.__version__)


def art_classifier(module: Any, shape: tuple, n_classes: int = N_CLASSES) -> Any:
    import torch
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=module,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=shape,
        nb_classes=n_classes,
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )


def art_run(
    kind: str, module: Any, x: np.ndarray, y: np.ndarray, n_classes: int = N_CLASSES
) -> dict[str, Any]:
    from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense

    clf = art_classifier(module, tuple(x.shape[1:]), n_classes)
    onehot = np.eye(n_classes, dtype=np.float32)[y]
    t = time.perf_counter()
    if kind == "activation":
        d = ActivationDefence(clf, x, onehot)
        _, is_clean = d.detect_poison(nb_clusters=2, nb_dims=10, reduce="PCA")
    else:
        d = SpectralSignatureDefense(
            clf, x, onehot, batch_size=128, eps_multiplier=1.5, expected_pp_poison=0.33
        )
        _, is_clean = d.detect_poison()
    seconds = time.perf_counter() - t
    flagged = np.flatnonzero(np.asarray(is_clean) == 0)
    return {"classes": sorted({int(c) for c in y[flagged]}), "indices": flagged, "seconds": seconds}


# ---------------------------------------------------------------------------------------------- scoring


def sample_scores(flagged: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    hits = int(np.isin(flagged, truth).sum())
    precision = hits / len(flagged) if len(flagged) else float("nan")
    return precision, hits / max(1, len(truth))


def summarise(cases: list[dict[str, Any]], contenders: list[str]) -> list[dict[str, Any]]:
    """One row per (attack, rate, contender): detection, extra classes, precision, recall, time."""
    rows = []
    keys = sorted({(c["attack"], c["rate"]) for c in cases}, key=lambda k: (ATTACKS.index(k[0]), k[1]))
    for attack, rate in keys:
        group = [c for c in cases if c["attack"] == attack and c["rate"] == rate]
        for name in contenders:
            res = [c["results"][name] for c in group if name in c["results"]]
            if not res:
                continue
            prec = [r["precision"] for r in res if not np.isnan(r["precision"])]
            vprec = [r["verdict_precision"] for r in res if not np.isnan(r.get("verdict_precision", np.nan))]
            rows.append(
                {
                    "attack": attack,
                    "rate": rate,
                    "contender": name,
                    "cases": len(res),
                    "detected": float(np.mean([r["detected"] for r in res])),
                    "pairs": float(np.mean([r["pairs"] for r in res])),
                    "target_only": float(np.mean([r["target_only"] for r in res])),
                    "other_classes_named": float(np.mean([r["other_classes"] for r in res])),
                    "precision": float(np.mean(prec)) if prec else float("nan"),
                    "recall": float(np.mean([r["recall"] for r in res])),
                    "verdict_precision": float(np.mean(vprec)) if vprec else float("nan"),
                    "verdict_recall": float(np.mean([r.get("verdict_recall", np.nan) for r in res])),
                    "seconds": float(np.mean([r["seconds"] for r in res])),
                }
            )
    return rows


def score_case(
    res: dict[str, Any], truth: np.ndarray, targets: list[int], pairs: list[tuple[int, int]] | None = None
) -> dict[str, Any]:
    """Class- and sample-level scores of one contender on one case.

    ``pairs`` (all-to-all): the poisoned ``(source, target)`` pairs. A pair counts as named when its target
    class is named (the training data show the pair only through the target class's labels); ``pairs``
    is the share of pairs named, 1 for an all-to-one backdoor whose target is named.
    """
    precision, recall = sample_scores(res["indices"], truth)
    named = set(res["classes"])
    extra = {}
    if "verdict_indices" in res:  # ours: the verdict suspects alone, beside the reviewer's list
        vp, vr = sample_scores(res["verdict_indices"], truth)
        extra = {"verdict_precision": vp, "verdict_recall": vr, "review_source": res["review_source"]}
    pair_list = pairs or [(-1, t) for t in targets]
    return {
        "pairs": float(np.mean([t in named for _, t in pair_list])) if pair_list else 0.0,
        "classes": sorted(named),
        "detected": bool(named & set(targets)),
        "target_only": bool(named) and named <= set(targets),
        "other_classes": len(named - set(targets)),
        "precision": precision,
        "recall": recall,
        "n_flagged": len(res["indices"]),
        "seconds": res["seconds"],
        **extra,
    }


# ---------------------------------------------------------------------------------------------- model-level scan


def nc_scan(module: Any, x_test: np.ndarray, y_test: np.ndarray, name: str) -> dict[str, Any]:
    import torch

    from roadworthy.checks.base import Context
    from roadworthy.checks.integrity.backdoor import BackdoorScan
    from roadworthy.data.base import Dataset
    from roadworthy.models.torch import TorchModel

    model = (
        TorchModel(module, input_shape=tuple(x_test.shape[1:])) if not hasattr(module, "predict") else module
    )
    test = Dataset(x=x_test, y=y_test, modality="image", path="test")
    ctx = Context(model=model, data=test, seed=0, budget="standard")
    check = BackdoorScan(budget="standard")
    load = os.getloadavg()[0]
    t, cpu = time.perf_counter(), time.process_time()
    out = check.run(ctx)
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    d = out.details
    return {
        "model": name,
        "input": "x".join(str(s) for s in x_test.shape[1:]),
        "torch_threads": torch.get_num_threads(),
        "batch_size": check.params.batch_size,
        "seconds": round(seconds, 1),
        # CPU seconds of this process: what the scan costs whatever the other jobs on the machine; on an
        # idle machine with the same threads the wall time is about cpu / threads (better than 1 thread)
        "cpu_seconds": round(cpu, 1),
        "cpu_seconds_all_steps": round(cpu * 120 / max(1, d["steps"]), 1) if d["stopped"] == "time" else None,
        "load_before": round(load, 2),
        "stopped": d["stopped"],
        "cap_hit": d["stopped"] == "time",
        "steps": d["steps"],
        "suspects": d["suspect_classes"],
        "candidate": d["candidate"],
        "max_anomaly_index": out.metrics["integrity.backdoor_scan.max_anomaly_index"],
        "attack_success": d["confirmation"]["rate"],
        "summary": out.summary,
    }


def model_scans(quick: bool, threads: int = 1) -> list[dict[str, Any]]:
    import torch

    from roadworthy.backdoor import plant_badnets

    # one torch thread: on the shared 2-core machine (load 7-11) two threads thrash (the 32 px twins train
    # 15x slower); the CPU seconds reported say what the scan costs, 2 idle cores halve its wall time at best
    torch.set_num_threads(threads)
    out = []
    x_tr, y_tr, x_te, y_te = digits_split(size=32)
    pl = plant_badnets(x_tr, y_tr, target=target_of(1), rate=0.1, size=5, seed=1)
    t = time.perf_counter()
    bd = train_model(pl.x, pl.y, seed=1, size=32)
    clean = train_model(x_tr, y_tr, seed=1, size=32)
    print(f"trained the 32 px digits twins in {time.perf_counter() - t:.0f}s", flush=True)
    out.append(nc_scan(bd, x_te, y_te, f"digits CNN 32 px, BadNets 5x5 -> {target_of(1)}, 10%"))
    print(out[-1]["summary"], f"({out[-1]['seconds']}s, stopped: {out[-1]['stopped']})", flush=True)
    out[-1]["target"] = str(target_of(1))
    if not quick:
        out.append(nc_scan(clean, x_te, y_te, "digits CNN 32 px, clean twin"))
        print(out[-1]["summary"], f"({out[-1]['seconds']}s, stopped: {out[-1]['stopped']})", flush=True)
        try:
            from roadworthy.demo import load_demo_data
            from roadworthy.demo.model import load_demo_model

            model = load_demo_model()
            test = load_demo_data().test
            n = 1000
            out.append(
                nc_scan(model, test.x[:n].astype(np.float32), test.y[:n], "demo road-sign CNN (3x32x32)")
            )
            print(out[-1]["summary"], f"({out[-1]['seconds']}s, stopped: {out[-1]['stopped']})", flush=True)
        except (ImportError, OSError, RuntimeError) as exc:  # the demo weights may not ship in a checkout
            out.append({"model": "demo road-sign CNN", "error": f"{type(exc).__name__}: {exc}"})
    return out


# ---------------------------------------------------------------------------------------------- road signs


SIGN_RATES = (0.02, 0.05)


def signs_grid(seeds: int, n_clean: int, art_version: str | None, n_train: int = 3000) -> dict[str, Any]:
    """BadNets all-to-one at 2% and 5% on the demo road signs (3x32x32, 15 classes), plus clean twins.

    The images come from the demo's generator (``roadworthy.demo.load_demo_data``, clean labels); the
    model is the same small CNN as on digits, with 3 input channels, trained here for 8 epochs. The
    trigger is a white 4x4 square in the bottom-right corner (a sticker on the sign's corner).
    """
    import torch
    from tests._models import tiny_cnn, train

    from roadworthy.backdoor import badnets_trigger, plant
    from roadworthy.demo import CLASS_NAMES, load_demo_data

    k = len(CLASS_NAMES)
    demo = load_demo_data(seed=0, n_train=n_train, n_test=600, poison_rate=0.0)
    x, y = demo.train.x.astype(np.float32), demo.train.y.astype(np.int64)
    x_te, y_te = demo.test.x.astype(np.float32), demo.test.y.astype(np.int64)

    def fit(xs: np.ndarray, ys: np.ndarray, seed: int) -> Any:
        return train(tiny_cnn(in_channels=3, n_classes=k, size=32, seed=seed), xs, ys, epochs=8, seed=seed)

    def run_all(module: Any, xs: np.ndarray, ys: np.ndarray) -> dict[str, dict[str, Any]]:
        res = {"ours": ours(module, xs, ys, x_te, y_te)}
        if art_version:
            res["ART activation"] = art_run("activation", module, xs, ys, k)
            res["ART spectral"] = art_run("spectral", module, xs, ys, k)
        return res

    cases = []
    for rate in SIGN_RATES:
        for seed in range(seeds):
            t = (5 * seed + 2) % k
            p = plant(x, y, badnets_trigger(x.shape[1:], size=4), target=t, rate=rate, seed=seed)
            module = fit(p.x, p.y, seed)
            with torch.no_grad():
                acc = float((module(torch.from_numpy(x_te)).argmax(1).numpy() == y_te).mean())
                xt = p.trigger.apply(x_te[y_te != t])
                asr = float((module(torch.from_numpy(xt)).argmax(1).numpy() == t).mean())
            res = run_all(module, p.x, p.y)
            scored = {name: score_case(v, p.indices, [t]) for name, v in res.items()}
            cases.append(
                {
                    "attack": "badnets",
                    "rate": rate,
                    "seed": seed,
                    "targets": [t],
                    "n_poisoned": len(p.indices),
                    "clean_accuracy": acc,
                    "attack_success": asr,
                    "results": scored,
                }
            )
            s = scored["ours"]
            print(
                f"signs badnets {rate:4.0%} seed {seed}: ours {s['classes']} (target {t}, ASR {asr:.2f}) "
                f"P {fmt(s['precision'])} R {fmt(s['recall'])} {s['seconds']:.1f}s",
                flush=True,
            )
    contenders = ["ours"] + (["ART activation", "ART spectral"] if art_version else [])
    named: dict[str, list[int]] = {c: [] for c in contenders}
    rows_listed: dict[str, list[int]] = {c: [] for c in contenders}
    for seed in range(n_clean):
        res = run_all(fit(x, y, seed), x, y)
        for name, v in res.items():
            named[name].append(len(v["classes"]))
            rows_listed[name].append(len(v["indices"]))
        print(f"signs clean twin seed {seed}: ours names {res['ours']['classes']}", flush=True)
    clean = {
        name: {
            "twins": len(v),
            "false_alarm_rate": float(np.mean([n > 0 for n in v])),
            "mean_classes": float(np.mean(v)),
            "classes_named": v,
            "mean_rows": float(np.mean(rows_listed[name])),
        }
        for name, v in named.items()
    }
    return {
        "n_train": len(y),
        "n_classes": k,
        "rows": summarise(cases, contenders),
        "clean": clean,
        "cases": cases,
    }


# ---------------------------------------------------------------------------------------------- main


def fmt(v: float, digits: int = 2) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def markdown(res: dict[str, Any]) -> str:
    meta = res["meta"]
    lines = [
        "# Backdoor benchmark",
        "",
        f"Digits CNN (1x16x16, 1,297 training images), {meta['seeds']} seed(s) per configuration, "
        f"{meta['clean_twins']} clean twins; ART {meta['art'] or 'not installed'}. "
        f"Load average {meta['load_start']} at the start, {meta['load_end']} at the end (2 shared cores): "
        "times are indicative only.",
        "",
        "Detected: share of cases where the target class (all-to-all: any poisoned class) is named. "
        "Pairs: share of the poisoned (source -> target) pairs whose target class is named (all-to-all has "
        "one pair per class, each with rate/10 of the training set). "
        "Only: named classes are all targets. Other: mean number of non-target classes named. Precision "
        "and recall: flagged training rows against the poisoned rows (precision averaged over cases "
        "with any flag). Ours flags `details.review.rows`: the suspects of the named classes, or, where "
        "no class is named, the label screen (rows an out-of-sample classifier calls another class, with a label "
        "probability at most 1% of the labelled test rows reach: conformal p <= 0.01); verdict P/R: the "
        "named classes' suspects alone.",
        "",
        "| attack | rate | contender | cases | detected | pairs | only | other | precision | recall "
        "| verdict P | verdict R | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['attack']} | {r['rate']:.0%} | {r['contender']} | {r['cases']} | {fmt(r['detected'])} | "
            f"{fmt(r['pairs'])} | "
            f"{fmt(r['target_only'])} | {fmt(r['other_classes_named'], 1)} | {fmt(r['precision'])} | "
            f"{fmt(r['recall'])} | {fmt(r.get('verdict_precision'))} | {fmt(r.get('verdict_recall'))} | "
            f"{fmt(r['seconds'], 1)} |"
        )
    lines += [
        "",
        "## Clean twins (false alarms)",
        "",
        "Rows listed: mean number of training rows flagged (ours: the label screen's rows listed for review, "
        "no class named).",
        "",
        "| contender | twins | any class named | classes named (mean) | rows listed (mean) |",
    ]
    lines.append("|---|---|---|---|---|")
    for name, c in res["clean"].items():
        lines.append(
            f"| {name} | {c['twins']} | {fmt(c['false_alarm_rate'])} | {fmt(c['mean_classes'], 1)} | "
            f"{fmt(c.get('mean_rows', float('nan')), 1)} |"
        )
    if res.get("signs"):
        g = res["signs"]
        lines += [
            "",
            f"## Demo road signs (3x32x32, {g['n_classes']} classes, {g['n_train']:,} training images)",
            "",
            "BadNets all-to-one (white 4x4 corner square), small CNN trained in the run; same columns as above.",
            "",
            "| attack | rate | contender | cases | detected | only | other | precision | recall | seconds |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in g["rows"]:
            lines.append(
                f"| {r['attack']} | {r['rate']:.0%} | {r['contender']} | {r['cases']} | {fmt(r['detected'])} | "
                f"{fmt(r['target_only'])} | {fmt(r['other_classes_named'], 1)} | {fmt(r['precision'])} | "
                f"{fmt(r['recall'])} | {fmt(r['seconds'], 1)} |"
            )
        lines += [
            "",
            "| clean twins | twins | any class named | classes named (mean) | rows listed (mean) |",
            "|---|---|---|---|---|",
        ]
        for name, c in g["clean"].items():
            lines.append(
                f"| {name} | {c['twins']} | {fmt(c['false_alarm_rate'])} | {fmt(c['mean_classes'], 1)} | "
                f"{fmt(c.get('mean_rows', float('nan')), 1)} |"
            )
    lines += ["", "## Targets", ""]
    for t in res["targets"]:
        lines.append(f"- {'met' if t['met'] else 'NOT met'}: {t['target']} ({t['measured']})")
    if res.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in res["notes"]]
    if res.get("model_scan"):
        lines += [
            "",
            "## Model-level scan (integrity.backdoor_scan, standard budget)",
            "",
            "| model | input | threads | batch | seconds | CPU s | load | stopped | steps | cap hit | suspects "
            "| candidate | success |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in res["model_scan"]:
            if "error" in s:
                lines.append(f"| {s['model']} | - | - | - | - | - | - | {s['error']} | - | - | - | - | - |")
                continue
            lines.append(
                f"| {s['model']} | {s['input']} | {s.get('torch_threads', '-')} | {s.get('batch_size', '-')} | "
                f"{s['seconds']} | {s.get('cpu_seconds', '-')} | {s['load_before']} | {s['stopped']} | {s['steps']} | "
                f"{s['cap_hit']} | {', '.join(s['suspects']) or '-'} | {s['candidate']} | "
                f"{s['attack_success']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def targets(rows: list[dict[str, Any]], clean: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    mine = [
        r for r in rows if r["contender"] == "ours" and r["rate"] >= 0.02 and r["attack"] != "badnets_a2a"
    ]
    if mine:
        det = float(np.mean([r["detected"] for r in mine]))
        out.append(
            {
                "target": "target class named in >= 90% of the all-to-one cases at >= 2% poisoning",
                "measured": f"{det:.0%}",
                "met": det >= 0.9,
            }
        )
    a2a = [r for r in rows if r["contender"] == "ours" and r["rate"] >= 0.02 and r["attack"] == "badnets_a2a"]
    if a2a:
        det = float(np.mean([r["detected"] for r in a2a]))
        out.append(
            {
                "target": "a poisoned class named in >= 90% of the all-to-all cases at >= 2% poisoning",
                "measured": f"{det:.0%}",
                "met": det >= 0.9,
            }
        )
        pairs = float(np.mean([r["pairs"] for r in a2a]))
        out.append(
            {
                "target": "all-to-all at >= 2%: every poisoned source -> target pair named (share of pairs)",
                "measured": f"{pairs:.0%}",
                "met": pairs >= 0.9,
            }
        )
    every = [r for r in rows if r["contender"] == "ours" and r["rate"] >= 0.02]
    if every:
        det = float(np.mean([r["detected"] for r in every]))
        out.append(
            {
                "target": "target class named in >= 90% of all backdoored cases at >= 2% (every attack)",
                "measured": f"{det:.0%}",
                "met": det >= 0.9,
            }
        )
    if "ours" in clean:
        fa = clean["ours"]["false_alarm_rate"]
        out.append(
            {"target": "false alarms on <= 5% of clean twins", "measured": f"{fa:.0%}", "met": fa <= 0.05}
        )
    patch = [r for r in rows if r["contender"] == "ours" and r["rate"] >= 0.02 and r["attack"] == "badnets"]
    if patch:
        p = float(np.nanmean([r["precision"] for r in patch]))
        rc = float(np.mean([r["recall"] for r in patch]))
        out.append(
            {
                "target": "patch (all-to-one) at >= 2%: sample precision >= 0.5 and recall >= 0.7",
                "measured": f"precision {p:.2f}, recall {rc:.2f}",
                "met": p >= 0.5 and rc >= 0.7,
            }
        )
    worse = []
    for r in rows:
        if r["contender"] != "ours":
            continue
        for ref in ("ART activation", "ART spectral"):
            a = next(
                (
                    q
                    for q in rows
                    if q["contender"] == ref and q["attack"] == r["attack"] and q["rate"] == r["rate"]
                ),
                None,
            )
            if a is None:
                continue
            ok = r["recall"] >= a["recall"] - 1e-9 and (
                np.isnan(a["precision"]) or (not np.isnan(r["precision"]) and r["precision"] > a["precision"])
            )
            if not ok:
                worse.append(f"{r['attack']} {r['rate']:.0%} vs {ref}")
    if any(r["contender"].startswith("ART") for r in rows):
        out.append(
            {
                "target": "every row: at least ART's recall at a higher precision",
                "measured": "all rows" if not worse else "short on " + "; ".join(worse),
                "met": not worse,
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="badnets and blended at 2%% and 10%%, one seed")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per configuration (default 3, quick 1)")
    ap.add_argument("--clean-twins", type=int, default=None, help="clean twins (default 10, quick 2)")
    ap.add_argument("--no-art", action="store_true")
    ap.add_argument("--no-model-scan", action="store_true")
    ap.add_argument("--no-signs", action="store_true", help="skip the demo road-sign grid")
    ap.add_argument("--sign-seeds", type=int, default=2, help="seeds per road-sign configuration")
    ap.add_argument("--sign-twins", type=int, default=2, help="road-sign clean twins")
    ap.add_argument(
        "--scan-only", action="store_true", help="only the model-level scan (into <stem>.scan.json)"
    )
    ap.add_argument("--scan-threads", type=int, default=1, help="torch threads for the model-level scan")
    ap.add_argument("--attacks", default=",".join(ATTACKS))
    ap.add_argument(
        "--out",
        default=None,
        help="results file stem under benchmarks/results (backdoor, quick: backdoor.quick)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.scan_only:
        scans = model_scans(args.quick, args.scan_threads)
        meta = {"load_end": round(os.getloadavg()[0], 2), "cpu_count": os.cpu_count()}
        stem = args.out or ("backdoor.quick" if args.quick else "backdoor")
        (RESULTS / f"{stem}.scan.json").write_text(
            json.dumps({"meta": meta, "model_scan": scans}, indent=2) + "\n"
        )
        return 0
    seeds = args.seeds or (1 if args.quick else 3)
    n_clean = args.clean_twins or (2 if args.quick else 10)
    attacks = ("badnets", "blended") if args.quick else tuple(args.attacks.split(","))
    rates = (0.02, 0.10) if args.quick else RATES
    art_version = None if args.no_art else art_available()
    if not args.no_art and art_version is None:
        print("ART is not installed: only roadworthy's columns run (see benchmarks/README.md to install it)")
    contenders = ["ours"] + (["ART activation", "ART spectral"] if art_version else [])
    load_start = round(os.getloadavg()[0], 2)
    x, y, x_te, y_te = digits_split()

    def run_all(module: Any, xs: np.ndarray, ys: np.ndarray) -> dict[str, dict[str, Any]]:
        res = {"ours": ours(module, xs, ys, x_te, y_te)}
        if art_version:
            res["ART activation"] = art_run("activation", module, xs, ys)
            res["ART spectral"] = art_run("spectral", module, xs, ys)
        return res

    cases = []
    for attack in attacks:
        for rate in rates:
            for seed in range(seeds):
                p = poison(attack, x, y, rate, seed)
                module = train_model(p["x"], p["y"], seed)
                acc = float((module(torch.from_numpy(x_te)).argmax(1).numpy() == y_te).mean())
                res = run_all(module, p["x"], p["y"])
                scored = {k: score_case(v, p["indices"], p["targets"], p["pairs"]) for k, v in res.items()}
                cases.append(
                    {
                        "attack": attack,
                        "rate": rate,
                        "seed": seed,
                        "targets": p["targets"],
                        "n_poisoned": len(p["indices"]),
                        "clean_accuracy": acc,
                        "results": scored,
                    }
                )
                s = scored["ours"]
                print(
                    f"{attack:12s} {rate:4.0%} seed {seed}: ours {s['classes']} (targets {p['targets'][:3]}) "
                    f"P {fmt(s['precision'])} R {fmt(s['recall'])} {s['seconds']:.1f}s"
                    + "".join(
                        f" | {k} P {fmt(v['precision'])} R {fmt(v['recall'])} {v['seconds']:.1f}s"
                        for k, v in scored.items()
                        if k != "ours"
                    ),
                    flush=True,
                )
    clean_named: dict[str, list[int]] = {k: [] for k in contenders}
    clean_rows: dict[str, list[int]] = {k: [] for k in contenders}
    for seed in range(n_clean):
        module = train_model(x, y, seed)
        res = run_all(module, x, y)
        for k, v in res.items():
            clean_named[k].append(len(v["classes"]))
            clean_rows[k].append(len(v["indices"]))
        print(f"clean twin seed {seed}: ours names {res['ours']['classes']}", flush=True)
    clean = {
        k: {
            "twins": len(v),
            "false_alarm_rate": float(np.mean([n > 0 for n in v])),
            "mean_classes": float(np.mean(v)),
            "classes_named": v,
            "mean_rows": float(np.mean(clean_rows[k])),
        }
        for k, v in clean_named.items()
    }
    rows = summarise(cases, contenders)
    signs = None if args.no_signs else signs_grid(args.sign_seeds, args.sign_twins, art_version)
    scans = [] if args.no_model_scan else model_scans(args.quick, args.scan_threads)
    res = {
        "meta": {
            "quick": args.quick,
            "seeds": seeds,
            "clean_twins": n_clean,
            "art": art_version,
            "torch_threads": 1,
            "load_start": load_start,
            "load_end": round(os.getloadavg()[0], 2),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        },
        "rows": rows,
        "clean": clean,
        "targets": targets(rows, clean),
        "model_scan": scans,
        "signs": signs,
        "cases": [
            {**c, "results": {k: {**v, "classes": v["classes"]} for k, v in c["results"].items()}}
            for c in cases
        ],
    }
    stem = args.out or ("backdoor.quick" if args.quick else "backdoor")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(res, indent=2, default=float) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
