"""Differential testing of the demo road-sign CNN against its int8 copy: which inputs find disagreements?

Run by hand from the repository root::

    .venv/bin/python -m benchmarks.bench_parity [--queries 2000] [--seeds 0 1 2] [--threads 1]

The shipped demo model (``signnet``, float PyTorch) is the reference; the model under test is its ONNX
export quantized to int8 with :func:`roadworthy.models.quantize.int8_copy` (ONNX Runtime dynamic
quantization). For each seed, from the same 64 clean test images (a random sample per seed), three ways
of spending ``--queries`` inputs (each input goes to both models) are compared:

* **differential fuzzing**: :func:`roadworthy.coverage.differential.differential_fuzz`, mutants steered to
  widen the gap between the two outputs (DiffChaser-style), DeepHunter's mutations and constraint;
* **random mutation**: the same loop with ``guided=False`` (parents drawn uniformly, every mutant kept);
* **shift inputs**: the shift suite's shifts at severities 1-5 applied to the seed images, cycled until the
  budget is spent.

Reported: disagreements (top-1 differs) per 10k queries and the seed images from which one was reached;
no validity gate is applied here (the check applies the session's). Also the clean disagreement on the
1,000 test images, for scale. Writes ``benchmarks/results/parity.json`` and ``benchmarks/results/parity.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-seed-images", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from roadworthy import shifts
    from roadworthy.coverage.differential import compare_outputs, differential_fuzz
    from roadworthy.demo import load_demo_data
    from roadworthy.demo.model import load_demo_model, load_demo_module, shipped_facts
    from roadworthy.models import load_model
    from roadworthy.models.base import batched
    from roadworthy.models.quantize import int8_copy

    torch.set_num_threads(args.threads)
    reference = load_demo_model()
    data = load_demo_data(seed=0, n_train=200)
    x_test = data.test.x
    with tempfile.TemporaryDirectory() as tmp:
        onnx = Path(tmp) / "signnet.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                load_demo_module(),
                (torch.from_numpy(x_test[:2]),),
                str(onnx),
                dynamo=False,
                input_names=["x"],
                dynamic_axes={"x": {0: "batch"}},
            )
        facts = shipped_facts()  # the adapter applies the training normalisation, as for the reference
        norm = {"input_shape": (3, 32, 32), "mean": facts["mean"], "std": facts["std"]}
        int8 = load_model(str(int8_copy(onnx, Path(tmp) / "signnet.int8.onnx")), **norm)
        exact = load_model(str(onnx), **norm)
        export = compare_outputs(
            batched(exact.predict, x_test, 256),
            exact.output,
            batched(reference.predict, x_test, 256),
            "logits",
        )

        def pa(x):
            return batched(int8.predict, x, 256)

        def pb(x):
            return batched(reference.predict, x, 256)

        clean = compare_outputs(pa(x_test), int8.output, pb(x_test), reference.output)
        rows = []
        names = sorted(shifts.SHIFTS)
        for seed in args.seeds:
            rng = np.random.default_rng(seed)
            idx = np.sort(rng.choice(len(x_test), args.n_seed_images, replace=False))
            seeds_x = x_test[idx]
            row = {"seed": seed}
            for mode, guided in (("differential fuzzing", True), ("random mutation", False)):
                t0 = time.perf_counter()
                r = differential_fuzz(
                    pa,
                    int8.output,
                    pb,
                    reference.output,
                    seeds_x,
                    max_queries=args.queries,
                    guided=guided,
                    seed=seed,
                )
                row[mode] = {
                    "queries": r.queries,
                    "disagreements": len(r.disagreements),
                    "per_10k": r.per_10k_queries,
                    "seed_images_with_disagreement": r.seeds_with_disagreement,
                    "seconds": round(time.perf_counter() - t0, 1),
                }
            t0 = time.perf_counter()
            found, spent, roots = 0, 0, set()
            srng = np.random.default_rng(seed)
            order = [(n, s) for s in range(1, 6) for n in names]
            i = 0
            while spent < args.queries:
                n, s = order[i % len(order)]
                i += 1
                xs = shifts.SHIFTS[n].apply(seeds_x, s, srng)[: args.queries - spent]
                c = compare_outputs(pa(xs), int8.output, pb(xs), reference.output)
                found += c.disagreements
                roots |= {int(j) for j in np.flatnonzero(c.disagree)}
                spent += len(xs)
            row["shift inputs"] = {
                "queries": spent,
                "disagreements": found,
                "per_10k": 1e4 * found / spent,
                "seed_images_with_disagreement": len(roots),
                "seconds": round(time.perf_counter() - t0, 1),
            }
            rows.append(row)
            print(json.dumps(row))

    modes = ("differential fuzzing", "random mutation", "shift inputs")
    summary = {
        m: {
            "per_10k_mean": float(np.mean([r[m]["per_10k"] for r in rows])),
            "per_10k_sd": float(np.std([r[m]["per_10k"] for r in rows], ddof=1)) if len(rows) > 1 else 0.0,
            "seed_images_mean": float(np.mean([r[m]["seed_images_with_disagreement"] for r in rows])),
        }
        for m in modes
    }
    out = {
        "machine": {
            "platform": platform.platform(),
            "threads": args.threads,
            "note": "shared 2-core machine, under load",
        },
        "queries": args.queries,
        "n_seed_images": args.n_seed_images,
        "clean": {
            "n": clean.n,
            "disagreements": clean.disagreements,
            "max_abs_logit_diff": clean.max_abs_diff,
        },
        "runs": rows,
        "summary": summary,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "parity.json").write_text(json.dumps(out, indent=1))
    lines = [
        "# Parity: demo road-sign CNN (float PyTorch) vs its int8 ONNX copy",
        "",
        f"Clean test data: {clean.disagreements} of {clean.n} images disagree; largest logit difference "
        f"{clean.max_abs_diff:.3g} (the exact float ONNX export: {export.disagreements} disagree, largest "
        f"difference {export.max_abs_diff:.2g}).",
        "",
        f"{args.queries} queries per method and seed (each query: one input to both models), from "
        f"{args.n_seed_images} test images per seed; seeds {', '.join(map(str, args.seeds))}. No validity gate.",
        "",
        "| method | disagreements per 10k queries (mean ± sd) | seed images reaching one (mean) | per seed |",
        "|---|---|---|---|",
    ]
    for m in modes:
        s = summary[m]
        per = ", ".join(f"{r[m]['per_10k']:.0f}" for r in rows)
        lines.append(
            f"| {m} | {s['per_10k_mean']:.0f} ± {s['per_10k_sd']:.0f} | {s['seed_images_mean']:.1f} | {per} |"
        )
    (RESULTS / "parity.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
