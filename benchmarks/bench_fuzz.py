"""Fuzzing throughput: mutants per second through a 32-px CNN, and where the time goes.

Run by hand from the repository root::

    .venv/bin/python -m benchmarks.bench_fuzz [--queries 3000] [--threads 2]

Two models: the demo road-sign CNN (``signnet``, five 3x3 conv stages of 32-128 channels, ~30 MMAC per
image) and a small 32-px CNN (two conv layers of 16 and 32 channels and a hidden linear layer). Seeds
are 100 demo road signs; KMNC/NBC/SNAC bounds are profiled on 2,000 more. Each configuration runs the
DeepHunter loop (``prob`` selection, 8 entries x 20 mutants per forward pass) for ``--queries`` model
queries and reports:

* mutants per second over the loop (mutation, forward pass, coverage bookkeeping, queue);
* the split: forward pass, coverage bookkeeping (layer summaries in the hooks, cells, bitmaps), mutation;
* the coverage share: coverage bookkeeping / forward pass (target: under 20%).

Configurations: guided by KMNC with all five criteria measured (NC needs each layer's per-sample
minimum and maximum: two more passes over every monitored tensor), and KMNC alone. Writes
``benchmarks/results/fuzz.json`` and ``benchmarks/results/fuzz.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def small_cnn():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 64),
        nn.ReLU(),
        nn.Linear(64, 12),
    ).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from roadworthy.coverage import fuzz, make_probe, profile
    from roadworthy.demo.model import load_demo_model
    from roadworthy.demo.signs import make_signs
    from roadworthy.models.torch import TorchModel

    torch.set_num_threads(args.threads)
    seeds, labels = make_signs(100, seed=1)
    train, _ = make_signs(2000, seed=0)
    models = {
        "signnet": load_demo_model(),
        "small_cnn": TorchModel(small_cnn(), input_shape=(3, 32, 32)),
    }
    rows = []
    for name, model in models.items():
        y = labels if name == "signnet" else None  # the untrained small CNN's own predictions are its labels
        for criteria in (None, ["kmnc"]):
            probe = make_probe(model, seeds[:1], extrema=criteria is None)
            prof = profile(probe, train)
            result = fuzz(
                model, seeds, y, probe=probe, train=prof, criteria=criteria, max_queries=args.queries, seed=0
            )
            s = result.seconds
            row = {
                "model": name,
                "criteria": "all five" if criteria is None else "kmnc",
                "mutants": result.n_mutants,
                "mutants_per_s": round(result.mutants_per_second, 1),
                "forward_s": round(s["forward"], 3),
                "coverage_s": round(s["coverage"], 3),
                "mutation_s": round(s["mutation"], 3),
                "other_s": round(s["other"] + s["validity"], 3),
                "total_s": round(s["total"], 3),
                "coverage_share_of_forward": round(s["coverage"] / s["forward"], 3),
                "kmnc_after": round(result.coverage_after["kmnc"].metric, 4),
                "failures": len(result.failures),
            }
            rows.append(row)
            print(json.dumps(row))
    meta = {
        "threads": args.threads,
        "queries": args.queries,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fuzz.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    head = list(rows[0])
    lines = [
        "# Fuzzing throughput (DeepHunter loop, 32-px CNNs)",
        "",
        f"{args.threads} torch threads, {args.queries} queries per run, load average at the end "
        f"{', '.join(f'{v:.1f}' for v in meta['load_average'])} on {meta['cpu_count']} cores.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(str(r[k]) for k in head) + " |" for r in rows),
        "",
    ]
    (RESULTS / "fuzz.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
