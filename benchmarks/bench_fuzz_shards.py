"""``fuzz.deephunter`` on Ray: its two campaigns (guided, random baseline) as shards, against the local
backend.

One command (a local Ray instance is started in this process, 2 worker CPUs declared)::

    .venv/bin/python -m benchmarks.bench_fuzz_shards               # demo model, standard budget
    .venv/bin/python -m benchmarks.bench_fuzz_shards --repeats 1   # one round

The check runs alone on the demo road-sign model (with training data, so the coverage bounds are
profiled on it) with the same seed in three configurations, alternately, ``--repeats`` rounds: the
local backend with torch on one thread (as a Ray worker runs it), Ray with one worker (one shard of
both campaigns) and Ray with two workers (one campaign each). Every Ray run's metrics are compared with
the local run's (they must be equal). From the two-worker runs: each shard's seconds (a campaign, with
the profile of the bounds and the validity gate's fit that each worker does for itself). The best a
campaign split can give is the longer campaign's time: the fuzz loop itself is not split (its queue is
driven by the coverage every earlier mutant reached).

On a 2-core host shared with other jobs the ratios of one run are what to read, not the seconds.
Writes ``benchmarks/results/fuzz_shards.json`` and ``benchmarks/results/fuzz_shards.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
CHECK = "fuzz.deephunter"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500, help="evaluation images")
    ap.add_argument("--train", type=int, default=1000, help="training images (the bounds' profile)")
    ap.add_argument("--budget", default="standard")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--quality",
        type=int,
        nargs="*",
        default=None,
        help="instead: what sub-campaigns (`campaigns` 1 and these) do to coverage and failures, 3 seeds, "
        "local backend; writes results/fuzz_campaigns.{json,md}",
    )
    args = ap.parse_args()
    if args.quality is not None:
        quality(args, [1, *[n for n in (args.quality or [2, 4, 8]) if n != 1]])
        return

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    import torch

    import roadworthy
    from roadworthy.demo import load_demo_data
    from roadworthy.demo.model import load_demo_model
    from roadworthy.runner.ray import connect

    demo = load_demo_data(seed=0, n_train=args.train, n_test=args.images)
    kw: dict[str, Any] = {
        "suites": [CHECK],
        "budget": args.budget,
        "seed": args.seed,
        "train_data": (demo.train.x, demo.train.y),
    }
    data = (demo.test.x, demo.test.y)
    model = load_demo_model()
    roadworthy.check(model, (data[0][:64], data[1][:64]), suites=["sanity"], budget="quick")  # warm-up
    threads = torch.get_num_threads()
    load_before = os.getloadavg()
    connect(None, 120, num_cpus=2)  # as `--backend ray` starts one: on 127.0.0.1 only

    def fuzz_result(report: Any) -> Any:
        return next(c for c in report.checks if c.id == CHECK)

    walls: dict[str, list[float]] = {"local-1-thread": [], "ray-1": [], "ray-2": []}
    shards: list[list[dict[str, Any]]] = []
    same: dict[str, bool] = {"ray-1": True, "ray-2": True}
    local_metrics: dict[str, float] | None = None
    try:
        for _ in range(max(1, args.repeats)):
            torch.set_num_threads(1)
            try:
                start = time.perf_counter()
                local = roadworthy.check(model, data, **kw)
                walls["local-1-thread"].append(time.perf_counter() - start)
            finally:
                torch.set_num_threads(threads)
            local_metrics = fuzz_result(local).metrics
            for w in (1, 2):
                start = time.perf_counter()
                remote = roadworthy.check(model, data, backend="ray", workers=w, cpus_per_task=1.0, **kw)
                walls[f"ray-{w}"].append(time.perf_counter() - start)
                r = fuzz_result(remote)
                same[f"ray-{w}"] &= r.metrics == local_metrics
                if w == 2:
                    shards.append(
                        [{"blocks": s["blocks"], "seconds": s["seconds"]} for s in r.details["ray"]["shards"]]
                    )
            print(
                "round: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in walls.items()),
                "(ray-2 shards: " + ", ".join(f"{s['seconds']:.1f}" for s in shards[-1]) + " s)",
                flush=True,
            )
    finally:
        ray.shutdown()
    pieces = _pieces(model, demo, args, repeats=max(1, args.repeats))
    med = {k: float(statistics.median(v)) for k, v in walls.items()}
    per_shard = [float(statistics.median(s[i]["seconds"] for s in shards)) for i in range(len(shards[0]))]
    result = {
        "images": args.images,
        "train": args.train,
        "budget": args.budget,
        "seed": args.seed,
        "repeats": args.repeats,
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()},
        "load": {"before": load_before, "after": os.getloadavg()},
        "walls_s": walls,
        "median_s": med,
        "identical_metrics": same,
        "ray_2_shard_seconds_median": per_shard,
        "campaign_balance": min(per_shard) / max(per_shard) if len(per_shard) == 2 else None,
        "pieces_s": pieces,
        "estimate": {
            "one_process_s": pieces["gate"] + pieces["bounds"] + pieces["guided"] + pieces["random"],
            "two_workers_s": pieces["gate"] + pieces["bounds"] + max(pieces["guided"], pieces["random"]),
        },
        "ratios": {k: v / med["local-1-thread"] for k, v in med.items()},
        "mutants": {
            "guided": local_metrics.get("fuzz.mutants"),
            "random": local_metrics.get("fuzz.random.mutants"),
        }
        if local_metrics
        else None,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fuzz_shards.json").write_text(json.dumps(result, indent=2, default=float))
    (RESULTS / "fuzz_shards.md").write_text(table(result))
    print(table(result))


QUALITY_METRICS = (
    "fuzz.kmnc.coverage",
    "fuzz.nbc.coverage",
    "fuzz.valid_failures",
    "fuzz.unique_failures",
    "fuzz.random.kmnc.coverage",
    "fuzz.random.valid_failures",
    "fuzz.random.unique_failures",
)


def quality(args: Any, counts: list[int]) -> None:
    """The same budget as 1, 2, 4, ... sub-campaigns per run: coverage and failures, 3 seeds."""
    from roadworthy.checks.base import Context
    from roadworthy.checks.fuzz.deephunter import DeepHunterFuzz
    from roadworthy.demo import load_demo_data
    from roadworthy.demo.model import load_demo_model
    from roadworthy.models import load_model

    demo = load_demo_data(seed=0, n_train=args.train, n_test=args.images)
    model = load_model(load_demo_model(), input_shape=demo.test.x.shape[1:])
    rows: dict[int, dict[str, list[float]]] = {n: {m: [] for m in QUALITY_METRICS} for n in counts}
    load_before = os.getloadavg()
    for seed in (0, 1, 2):
        ctx = Context(model=model, data=demo.test, train_data=demo.train, budget=args.budget, seed=seed)
        for n in counts:  # one context per seed: the gate and the bounds are fitted once, as in a session
            base = DeepHunterFuzz(budget=args.budget).params
            check = DeepHunterFuzz(dataclasses.replace(base, campaigns=n), budget=args.budget)
            out = check.run(ctx)
            for m in QUALITY_METRICS:
                rows[n][m].append(float(out.metrics[m]))
            print(
                f"seed {seed}, campaigns {n}: "
                + ", ".join(f"{m} {out.metrics[m]:.3g}" for m in QUALITY_METRICS)
            )
    result = {
        "images": args.images,
        "train": args.train,
        "budget": args.budget,
        "load": {"before": load_before, "after": os.getloadavg()},
        "runs": {str(n): v for n, v in rows.items()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fuzz_campaigns.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"# `fuzz.deephunter` split into sub-campaigns: demo model, {args.images} evaluation / {args.train} "
        f"training images, `{args.budget}` budget, seeds 0-2 (mean, and min-max)",
        "",
        "The same query budget per run, split into `campaigns` sub-campaigns on round-robin groups of the "
        "seeds (each queue guided only by its own seeds' coverage), merged. Local backend; the numbers "
        "do not depend on the machine.",
        "",
        "| campaigns | " + " | ".join(f"`{m}`" for m in QUALITY_METRICS) + " |",
        "|---:|" + "---:|" * len(QUALITY_METRICS),
    ]
    for n, v in rows.items():
        cells = [f"{statistics.mean(v[m]):.3g} ({min(v[m]):.3g}-{max(v[m]):.3g})" for m in QUALITY_METRICS]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    (RESULTS / "fuzz_campaigns.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _pieces(model: Any, demo: Any, args: Any, repeats: int) -> dict[str, float]:
    """Medians of the check's pieces in this process (torch on one thread, a fresh context each time):
    the validity gate's fit, the bounds' profile, and each campaign's loop."""
    import torch

    from roadworthy.checks.base import Context
    from roadworthy.checks.fuzz import deephunter
    from roadworthy.coverage import make_probe
    from roadworthy.models import load_model

    m = load_model(model, input_shape=demo.test.x.shape[1:])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    got: dict[str, list[float]] = {"gate": [], "bounds": [], "guided": [], "random": []}
    try:
        for _ in range(repeats):
            ctx = Context(model=m, data=demo.test, train_data=demo.train, budget=args.budget, seed=args.seed)
            check = deephunter.DeepHunterFuzz(budget=args.budget)
            start = time.perf_counter()
            deephunter._gate(ctx)
            got["gate"].append(time.perf_counter() - start)
            _, x, _ = check.seeds(ctx)
            probe = make_probe(m, x[:1])
            try:
                start = time.perf_counter()
                check.bounds(ctx, probe, x)
                got["bounds"].append(time.perf_counter() - start)
            finally:
                probe.close()
            for block in check.blocks(ctx):  # the gate and the bounds are cached now: the loops alone
                start = time.perf_counter()
                part = check.run_block(ctx, block)
                got[part["run"]].append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return {k: float(statistics.median(v)) for k, v in got.items()}


def table(r: dict[str, Any]) -> str:
    lines = [
        f"# `fuzz.deephunter` sharded by campaign on Ray: demo model, {r['images']} evaluation / "
        f"{r['train']} training images, `{r['budget']}` budget",
        "",
        f"Host: {r['host']['cpus']} CPUs, load average {r['load']['before'][0]:.1f} before the run and "
        f"{r['load']['after'][0]:.1f} after (shared with "
        "other jobs: read the ratios of this run, not the seconds). Local Ray instance with 2 declared "
        f"worker CPUs, 1 CPU per worker; alternating rounds, medians of {r['repeats']}.",
        "",
        "| run | median wall (s) | vs local, torch on 1 thread | metrics identical to local |",
        "|---|---:|---:|---|",
    ]
    for name, v in r["median_s"].items():
        ident = "-" if name.startswith("local") else ("yes" if r["identical_metrics"][name] else "**no**")
        lines.append(f"| {name} | {v:.1f} | {r['ratios'][name]:.2f} | {ident} |")
    shards = ", ".join(f"{s:.1f}" for s in r["ray_2_shard_seconds_median"])
    lines += [
        "",
        f"Two workers: the shards (guided campaign, random baseline; each with its own profile of the bounds "
        f"and fit of the validity gate) took {shards} s (median); the shorter is "
        f"{r['campaign_balance']:.2f} of the longer. Wall time on two workers is bounded below by the longer "
        "campaign plus the driver's start-up and merge: at most a 2x speed-up, whatever the number of workers "
        "(the fuzz loop itself is one sequential queue and is not split).",
        "",
        "The check's pieces in one process (torch on one thread, medians): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in r["pieces_s"].items())
        + ". Estimate for two uncontended workers (each fits the gate and profiles the bounds, then runs "
        f"one campaign): {r['estimate']['two_workers_s']:.1f} s of work on the critical path against "
        f"{r['estimate']['one_process_s']:.1f} s in one process "
        f"({r['estimate']['one_process_s'] / r['estimate']['two_workers_s']:.2f}x), before Ray's fixed "
        "start-up. An estimate: on this 2-core host shared with other jobs the two workers do not get a core each.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
